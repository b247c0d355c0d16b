"""Kiln's own outgoing HTTP calls (notification hooks, GitHub commit statuses): short timeouts,
no redirects, and for URLs users give (hooks) the address rules of repository URLs.

A hook URL is checked like a repository URL (kiln.repos: http(s) only, no loopback or private
address unless KILN_ALLOW_LOCAL_REPOS) when it is created and again at every send, and the
request goes to the very address that was checked (the URL's host is kept for `Host` and TLS),
so a DNS answer that changes between the check and the connection cannot point it inside.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from kiln.errors import PermanentError, RetryableError
from kiln.repos import RepoForbidden, RepoRefused, check_repo_url

# Every call ends within this, whatever the server does (a trickle of bytes included).
REQUEST_SECONDS = 10.0
USER_AGENT = "Kiln"
# httpx logs each request's URL at INFO, and a hook's URL is often a secret itself (Slack and
# Discord incoming webhooks are): keep it out of the server's log.
logging.getLogger("httpx").setLevel(logging.WARNING)


class OutboundRefused(PermanentError):
    """Kiln will not call this URL (not http(s), a local or private address)."""


class OutboundFailed(RetryableError):
    """The call did not get an answer (unresolvable, refused, timed out): it may pass."""


@dataclass(frozen=True)
class Answer:
    status: int
    # The first bytes of the body, for a log line (never shown to users).
    text: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def check_url(url: str, *, allow_local: bool, what: str = "url") -> str | None:
    """kiln.repos' rules for a URL Kiln calls: its pin (`host:port:address`, None when there is
    nothing to pin); OutboundRefused (permanent) or OutboundFailed (unresolvable, for now)
    saying why, naming the URL as `what`."""
    try:
        return check_repo_url(url, allow_local=allow_local)
    except RepoRefused as exc:
        message = str(exc).replace("repoUrl", what, 1)
        if isinstance(exc, RepoForbidden):
            raise OutboundRefused(message) from None
        raise OutboundFailed(message) from None


def _pinned(url: str, pin: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to connect to (the checked address in place of the host), the `Host` header and
    the TLS server name that keep the original host."""
    if pin is None:
        return url, {}, {}
    parts = urlsplit(url)
    host, _, address = pin.split(":", 2)
    netloc = address if parts.port is None else f"{address}:{parts.port}"
    if "@" in parts.netloc:  # keep any user info: it is the caller's to send
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    direct = SplitResult(parts.scheme, netloc, parts.path, parts.query, "").geturl()
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return direct, {"Host": host_header}, {"sni_hostname": host}


async def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    pin: str | None = None,
    timeout: float = REQUEST_SECONDS,
) -> Answer:
    """POST `body` (JSON) to `url` — to the pinned address when `pin` is given — following no
    redirect; OutboundFailed when no answer came within `timeout` seconds."""
    # Imported here: only workers send, and the API process is spared httpx (about 4 MB).
    import httpx

    direct, host_header, extensions = _pinned(url, pin)
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT} | headers | host_header
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(follow_redirects=False, timeout=timeout) as client:
                request = client.build_request(
                    "POST", direct, content=body, headers=sent, extensions=extensions
                )
                response = await client.send(request)
                return Answer(response.status_code, response.text[:500])
    except TimeoutError:
        raise OutboundFailed(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise OutboundFailed(f"the request failed: {type(exc).__name__}") from None
