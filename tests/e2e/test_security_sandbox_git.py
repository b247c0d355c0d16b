"""git on the worker runs with a clean environment: nothing in the worker's own environment or
home directory (a developer's ~/.gitconfig, a hostile GIT_CONFIG_GLOBAL, GIT_CONFIG_COUNT, a
proxy) changes what a checkout fetches or runs on the host, and only http(s) is a transport.

Each hostile configuration is installed the way a worker could meet it, then a real checkout
runs against the test's git server; a trap listener on 127.0.0.1 records any connection a
redirect would cause, and every command a configuration could make git run writes a marker.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiln.git import GitError, checkout, resolve_branch
from testbed.git_server import GitRepo, GitServer

TIMEOUT = 30.0


@dataclass
class Trap:
    """A TCP listener on 127.0.0.1 that records and drops every connection."""

    port: int
    peers: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def trap() -> Iterator[Trap]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    found = Trap(sock.getsockname()[1])
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            found.peers.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield found
    stopping.set()
    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    sock.close()
    thread.join(timeout=5)


@dataclass(frozen=True)
class Hostile:
    """Where the markers of commands a hostile configuration runs would appear."""

    home: Path
    markers: Path

    def ran(self) -> list[str]:
        return sorted(p.name for p in self.markers.iterdir())


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    markers = tmp_path / "markers"
    markers.mkdir()
    return Hostile(tmp_path / "home", markers)


@pytest.fixture
def repo(git_server: GitServer) -> GitRepo:
    """A repository whose text files ask for a filter driver, and an LFS-tracked file."""
    repo = git_server.create_repo(f"hostile-git-{uuid.uuid4().hex[:8]}")
    repo.commit(
        {
            ".gitattributes": "*.txt filter=evil\n*.bin filter=lfs diff=lfs merge=lfs -text\n",
            "hello.txt": "hello from the repository\n",
            "blob.bin": "not really a pointer\n",
        },
        "files with filters",
    )
    return repo


def config_texts(git_server: GitServer, trap: Trap, hostile: Hostile) -> dict[str, str]:
    """Hostile ~/.gitconfig contents, by what they try: send git elsewhere (the trap), run a
    filter driver on checkout, or run hooks and helpers. Every command writes a marker."""
    m = hostile.markers
    hooks = m.parent / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("post-checkout", "reference-transaction", "pre-auto-gc"):
        script = hooks / hook
        script.write_text(f"#!/bin/sh\ntouch {m}/hook-{hook}\n")
        script.chmod(0o755)
    templates = m.parent / "templates"
    (templates / "hooks").mkdir(parents=True, exist_ok=True)
    template_hook = templates / "hooks" / "post-checkout"
    template_hook.write_text(f"#!/bin/sh\ntouch {m}/template-hook\n")
    template_hook.chmod(0o755)
    return {
        "redirect": f"""
[url "{trap.url}"]
    insteadOf = {git_server.base_url}/
[http]
    proxy = {trap.url}
""",
        "filters": f"""
[filter "evil"]
    smudge = "touch {m}/evil-smudge; cat"
    clean = cat
    required = true
[filter "lfs"]
    smudge = "touch {m}/lfs-smudge; cat"
    process = "touch {m}/lfs-process"
    required = true
""",
        "hooks": f"""
[core]
    hooksPath = {hooks}
    fsmonitor = "touch {m}/fsmonitor"
    sshCommand = "touch {m}/ssh"
[init]
    templateDir = {templates}
[credential]
    helper = "!touch {m}/credential-helper; true"
[alias]
    fetch = "!touch {m}/alias"
