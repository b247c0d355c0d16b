// The Kiln REST API, as the dashboard uses it. Every error carries the API's own message.

const TOKEN_KEY = "kiln.token";
const USER_KEY = "kiln.user";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function session() {
  const token = localStorage.getItem(TOKEN_KEY);
  const user = localStorage.getItem(USER_KEY);
  return token && user ? { token, user: JSON.parse(user) } : null;
}

export function remember(answer) {
  localStorage.setItem(TOKEN_KEY, answer.token);
  localStorage.setItem(USER_KEY, JSON.stringify(answer.user));
}

export function forget() {
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(USER_KEY);
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const current = session();
  if (current) headers.Authorization = `Bearer ${current.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Kiln cannot be reached. Check your connection and try again.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.message === "string" ? data.message : response.statusText;
    if (response.status === 401 && current) {
      forget();
      window.dispatchEvent(new CustomEvent("kiln:signed-out", { detail: message }));
    }
    throw new ApiError(response.status, message || `Request failed (${response.status})`);
  }
  return data;
}

export const api = {
  register: (body) => request("POST", "/api/auth/register", body),
  login: (body) => request("POST", "/api/auth/login", body),
  projects: () => request("GET", "/api/project/projects"),
  project: (id) => request("GET", `/api/project/projects/${id}`),
  createProject: (body) => request("POST", "/api/project/projects", body),
  updateProject: (id, body) => request("PATCH", `/api/project/projects/${id}`, body),
  deleteProject: (id) => request("DELETE", `/api/project/projects/${id}`),
  builds: (id, { status, before, limit = 20 } = {}) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (status) query.set("status", status);
    if (before) query.set("before", String(before));
    return request("GET", `/api/project/projects/${id}/builds?${query}`);
  },
  deliveries: (id) => request("GET", `/api/project/projects/${id}/deliveries`),
  secrets: (id) => request("GET", `/api/project/projects/${id}/secrets`),
  putSecret: (id, name, value) =>
    request("PUT", `/api/project/projects/${id}/secrets/${encodeURIComponent(name)}`, { value }),
  deleteSecret: (id, name) => request("DELETE", `/api/project/projects/${id}/secrets/${encodeURIComponent(name)}`),
  putCredentials: (id, body) => request("PUT", `/api/project/projects/${id}/credentials`, body),
  deleteCredentials: (id) => request("DELETE", `/api/project/projects/${id}/credentials`),
  putGithubToken: (id, token) => request("PUT", `/api/project/projects/${id}/github-token`, { token }),
  deleteGithubToken: (id) => request("DELETE", `/api/project/projects/${id}/github-token`),
  hooks: (id) => request("GET", `/api/project/projects/${id}/hooks`),
  createHook: (id, body) => request("POST", `/api/project/projects/${id}/hooks`, body),
  deleteHook: (id, hookId) => request("DELETE", `/api/project/projects/${id}/hooks/${hookId}`),
  config: () => request("GET", "/api/config"),
  build: (id) => request("GET", `/api/build/${id}`),
  logs: (id, offset = 0) => request("GET", `/api/build/${id}/logs?offset=${offset}`),
  rebuild: (id) => request("POST", `/api/build/rebuild/${id}`),
  cancel: (id) => request("POST", `/api/build/${id}/cancel`),
};
