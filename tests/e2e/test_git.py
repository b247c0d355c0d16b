"""kiln.git against a real smart-HTTP git server: resolving branches, checking out pinned
commits, and errors that say whether retrying could help without leaking credentials."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.git import CommitInfo, GitError, checkout, redact, resolve_branch
from kiln.repos import RepoRefused, check_repo_url
from testbed.git_server import GitRepo, GitServer
from testbed.stack import free_port
from tests.support.helpers import repo_name

TIMEOUT = 30.0
TOKEN = "ghp_s3cr3tT0k3nValue"


@pytest.fixture
def repo(git_server: GitServer) -> GitRepo:
    return git_server.create_repo(repo_name("lib"))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://deploy:{TOKEN}@", 1)


def test_resolve_branch_gives_the_head_sha(repo: GitRepo) -> None:
    repo.commit({"a.txt": "1\n"}, "one")
    head = repo.commit({"a.txt": "2\n"}, "two")
    other = repo.commit({"b.txt": "x\n"}, "on a branch", branch="feature")

    assert resolve_branch(repo.url, "main", timeout=TIMEOUT) == head
    assert resolve_branch(repo.url, "feature", timeout=TIMEOUT) == other


def test_an_unknown_branch_is_a_permanent_error(repo: GitRepo) -> None:
    repo.commit({"a.txt": "1\n"}, "one")

    with pytest.raises(GitError) as caught:
        resolve_branch(repo.url, "does-not-exist", timeout=TIMEOUT)

    assert caught.value.permanent is True
    assert "does-not-exist" in str(caught.value)


def test_an_unknown_repository_is_a_permanent_error(git_server: GitServer) -> None:
    url = f"{git_server.base_url}/{repo_name('nobody')}.git"

    with pytest.raises(GitError) as caught:
        resolve_branch(url, "main", timeout=TIMEOUT)

    assert caught.value.permanent is True
    assert "not found" in str(caught.value).lower()


def test_a_refused_connection_may_be_retried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/app.git"

    with pytest.raises(GitError) as resolving:
        resolve_branch(url, "main", timeout=TIMEOUT)
    with pytest.raises(GitError) as fetching:
        checkout(url, "a" * 40, tmp_path / "ws", timeout=TIMEOUT)

    assert resolving.value.permanent is False
    assert fetching.value.permanent is False


def test_a_server_that_never_answers_times_out_and_may_be_retried(silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/app.git"

    with pytest.raises(GitError) as caught:
        resolve_branch(url, "main", timeout=1)

    assert caught.value.permanent is False
    assert "timed out" in str(caught.value)


def test_checkout_of_an_older_commit_gives_its_files_and_info(
    repo: GitRepo, tmp_path: Path
) -> None:
    old = repo.commit({"app.txt": "version one\n"}, "feat: first version", author="Grace Hopper")
    repo.commit({"app.txt": "version two\n", "new.txt": "n\n"}, "feat: second", author="Alan Kay")
    dest = tmp_path / "ws"

    info = checkout(repo.url, old, dest, timeout=TIMEOUT)

    assert info == CommitInfo(message="feat: first version", author="Grace Hopper")
    assert (dest / "app.txt").read_text() == "version one\n"
    assert not (dest / "new.txt").exists()


def test_checkout_twice_into_the_same_directory_is_fine(repo: GitRepo, tmp_path: Path) -> None:
    old = repo.commit({"app.txt": "version one\n"}, "first")
    new = repo.commit({"app.txt": "version two\n"}, "second")
    dest = tmp_path / "ws"

    first = checkout(repo.url, old, dest, timeout=TIMEOUT)
    (dest / "build-output.txt").write_text("left by a crashed attempt\n")
    again = checkout(repo.url, old, dest, timeout=TIMEOUT)

    assert again == first
    assert (dest / "app.txt").read_text() == "version one\n"
    # A retried activity may find a directory of another commit: it gets the asked-for one.
    moved = checkout(repo.url, new, dest, timeout=TIMEOUT)
    assert moved.message == "second"
    assert (dest / "app.txt").read_text() == "version two\n"


def test_checkout_of_a_commit_the_repository_lacks_is_permanent(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.commit({"a.txt": "1\n"}, "one")

    with pytest.raises(GitError) as caught:
        checkout(repo.url, "0123456789" * 4, tmp_path / "ws", timeout=TIMEOUT)

    assert caught.value.permanent is True


def test_checkout_refuses_an_abbreviated_hash(repo: GitRepo, tmp_path: Path) -> None:
    sha = repo.commit({"a.txt": "1\n"}, "one")

    with pytest.raises(GitError) as caught:
        checkout(repo.url, sha[:12], tmp_path / "ws", timeout=TIMEOUT)

    assert caught.value.permanent is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"https://user:{TOKEN}@github.com/acme/app.git",
            "https://***@github.com/acme/app.git",
        ),
        (f"http://{TOKEN}@127.0.0.1:8080/app.git", "http://***@127.0.0.1:8080/app.git"),
        (
            f"fatal: unable to access 'https://x-access-token:{TOKEN}@host/r.git/': 403",
            "fatal: unable to access 'https://***@host/r.git/': 403",
        ),
        ("https://github.com/acme/app.git", "https://github.com/acme/app.git"),
    ],
)
def test_redact_hides_credentials_in_urls(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert TOKEN not in redact(text)


def test_git_errors_never_contain_the_token(git_server: GitServer, tmp_path: Path) -> None:
    missing = with_credentials(f"{git_server.base_url}/{repo_name('nobody')}.git")
    refused = with_credentials(f"http://127.0.0.1:{free_port()}/app.git")
    errors: list[GitError] = []

    for url in (missing, refused):
        with pytest.raises(GitError) as resolving:
            resolve_branch(url, "main", timeout=TIMEOUT)
        with pytest.raises(GitError) as fetching:
            checkout(url, "a" * 40, tmp_path / uuid.uuid4().hex, timeout=TIMEOUT)
        errors += [resolving.value, fetching.value]

    for error in errors:
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)


def test_a_pinned_address_is_what_git_connects_to(git_server: GitServer) -> None:
    """The pin from kiln.repos fixes the address: a name that resolves nowhere still reaches
    the server it was pinned to (and so a DNS answer changed later cannot redirect git)."""
    repo = git_server.create_repo(repo_name("pin"))
    sha = repo.commit({"a.txt": "a\n"}, "pinned")
    port = git_server.base_url.rsplit(":", 1)[1]
    url = repo.url.replace("127.0.0.1", "kiln-pinned.invalid")

    with pytest.raises(GitError):
        resolve_branch(url, "main", timeout=30)
    assert (
        resolve_branch(url, "main", timeout=30, pin=f"kiln-pinned.invalid:{port}:127.0.0.1") == sha
    )


def test_a_public_address_needs_no_pin_and_a_private_one_is_refused() -> None:
    # An address is connected to as written: there is no lookup to rebind, nothing to pin.
    assert check_repo_url("https://1.1.1.1/a/b.git", allow_local=False) is None
    assert check_repo_url("http://8.8.8.8:8080/a.git", allow_local=False) is None
    with pytest.raises(RepoRefused):
        check_repo_url("http://169.254.169.254/latest", allow_local=False)
    assert check_repo_url("http://127.0.0.1/a.git", allow_local=True) is None
