"""Which repository URLs a project may use: http(s) only, and no local hosts unless allowed.

Refusing loopback and private addresses keeps a user from making the worker fetch from the
machine it runs on or its private network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class RepoRefused(ValueError):
    pass


def check_repo_url(url: str, *, allow_local: bool) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RepoRefused("repoUrl is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise RepoRefused("repoUrl must be an http:// or https:// URL")
    if not parts.hostname:
        raise RepoRefused("repoUrl has no host")
    if allow_local:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, port or None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise RepoRefused(f"repoUrl host '{parts.hostname}' could not be resolved") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise RepoRefused(
                f"repoUrl host '{parts.hostname}' is a local or private address; "
                "set KILN_ALLOW_LOCAL_REPOS=true to allow it"
            )
