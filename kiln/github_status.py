"""Commit statuses on GitHub: which repositories are GitHub's, what a status says, and the
project's GitHub token (write-only, sealed like secrets under KILN_SECRETS_KEY).

A repository counts as GitHub's when its host is github.com, or is the host of
KILN_GITHUB_API_URL (GitHub Enterprise, or a stand-in on loopback in tests). Its owner and name
come from the URL's path. Kiln posts `POST /repos/{owner}/{repo}/statuses/{sha}`: `pending`
while the build is queued and again when it runs, then `success` (exit 0), `failure` (a non-zero
exit) or `error` (canceled, timed out, or failed without an exit code). The token is read and
opened on the worker that sends (kiln.notifications), never carried through Temporal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from sqlalchemy import select, update

from kiln.access import owned_project
from kiln.crypto import SecretBox
from kiln.db import SessionFactory
from kiln.errors import NotFound, RequestError
from kiln.models import BuildStatus, Project
from kiln.outbound import Answer, post_json

GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})
MAX_TOKEN = 4096
# GitHub's own limits on owner and repository names (and never `.` or `..`: path segments).
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# GitHub cuts a description at 140 characters.
MAX_DESCRIPTION = 140


class InvalidGithubToken(RequestError):
    """A token that cannot be stored (the API's 400)."""


@dataclass(frozen=True)
class GithubRepo:
    owner: str
    name: str


def github_repo(repo_url: str, api_url: str) -> GithubRepo | None:
    """The GitHub repository `repo_url` names, or None when it is not on GitHub (or on the
    GitHub Enterprise host of `api_url`)."""
    try:
        parts = urlsplit(repo_url)
        host = (parts.hostname or "").lower()
        api_host = (urlsplit(api_url).hostname or "").lower()
    except ValueError:
        return None
    if not host or (host not in GITHUB_HOSTS and host != api_host):
        return None
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 2:
        return None
    owner, name = segments[0], segments[1].removesuffix(".git")
    if not all(_NAME.fullmatch(s) and s not in (".", "..") for s in (owner, name)):
        return None
    return GithubRepo(owner, name)


def status_url(api_url: str, repo: GithubRepo, sha: str) -> str:
    path = f"/repos/{quote(repo.owner)}/{quote(repo.name)}/statuses/{quote(sha)}"
    return api_url.rstrip("/") + path


def github_state(event: str, exit_code: int | None) -> str:
    """GitHub's state for a build event (`queued`, `running` or a final status)."""
    if event in (BuildStatus.QUEUED, BuildStatus.RUNNING):
        return "pending"
    if event == BuildStatus.PASSED:
        return "success"
    if event == BuildStatus.FAILED and exit_code is not None:
        return "failure"
    return "error"  # canceled, timed out, or failed without an exit code


def describe(event: str, exit_code: int | None) -> str:
    """A short sentence for the status (and a hook's text)."""
    sentences = {
        BuildStatus.QUEUED: "The build is queued",
        BuildStatus.RUNNING: "The build is running",
        BuildStatus.PASSED: "The build passed",
        BuildStatus.CANCELED: "The build was canceled",
    }
    if event == BuildStatus.FAILED:
        if exit_code is None:
            return "The build could not finish"
        return f"The build failed (exit code {exit_code})"
    return sentences.get(BuildStatus(event), f"The build is {event}")


def dashboard_url(public_url: str, build_id: int) -> str | None:
    """The build's page on the dashboard (None when KILN_PUBLIC_URL is not set)."""
    return f"{public_url.rstrip('/')}/builds/{build_id}" if public_url else None


def status_body(
    event: str, exit_code: int | None, project_name: str, target_url: str | None
) -> bytes:
    body: dict[str, str] = {
        "state": github_state(event, exit_code),
        "context": f"kiln/{project_name}",
        "description": describe(event, exit_code)[:MAX_DESCRIPTION],
    }
    if target_url:
        body["target_url"] = target_url
    return json.dumps(body).encode()


async def post_status(url: str, token: str, body: bytes) -> Answer:
    """One status to GitHub (OutboundFailed when no answer came)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    return await post_json(url, body, headers)


def check_token(token: str) -> str:
    """`token` if it may be stored; InvalidGithubToken (never repeating it) if not."""
    if not token:
        raise InvalidGithubToken("token may not be empty")
    if len(token) > MAX_TOKEN:
        raise InvalidGithubToken(f"token may be at most {MAX_TOKEN} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in token):
        raise InvalidGithubToken("token may not contain spaces or control characters")
    return token


def token_context(project_id: int) -> str:
    return f"github-token:{project_id}"


class GithubTokens:
    """Projects' GitHub tokens: set and removed by their owner, opened by the worker."""

    def __init__(self, sessions: SessionFactory, box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    @property
    def available(self) -> bool:
        return self._box.available

    def set(self, owner_id: int, project_id: int, token: str) -> None:
        """Create or replace (InvalidGithubToken, SecretsUnavailable without a key)."""
        check_token(token)
        sealed = self._box.seal(token, token_context(project_id))
        with self._sessions.begin() as session:
            owned_project(session, project_id, owner_id)
            session.execute(
                update(Project).where(Project.id == project_id).values(github_token=sealed)
            )

    def clear(self, owner_id: int, project_id: int) -> None:
        """NotFound when the project has none."""
        with self._sessions.begin() as session:
            project = owned_project(session, project_id, owner_id)
            if project.github_token is None:
                raise NotFound("Project has no GitHub token")
            project.github_token = None

    def open(self, project_id: int, sealed: str) -> str:
        return self._box.open(sealed, token_context(project_id))

    def check_key(self) -> bool:
        """Whether any project has a token, the key opening one of them (SecretsUnavailable
        without a key, UnreadableSecret when it opens none)."""
        with self._sessions() as session:
            row = session.execute(
                select(Project.id, Project.github_token)
                .where(Project.github_token.is_not(None))
                .limit(1)
            ).one_or_none()
        if row is None or row[1] is None:
            return False
        self.open(row[0], row[1])
        return True

    def rotate(self) -> int:
        """Re-seal every token with the newest key (as SecretStore.rotate does for secrets)."""
        with self._sessions.begin() as session:
            projects = list(
                session.scalars(select(Project).where(Project.github_token.is_not(None)))
            )
            for project in projects:
                assert project.github_token is not None
                project.github_token = self._box.reseal(project.github_token)
            return len(projects)