""",
    }


def via_home(monkeypatch: pytest.MonkeyPatch, hostile: Hostile, text: str) -> None:
    hostile.home.mkdir(exist_ok=True)
    (hostile.home / ".gitconfig").write_text(text)
    monkeypatch.setenv("HOME", str(hostile.home))


def via_xdg(monkeypatch: pytest.MonkeyPatch, hostile: Hostile, text: str) -> None:
    config = hostile.home / "xdg"
    (config / "git").mkdir(parents=True)
    (config / "git" / "config").write_text(text)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))


def via_global(monkeypatch: pytest.MonkeyPatch, hostile: Hostile, text: str) -> None:
    path = hostile.home / "hostile-global"
    hostile.home.mkdir(exist_ok=True)
    path.write_text(text)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(path))


def via_config_count(monkeypatch: pytest.MonkeyPatch, hostile: Hostile, text: str) -> None:
    """The same settings as GIT_CONFIG_COUNT/KEY/VALUE pairs (git reads them as config)."""
    pairs = config_pairs(text)
    monkeypatch.setenv("GIT_CONFIG_COUNT", str(len(pairs)))
    for n, (key, value) in enumerate(pairs):
        monkeypatch.setenv(f"GIT_CONFIG_KEY_{n}", key)
        monkeypatch.setenv(f"GIT_CONFIG_VALUE_{n}", value)


def config_pairs(text: str) -> list[tuple[str, str]]:
    pairs, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            name, _, sub = line.strip("[]").partition(" ")
            section = f"{name}.{sub.strip(chr(34))}" if sub else name
        elif "=" in line:
            key, _, value = line.partition("=")
            pairs.append((f"{section}.{key.strip()}", value.strip().strip('"')))
    return pairs


Install = Callable[[pytest.MonkeyPatch, Hostile, str], None]
WAYS: dict[str, Install] = {
    "home-gitconfig": via_home,
    "xdg-config": via_xdg,
    "git-config-global": via_global,
    "git-config-count": via_config_count,
}


@pytest.mark.parametrize("payload", ["redirect", "filters", "hooks"])
@pytest.mark.parametrize("way", list(WAYS))
def test_a_hostile_git_config_in_the_worker_environment_has_no_effect_on_a_checkout(
    way: str,
    payload: str,
    monkeypatch: pytest.MonkeyPatch,
    git_server: GitServer,
    repo: GitRepo,
    trap: Trap,
    hostile: Hostile,
    tmp_path: Path,
) -> None:
    sha = repo.head()  # the test's own git work is done before the environment turns hostile
    WAYS[way](monkeypatch, hostile, config_texts(git_server, trap, hostile)[payload])
    dest = tmp_path / "workspace"

    info = checkout(repo.url, sha, dest, timeout=TIMEOUT)
    head = resolve_branch(repo.url, "main", timeout=TIMEOUT)

    assert head == sha
    assert info.message == "files with filters"
    # The files as committed: no filter touched them on the way out.
    assert (dest / "hello.txt").read_text() == "hello from the repository\n"
    assert (dest / "blob.bin").read_text() == "not really a pointer\n"
    assert hostile.ran() == [], f"git ran commands of the hostile config: {hostile.ran()}"
    assert trap.peers == [], "git was redirected by the hostile config"
    # No template directory of the config's: the new repository has no hooks of its own.
    assert not (dest / ".git" / "hooks" / "post-checkout").exists()


@pytest.mark.parametrize("variable", ["http_proxy", "all_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_worker_environment_is_not_used_by_git(
    variable: str, monkeypatch: pytest.MonkeyPatch, repo: GitRepo, trap: Trap, tmp_path: Path
) -> None:
    sha = repo.head()
    monkeypatch.setenv(variable, trap.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    checkout(repo.url, sha, tmp_path / "workspace", timeout=TIMEOUT)

    assert trap.peers == []


def test_git_parameters_in_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
    git_server: GitServer,
    repo: GitRepo,
    trap: Trap,
    tmp_path: Path,
) -> None:
    sha = repo.head()
    monkeypatch.setenv(
        "GIT_CONFIG_PARAMETERS", f"'url.{trap.url}.insteadOf'='{git_server.base_url}/'"
    )
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path / "elsewhere-tree"))

    checkout(repo.url, sha, tmp_path / "workspace", timeout=TIMEOUT)

    assert (tmp_path / "workspace" / "hello.txt").exists()
    assert not (tmp_path / "elsewhere").exists()
    assert trap.peers == []


@pytest.mark.parametrize("transport", ["file", "ext"])
def test_git_fetches_over_http_and_https_only(
    transport: str, repo: GitRepo, hostile: Hostile, tmp_path: Path
) -> None:
    url = (
        f"file://{repo.bare}"
        if transport == "file"
        else f"ext::sh -c touch% {hostile.markers}/ext-transport"
    )

    with pytest.raises(GitError) as refused:
        checkout(url, repo.head(), tmp_path / "workspace", timeout=TIMEOUT)
    with pytest.raises(GitError):
        resolve_branch(url, "main", timeout=TIMEOUT)

    assert "transport" in str(refused.value).lower() or "not allowed" in str(refused.value)
    assert hostile.ran() == []
