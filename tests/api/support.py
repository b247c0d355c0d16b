"""What the API tier's tests share: a fake of the Temporal facade, the running app with its
database, and helpers that speak to it as a client would.

The app runs in this process over ASGI (no server, no Docker, no Temporal). The only fake is
`FakeWorkflows`, at the boundary to Temporal; the database (SQLite, migrated), the git server
that project creation resolves branches against, and every layer of the API are real.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import httpx
from jose import jwt
from sqlalchemy import select

from kiln.builds import BuildService
from kiln.contracts import BuildOutcome, Trigger
from kiln.db import SessionFactory
from kiln.logs import append_log
from kiln.models import Build, BuildStatus
from kiln.settings import Settings
from testbed.git_server import GitRepo, GitServer
from tests.support.records import TIMESTAMP
from workflows.client import Closed, WorkflowsUnavailable
from workflows.interface import BuildResult

PASSWORD = "correct horse battery"
PROJECTS = "/api/project/projects"
WEBHOOK = "/api/webhook/github"
# The app's webhook body limit: small, so the 413 tests send little (deployments keep GitHub's
# 25 MB).
WEBHOOK_MAX_BYTES = 64 * 1024
NOT_QUEUED = "Build could not be queued: the workflow service is unavailable"
# The app's KILN_WORKFLOW_ID_PREFIX: build records name their workflow with it.
WORKFLOW_ID_PREFIX = "kiln-api-tests-"


class FakeWorkflows:
    """The `Workflows` facade without Temporal: records what the API asked of it.

    `start_fails` makes `start` raise WorkflowsUnavailable (Temporal away); `no_workflow` makes
    `cancel` answer that the build has no workflow; `cancel_fails` makes `cancel` raise."""

    started: list[int]
    # What labelled each start: its trigger, and for a rebuild the original build.
    triggers: dict[int, tuple[Trigger | None, int | None]]
    canceled: list[int]
    woken: list[int]
    start_fails: bool
    no_workflow: bool
    cancel_fails: bool

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget what was asked, and behave again (a test's switches end with the test)."""
        self.started, self.canceled, self.woken = [], [], []
        self.triggers = {}
        self.start_fails = self.no_workflow = self.cancel_fails = False

    def workflow_id(self, build_id: int) -> str:
        return f"fake-build-{build_id}"

    async def start(
        self, build_id: int, *, trigger: Trigger | None = None, rebuild_of: int | None = None
    ) -> None:
        if self.start_fails:
            raise WorkflowsUnavailable("fake: Temporal is unreachable")
        self.started.append(build_id)
        self.triggers[build_id] = (trigger, rebuild_of)

    async def cancel(self, build_id: int) -> bool:
        if self.cancel_fails:
            raise WorkflowsUnavailable("fake: Temporal is unreachable")
        self.canceled.append(build_id)
        return not self.no_workflow

    async def wake(self, build_ids: list[int]) -> None:
        self.woken.extend(build_ids)

    async def describe(self, build_id: int) -> BuildResult | Closed | None:
        raise LookupError(self.workflow_id(build_id))


@dataclass(frozen=True)
class User:
    id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def assert_error(response: httpx.Response, status: int) -> str:
    """The response has `status` and the API's error body, exactly `{"message": str}`; returns
    the message."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"message"}, body
    message = body["message"]
    assert isinstance(message, str) and message, body
    return message


def token_for(settings: Settings, claims: dict[str, Any], algorithm: str = "HS256") -> str:
    """A token signed with the API's own secret (so only the claims can be wrong)."""
    return jwt.encode(claims, settings.jwt_secret, algorithm=algorithm)


def valid_claims(user_id: int | None, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + 3600}
    if user_id is not None:
        claims["sub"] = str(user_id)
    return claims | extra


