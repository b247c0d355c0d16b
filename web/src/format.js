// Times and durations as people read them.

export const STATUSES = ["queued", "running", "passed", "failed", "canceled"];

export function firstLine(text) {
  const line = (text || "").split("\n", 1)[0].trim();
  return line || "(no commit message yet)";
}

export function shortHash(hash) {
  return (hash || "").slice(0, 7);
}

export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 10) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  return `${days} d ago`;
}

export function exact(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function duration(build, now = Date.now()) {
  if (!build.startedAt || build.status === "queued") return "";
  const end = build.finishedAt ? Date.parse(build.finishedAt) : now;
  let seconds = Math.max(0, Math.round((end - Date.parse(build.startedAt)) / 1000));
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${seconds} s`;
  return `${seconds} s`;
}

export function isActive(status) {
  return status === "queued" || status === "running";
}
