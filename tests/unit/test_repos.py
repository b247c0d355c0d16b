"""Which repository URLs a project may use (kiln.repos.check_repo_url), with literal addresses
only: name resolution is limited to numeric hosts, so no test can reach DNS."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from kiln.repos import RepoForbidden, RepoUnresolvable, check_repo_url


@pytest.fixture(autouse=True)
def numeric_hosts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def numeric(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["flags"] = kwargs.get("flags", 0) | socket.AI_NUMERICHOST
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric)


def resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Every host name resolves to `addresses`, in that order."""

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize(
    "url",
    [
        "ssh://8.8.8.8/o/r.git",
        "git://8.8.8.8/o/r.git",
        "file:///etc/passwd",
        "ftp://8.8.8.8/r",
        "8.8.8.8/o/r",
        "ext::sh -c touch% /tmp/pwned",
    ],
)
@pytest.mark.parametrize("allow_local", [False, True])
def test_a_url_that_is_not_http_or_https_is_refused_even_when_local_repos_are_allowed(
    url: str, allow_local: bool
) -> None:
    with pytest.raises(RepoForbidden, match="must be an http:// or https:// URL"):
        check_repo_url(url, allow_local=allow_local)


def test_a_url_without_a_host_is_refused() -> None:
    with pytest.raises(RepoForbidden, match="no host"):
        check_repo_url("https:///o/r.git", allow_local=True)


def test_a_url_with_a_bad_port_is_refused_as_invalid() -> None:
    with pytest.raises(RepoForbidden, match="not a valid URL"):
        check_repo_url("https://8.8.8.8:99999/o/r", allow_local=False)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",
        "0.0.0.0",
        "[::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[::ffff:127.0.0.1]",
        "[::]",
    ],
)
def test_loopback_private_and_link_local_addresses_are_refused(host: str) -> None:
    with pytest.raises(RepoForbidden, match="local or private address"):
        check_repo_url(f"https://{host}/o/r.git", allow_local=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "[::1]", "[fe80::1]"])
def test_local_addresses_are_accepted_without_a_pin_when_allowed(host: str) -> None:
    assert check_repo_url(f"http://{host}:8080/o/r.git", allow_local=True) is None


def test_a_public_ipv4_address_is_accepted_without_a_pin_since_nothing_is_looked_up() -> None:
    assert check_repo_url("https://8.8.8.8/o/r.git", allow_local=False) is None


def test_a_host_name_is_pinned_on_the_default_https_port(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "8.8.8.8")
    pin = check_repo_url("https://git.example.com/o/r.git", allow_local=False)
    assert pin == "git.example.com:443:8.8.8.8"


def test_a_host_name_over_http_is_pinned_on_port_80(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "8.8.8.8")
    pin = check_repo_url("http://git.example.com/o/r.git", allow_local=False)
    assert pin == "git.example.com:80:8.8.8.8"


def test_an_explicit_port_is_kept_in_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "8.8.8.8")
    pin = check_repo_url("https://git.example.com:8443/r", allow_local=False)
    assert pin == "git.example.com:8443:8.8.8.8"


def test_a_public_ipv6_address_is_accepted() -> None:
    check_repo_url("https://[2001:4860:4860::8888]/o/r.git", allow_local=False)


def test_an_ipv6_literal_host_gets_no_pin_since_curl_cannot_parse_one_naming_it() -> None:
    assert check_repo_url("https://[2001:4860:4860::8888]/o/r.git", allow_local=False) is None


def test_a_host_name_is_pinned_to_the_address_checked_an_ipv6_one_in_brackets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving_to(monkeypatch, "2001:4860:4860::8888", "8.8.8.8")
    pin = check_repo_url("https://git.example.com/o/r.git", allow_local=False)
    assert pin == "git.example.com:443:[2001:4860:4860::8888]"


def test_a_host_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "8.8.8.8", "10.0.0.5")
    with pytest.raises(RepoForbidden, match="'git.example.com' is a local or private address"):
        check_repo_url("https://git.example.com/o/r.git", allow_local=False)


def test_a_host_that_does_not_resolve_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(RepoUnresolvable, match="could not be resolved"):
        check_repo_url("https://git.example.com/o/r.git", allow_local=False)