def sign(secret: str, body: bytes) -> str:
    """GitHub's `X-Hub-Signature-256` for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_payload(
    repo_url: str,
    *,
    ref: str,
    after: str,
    message: str = "feat: pushed",
    author: str = "Pusher",
    **extra: Any,
) -> bytes:
    payload = {
        "ref": ref,
        "before": secrets.token_hex(20),  # every push differs, as GitHub's do
        "after": after,
        "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git")},
        "head_commit": {"message": message, "author": {"name": author}},
    } | extra
    return json.dumps(payload).encode()


@dataclass
class Api:
    """The app in this process, its database and git server, and a client for it."""

    http: httpx.AsyncClient
    settings: Settings
    sessions: SessionFactory
    workflows: FakeWorkflows
    git: GitServer
    _numbers: count[int] = field(default_factory=lambda: count(1))
    _shared_repo: GitRepo | None = None

    async def register(self, email: str | None = None, name: str = "Jane Doe") -> User:
        email = email or f"user{next(self._numbers)}-{uuid.uuid4().hex[:6]}@example.com"
        body = {"email": email, "password": PASSWORD, "name": name}
        response = await self.http.post("/api/auth/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return User(id=data["user"]["id"], email=data["user"]["email"], token=data["token"])

    def repo(self, branch: str = "main") -> GitRepo:
        """A new repository on the git server, with one commit on `branch`."""
        repo = self.git.create_repo(f"app-{uuid.uuid4().hex[:10]}", branch=branch)
        repo.commit({"README.md": "hello\n"}, "initial")
        return repo

    def shared_repo(self) -> GitRepo:
        """One repository for the tests that do not care which (it is never pushed to)."""
        if self._shared_repo is None:
            self._shared_repo = self.repo()
        return self._shared_repo

    async def create_project(
        self, user: User, repo: GitRepo | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Create a project (on the shared repository unless one is given): the 201 answer."""
        repo = repo or self.shared_repo()
        body = {"name": "app", "repoUrl": repo.url, "image": "busybox", "buildCommand": "true"}
        response = await self.http.post(PROJECTS, json=body | fields, headers=user.headers)
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def build(self, user: User, build_id: int) -> dict[str, Any]:
        response = await self.http.get(f"/api/build/{build_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        build: dict[str, Any] = response.json()["build"]
        return build

    async def project(self, user: User, project_id: int) -> dict[str, Any]:
        response = await self.http.get(f"{PROJECTS}/{project_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        project: dict[str, Any] = response.json()["project"]
        return project

    async def logs(self, user: User, build_id: int) -> str:
        response = await self.http.get(f"/api/build/{build_id}/logs", headers=user.headers)
        assert response.status_code == 200, response.text
        logs: str = response.json()["logs"]
        return logs

    def finish(self, build_id: int, status: BuildStatus, exit_code: int | None = None) -> None:
        """End a build as a worker would, through the core service."""
        BuildService(self.sessions).finish(BuildOutcome(build_id, status, exit_code))

    def append_log(self, build_id: int, *chunks: bytes) -> None:
        """Store output for a build, one chunk per write, as the log writer does."""
        for chunk in chunks:
            with self.sessions.begin() as session:
                append_log(session, build_id, chunk)

    def build_ids(self, project_id: int) -> list[int]:
        """Every build of the project in the database, oldest first."""
        with self.sessions() as session:
            query = select(Build.id).where(Build.project_id == project_id).order_by(Build.id)
            return list(session.scalars(query))


async def deliver(
    api: Api,
    project: dict[str, Any],
    body: bytes,
    *,
    event: str = "push",
    delivery: str | None = None,
    own_url: bool = False,
    secret: str | None = None,
) -> httpx.Response:
    """POST `body` as GitHub would, signed with the project's secret (or `secret`)."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret or project["webhookSecret"], body),
    }
    url = f"{WEBHOOK}/{project['id']}" if own_url else WEBHOOK
    return await api.http.post(url, content=body, headers=headers)


def new_sha() -> str:
    return secrets.token_hex(20)


def push_to(project: dict[str, Any], ref: str = "refs/heads/main", **extra: Any) -> bytes:
    return push_payload(project["repoUrl"], ref=ref, after=extra.pop("after", new_sha()), **extra)


DELIVERY_KEYS = {"deliveryId", "event", "receivedAt", "result", "reason", "builds"}


async def deliveries(api: Api, user: User, project_id: int) -> list[dict[str, Any]]:
    response = await api.http.get(f"{PROJECTS}/{project_id}/deliveries", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "deliveries"} and body["message"] == "Deliveries fetched"
    listed: list[dict[str, Any]] = body["deliveries"]
    for entry in listed:
        assert set(entry) == DELIVERY_KEYS, entry
        assert TIMESTAMP.match(entry["receivedAt"]), entry
    return listed
