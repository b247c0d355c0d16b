// Live updates over Socket.io: every status change and log chunk, pushed — no polling.
import { io } from "./vendor/socket.io.esm.min.js";

/** One connection for the page. `handlers.status(build)`, `handlers.log(event)`,
 * `handlers.reconnected()`, `handlers.state(text|null)`. */
export function connectLive(token, handlers) {
  const socket = io({ auth: { token }, transports: ["websocket"] });
  let connectedOnce = false;
  socket.on("connect", () => {
    handlers.state(null);
    if (connectedOnce) handlers.reconnected();
    connectedOnce = true;
  });
  socket.on("disconnect", () => handlers.state("Live updates paused — reconnecting…"));
  socket.on("connect_error", (error) => {
    handlers.state(`Live updates unavailable (${error.message}) — retrying…`);
  });
  socket.on("buildStatusUpdate", (build) => handlers.status(build));
  socket.on("buildLog", (event) => handlers.log(event));
  return socket;
}
