"""The dashboard: plain ES modules from `web/src`, socket.io-client from `web/node_modules`
(installed by scripts/bootstrap), and `index.html` for every client-side route. Every asset
is served by Kiln itself, under a Content-Security-Policy that allows nothing else."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB = Path(__file__).resolve().parent.parent / "web"
VENDOR = WEB / "node_modules" / "socket.io-client" / "dist"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
# Client-side routes of the dashboard; each answers index.html.
PAGES = ["/", "/login", "/signup", "/projects/{project_id}", "/builds/{build_id}"]


class _Hardened:
    """Adds the security headers to every answer of the wrapped static app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self._app(scope, receive, send_with_headers)


def _index() -> FileResponse:
    return FileResponse(
        WEB / "index.html",
        headers={name.decode(): value.decode() for name, value in SECURITY_HEADERS}
        | {"Cache-Control": "no-cache"},
    )


def mount_dashboard(app: FastAPI) -> None:
    if not VENDOR.is_dir():
        raise RuntimeError(
            f"the dashboard's socket.io-client is missing ({VENDOR}): run scripts/bootstrap"
        )
    # The vendored client first: /assets/vendor/... must not fall through to web/src.
    app.mount("/assets/vendor", _Hardened(StaticFiles(directory=VENDOR)), name="vendor")
    app.mount("/assets", _Hardened(StaticFiles(directory=WEB / "src")), name="assets")
    for page in PAGES:
        app.add_api_route(page, _index, methods=["GET"], include_in_schema=False)
