"""Answer only to known host names (against DNS rebinding), for REST and Socket.io alike.

A page on `http://evil.example` whose name the attacker re-points at 127.0.0.1 could otherwise
drive a developer's `kiln dev` with the browser's own requests: those still carry `Host:
evil.example`. So every request (HTTP or WebSocket) must name an allowed host, on any port:
`KILN_ALLOWED_HOSTS`, or by default the listening address, `localhost`, `127.0.0.1`, `[::1]`;
`KILN_PUBLIC_URL`'s host is always allowed. `*` in the list allows any host. Anything else is a
400 `{"message": ...}` (Starlette's TrustedHostMiddleware answers plain text, hence this one).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from api.limits import send_error
from kiln.settings import Settings

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
REFUSED = "This Kiln does not answer to that host name (see KILN_ALLOWED_HOSTS)"


def host_name(value: str) -> str | None:
    """The host name of a `Host` header (or a configured entry), without its port, lower case;
    None when it does not parse."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6] or [v6]:port
        end = value.find("]")
        if end == -1:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
    elif value.count(":") > 1:  # a bare IPv6 address (configured entries)
        name = value
    else:
        name, _, port = value.partition(":")
        if port and not port.isdigit():
            return None
    name = name.rstrip(".")
    return name or None


def allowed_host_names(settings: Settings) -> frozenset[str] | None:
    """The host names this Kiln answers to; None: any."""
    configured = settings.allowed_hosts or [settings.host, *DEFAULT_HOSTS]
    if "*" in configured:
        return None
    names = {host_name(entry) for entry in configured}
    if settings.public_url:
        public = urlsplit(settings.public_url).hostname
        names.add(host_name(public) if public else None)
    return frozenset(name for name in names if name)


def request_host(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return host_name(value.decode("latin-1"))
    return None


class TrustedHosts:
    """Refuse (400) HTTP requests and WebSocket handshakes for a host name not allowed."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or self.allowed is None
            or request_host(scope) in self.allowed
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await send_error(send, 400, REFUSED)
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            body = json.dumps({"message": REFUSED}).encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
