"""Git over the network: resolve a branch head, and check out exactly one pinned commit.

Errors say whether trying again could help: a repository or commit that does not exist never
will (`GitRefused`, permanent), a refused connection or a timeout may (`GitUnavailable`).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kiln.errors import KilnError, PermanentError, RetryableError

# Messages by which git says the thing asked for does not exist or is not ours to read.
_PERMANENT = re.compile(
    r"not found|does not appear to be a git repository|couldn't find remote ref"
    r"|not our ref|no such remote ref|unadvertised object|authentication failed"
    r"|could not read username|invalid refspec|returned error: 40[0-9]",
    re.IGNORECASE,
)
# ... and by which it says the repository wants credentials, or refused the ones it got.
_AUTH = re.compile(
    r"authentication failed|could not read (username|password)|returned error: 401",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(https?://)[^/@\s]+@", re.IGNORECASE)
SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?\Z")


class GitError(KilnError):
    """A git command failed."""

    @property
    def permanent(self) -> bool:
        return isinstance(self, PermanentError)


class GitRefused(GitError, PermanentError):
    """The repository, branch or commit does not exist or is not ours to read."""


class GitAuthFailed(GitRefused):
    """The repository wants credentials: none were given, or it refused them."""


class GitUnavailable(GitError, RetryableError):
    """git could not reach the repository, or timed out: it may pass."""


# Git's default user name for a token given without one: GitHub, GitLab and Gitea take any
# name with a token as the password.
TOKEN_USERNAME = "x-access-token"


@dataclass(frozen=True)
class Credentials:
    """HTTP basic credentials for a repository. Never part of a URL or git's argv: `_git`
    hands them to git as an `http.extraHeader` through its environment, which only this user's
    processes can read, and nothing writes them to the workspace's `.git/config`."""

    username: str
    token: str = field(repr=False)

    def header(self) -> str:
        pair = f"{self.username or TOKEN_USERNAME}:{self.token}".encode()
        return f"Authorization: Basic {base64.b64encode(pair).decode('ascii')}"


def auth_env(auth: Credentials | None) -> dict[str, str]:
    """git's configuration for `auth`, as environment variables (none without)."""
    if auth is None:
        return {}
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": auth.header(),
    }


def git_error(message: str, *, permanent: bool) -> GitError:
    return GitRefused(message) if permanent else GitUnavailable(message)


def redact(text: str) -> str:
    """Remove credentials embedded in URLs, so tokens never reach logs or error messages."""
    return _USERINFO.sub(r"\1***@", text)


def repo_key(url: str) -> str:
    """A repository URL reduced to what identifies it: no credentials, host in lower case, no
    trailing slash or `.git`. GitHub's `clone_url` and `html_url` both map to the same key.
    Raises ValueError for a URL that does not parse (a bad port, an unclosed bracket)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port  # raises ValueError when not a valid port
    if port:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    path = path.removesuffix(".git").rstrip("/")
    return f"{parts.scheme.lower()}://{host}{path}"


# What git may take from the worker's environment: enough to find programs and trust
# certificates, nothing that configures git (GIT_*, GIT_CONFIG_COUNT/KEY/VALUE), points it at a
# proxy, or names a home directory with a .gitconfig.
_PASSED_ENV = ("PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "TMPDIR")


def git_env() -> dict[str, str]:
    """The whole environment git runs with: no global or system configuration, no prompts,
    no LFS downloads, no proxy, no home directory of the worker's."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    return env | {
        "GIT_CONFIG_GLOBAL": os.devnull,  # no ~/.gitconfig, no $XDG_CONFIG_HOME/git/config
        "GIT_CONFIG_NOSYSTEM": "1",  # no /etc/gitconfig
        "HOME": "/nonexistent",
        "GIT_TERMINAL_PROMPT": "0",  # never hang asking for a password
        "GIT_ASKPASS": "true",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "LC_ALL": "C",
    }


