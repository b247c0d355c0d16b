"""The Kiln REST API from the command line. Every failure is a `CliError`: one line for the
user, never a traceback."""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class CliError(Exception):
    """Shown as `kiln: <message>`; the command exits with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Api:
    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self._has_token = bool(token)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.InvalidURL as exc:
            raise CliError(f"{self.server} is not a valid server URL ({exc})") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach Kiln at {self.server} ({_reason(exc)})") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise CliError(
                f"{self.server} did not answer like a Kiln server (HTTP {response.status_code})"
            )
        if response.status_code >= 400:
            message = str(data.get("message") or f"HTTP {response.status_code}")
            if response.status_code == 401 and self._has_token:
                message += " — log in again with `kiln login`"
            raise CliError(message)
        return data


def _reason(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectError):
        return "connection refused or host unknown"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return type(error).__name__
