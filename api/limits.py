"""A cap on request bodies, applied before anything reads them (a pure ASGI middleware).

Every HTTP request body is read here, up to the limit, before the application sees any of it: a
declared `Content-Length` over the limit is refused at once (the body is never read), and a body
without one (chunked) is counted as it arrives and refused as soon as it passes the limit. So a
request holds at most the limit (plus one chunk) in memory, whatever it sends, and whether or not
it is authenticated. Paths under an exempt prefix (the webhook, which reads its own body with its
own limit after checking the signature header) pass through untouched.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def send_error(send: Send, status: int, message: str) -> None:
    """Answer `{"message": ...}` with `status`.

    The connection is kept: the server discards what the client still sends of its body (a
    client writing its body before it reads the answer, as most do, would otherwise see the
    connection reset instead of the 413)."""
    body = json.dumps({"message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length`; -1 when it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else -1
    return None


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    def _too_large(self) -> str:
        return f"Request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared == -1:
            await send_error(send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > self.max_bytes:
            await send_error(send, 413, self._too_large())
            return
        # Read the whole body here, counting: what reaches the application is within the limit.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await send_error(send, 413, self._too_large())
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read as one message, then the real channel
    (which only has `http.disconnect` left to say)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