# Defence in depth, whatever a repository's own config or attributes say: no hooks, no
# file-system monitor command, no filter driver (LFS or any other) run on checkout, no
# credential helper, and only http(s) as a transport (no file://, ssh, ext:: or git://).
_SAFETY = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "credential.helper=",
    "-c", "protocol.allow=never",
    "-c", "protocol.https.allow=always",
    "-c", "protocol.http.allow=always",
    "-c", "filter.lfs.smudge=",
    "-c", "filter.lfs.process=",
    "-c", "filter.lfs.required=false",
    "-c", "http.followRedirects=false",
    "-c", "protocol.version=2",
]  # fmt: skip
# A server sending less than this many bytes a second for `stall` seconds is dropped.
STALL_BYTES_PER_SECOND = 1024


def _git(
    args: list[str],
    *,
    cwd: Path | None = None,
    timeout: float,
    pin: str | None = None,
    stall: float | None = None,
    auth: Credentials | None = None,
) -> str:
    command = ["git", *_SAFETY]
    if pin:  # connect to the address that was checked, not to whatever DNS says now
        command += ["-c", f"http.curloptResolve={pin}"]
    if stall:
        command += ["-c", f"http.lowSpeedLimit={STALL_BYTES_PER_SECOND}"]
        command += ["-c", f"http.lowSpeedTime={max(1, round(stall))}"]
    command += args
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=git_env() | auth_env(auth),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitUnavailable(f"git {args[0]} timed out after {timeout:g}s") from exc
    if done.returncode != 0:
        detail = redact(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
        if _AUTH.search(done.stderr):
            given = "refused the credentials given" if auth else "needs credentials (none given)"
            raise GitAuthFailed(f"git {args[0]} failed: the repository {given}")
        message = f"git {args[0]} failed: {detail or f'exit code {done.returncode}'}"
        raise git_error(message, permanent=bool(_PERMANENT.search(done.stderr)))
    return done.stdout


def resolve_branch(
    url: str,
    branch: str,
    *,
    timeout: float,
    pin: str | None = None,
    stall: float | None = None,
    auth: Credentials | None = None,
) -> str:
    """The full sha at the tip of `branch`, or a permanent GitError if there is no such branch.
    `pin` (see kiln.repos.check_repo_url) fixes the address git connects to; with `stall`, a
    server sending under 1 KiB/s for that many seconds is dropped (a retryable error); `auth`
    are the repository's credentials (GitAuthFailed when it wants others)."""
    ref = f"refs/heads/{branch}"
    ls_remote = ["ls-remote", "--heads", "--", url, ref]
    out = _git(ls_remote, timeout=timeout, pin=pin, stall=stall, auth=auth)
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    raise GitRefused(f"branch '{branch}' not found in the repository")


@dataclass(frozen=True)
class CommitInfo:
    message: str
    author: str


def checkout(
    url: str,
    sha: str,
    dest: Path,
    *,
    timeout: float,
    pin: str | None = None,
    stall: float | None = None,
    auth: Credentials | None = None,
) -> CommitInfo:
    """Fetch only `sha` (depth 1) into a fresh `dest` and check it out; `auth` are used for
    the fetch only (the URL is given on the command line, never stored as a remote).

    `dest` is emptied first: a workspace that a build container has had mounted may hold hooks
    or repository config planted by the build, and git must never run those on the host."""
    if not SHA_RE.match(sha):
        raise GitRefused(f"'{sha}' is not a full commit hash")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    # No template directory: nothing but git's own files in the new .git.
    _git(["init", "-q", "--template=", "."], cwd=dest, timeout=timeout)
    fetch = ["fetch", "-q", "--no-tags", "--no-recurse-submodules", "--depth", "1", "--", url, sha]
    _git(fetch, cwd=dest, timeout=timeout, pin=pin, stall=stall, auth=auth)
    _git(["checkout", "-q", "--force", "FETCH_HEAD"], cwd=dest, timeout=timeout)
    return _commit_info(dest, timeout)


def _commit_info(dest: Path, timeout: float) -> CommitInfo:
    out = _git(["log", "-1", "--format=%an%x00%B"], cwd=dest, timeout=timeout)
    author, _, message = out.partition("\0")
    return CommitInfo(message=message.strip(), author=author.strip())
