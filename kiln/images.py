"""Which build images Kiln may pull: never from a registry on the worker's own machine or its
private network (unless local repositories are allowed), and only from the allowed registries
when a list is set.

The Docker daemon pulls with its own network access, so an image such as
`127.0.0.1:2375/x` or `10.0.0.5:8080/x` would make it send requests wherever a user asks.
The registry of a reference follows Docker's rules: the first path component is a registry
when it contains "." or ":", is "localhost", or has upper-case letters; otherwise the image is
on Docker Hub ("docker.io").
"""

from __future__ import annotations

import ipaddress
import re
import socket

from kiln.errors import PermanentError

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

# Docker's reference grammar (github.com/distribution/reference), enough to find the registry
# and to refuse what is not a reference at all.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::{_TAG})?(?:@{_DIGEST})?"
)


class ImageRefused(PermanentError):
    """Kiln will not pull this image (not a reference, a local or private registry, or a
    registry that is not allowed)."""


def image_registry(image: str) -> str:
    """The registry of an image reference, lower-case `host[:port]`; "docker.io" for Docker
    Hub. Raises ImageRefused for what is not an image reference."""
    first, sep, rest = image.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        domain = first
    else:
        domain, rest = "", image
    if len(image) > 512 or not _REFERENCE.fullmatch(f"{domain}/{rest}" if domain else rest):
        raise ImageRefused("image is not a valid image reference")
    if len(rest.split("@", 1)[0].rsplit(":", 1)[0]) > 255:
        raise ImageRefused("image name is too long")
    domain = domain.lower()
    return DOCKER_HUB if not domain or domain in _HUB_ALIASES else domain


def _split_host(registry: str) -> str:
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_image(image: str, *, allowed_registries: list[str], allow_local: bool) -> None:
    """Refuse an image Kiln must not pull; returns None when it may be pulled.

    `allowed_registries` (host[:port] entries, "docker.io" for Docker Hub): when non-empty,
    the image's registry must be one of them. `allow_local` lifts the rule against registries
    on loopback, private, link-local and other non-global addresses."""
    registry = image_registry(image)
    if allowed_registries:
        allowed = {entry.strip().lower().rstrip("/") for entry in allowed_registries}
        allowed = {DOCKER_HUB if entry in _HUB_ALIASES else entry for entry in allowed}
        if registry not in allowed:
            listed = ", ".join(sorted(allowed))
            raise ImageRefused(f"image registry '{registry}' is not allowed (allowed: {listed})")
    if allow_local or registry == DOCKER_HUB:
        return
    host = _split_host(registry)
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ImageRefused(f"image registry host '{host}' could not be resolved") from None
    for info in infos:
        if not _is_public(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])):
            raise ImageRefused(
                f"image registry '{registry}' is a local or private address; "
                "set KILN_ALLOW_LOCAL_REPOS=true to allow it"
            )
