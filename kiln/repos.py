"""Which repository URLs a project may use: http(s) only, and no local hosts unless allowed.

Refusing loopback and private addresses keeps a user from making the worker fetch from the
machine it runs on or its private network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from kiln.errors import KilnError, PermanentError, RetryableError


class RepoRefused(KilnError):
    """Kiln will not fetch from this URL, now."""


class RepoForbidden(RepoRefused, PermanentError):
    """Kiln never fetches from this URL (not http(s), no host, a local or private address)."""


class RepoUnresolvable(RepoRefused, RetryableError):
    """The URL's host has no address right now (which may pass)."""


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_repo_url(url: str, *, allow_local: bool) -> str | None:
    """Refuse what Kiln must not fetch from. Returns a curl resolve entry (`host:port:address`)
    that pins git to the address checked here, so a DNS answer that changes between this check
    and git's own lookup (rebinding) cannot point git at a private address; None when local
    repositories are allowed or the host is an IP address (nothing to pin)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RepoForbidden("repoUrl is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise RepoForbidden("repoUrl must be an http:// or https:// URL")
    if not parts.hostname:
        raise RepoForbidden("repoUrl has no host")
    if allow_local:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port or None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise RepoUnresolvable(f"repoUrl host '{parts.hostname}' could not be resolved") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not address.is_global:
            raise RepoForbidden(
                f"repoUrl host '{parts.hostname}' is a local or private address; "
                "set KILN_ALLOW_LOCAL_REPOS=true to allow it"
            )
    if _is_ip_literal(parts.hostname):
        return None  # curl looks nothing up for an address: nothing to rebind, nothing to pin
    pinned = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.hostname}:{port or default_port}:{pinned}"
