"""A stand-in for what Kiln calls out to — GitHub's REST API, a notification hook receiver — on
127.0.0.1, recording every request it gets and what it answered.

It can fail the first N requests (500), answer every request with one status (a 401 from a
GitHub that refuses the token), or be slow; `Receiver.stop` makes it a dead address.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    # Header names in lower case.
    headers: dict[str, str]
    body: bytes
    # The status it was answered with.
    status: int

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        receiver = self.server.receiver
        status = receiver.answer()
        if receiver.delay:
            time.sleep(receiver.delay)
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver.record(Received("POST", self.path, headers, body, status))
        payload = b'{"ok": true}' if status < 300 else b'{"message": "stand-in says no"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (a timeout test) leaves a broken pipe: nothing to report


class Receiver:
    """Records POSTs; answers `status` (201), after failing the first `fail_first` with 500."""

    def __init__(self, *, status: int = 201, fail_first: int = 0, delay: float = 0.0) -> None:
        self.status = status
        self.fail_first = fail_first
        self.delay = delay
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._seen = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def delivered(self) -> list[Received]:
        """The requests it answered with a 2xx, in order."""
        return [request for request in self.requests if request.ok]

    def fail_next(self, count: int) -> None:
        """Answer the next `count` requests with 500 (then `status` again)."""
        with self._lock:
            self.fail_first = self._seen + count

    def answer(self) -> int:
        with self._lock:
            self._seen += 1
            return 500 if self._seen <= self.fail_first else self.status

    def record(self, request: Received) -> None:
        with self._lock:
            self._requests.append(request)

    def start(self) -> None:
        self._server = _Server(self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="receiver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (its address then refuses connections)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
