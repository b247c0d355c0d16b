"""What the end-to-end and fault tests share: repositories, the API's error shape, waiting for a
build, and checking that a build left nothing behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docker
import httpx
from sqlalchemy import func, select

from kiln.containers import build_labels
from kiln.models import Build
from kiln.workspaces import workspace_path
from testbed.git_server import GitRepo, GitServer
from testbed.stack import SocketRecorder, Stack, User, eventually

PROJECTS = "/api/project/projects"
FINAL = ("passed", "failed", "canceled")


# --- repositories ----------------------------------------------------------------------------


def repo_name(prefix: str) -> str:
    """A repository name no other test uses: every test shares the session's git server."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_repo(
    git: GitServer, prefix: str, files: dict[str, str] | None = None, message: str = "init"
) -> GitRepo:
    """A new repository with one commit on its default branch: `files`, or a README."""
    repo = git.create_repo(repo_name(prefix))
    repo.commit(files or {"README": "hello\n"}, message)
    return repo


# --- the API -----------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, case: str = "") -> str:
    """The response has `status` and the API's error body: exactly one non-empty message."""
    where = f"{case}: " if case else ""
    assert response.status_code == status, f"{where}{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"message"}, body
    assert isinstance(body["message"], str) and body["message"], body
    message: str = body["message"]
    return message


async def rebuild(stack: Stack, user: User, build_id: int) -> httpx.Response:
    return await stack.http.post(f"/api/build/rebuild/{build_id}", headers=user.headers)


async def requeue(stack: Stack, user: User, build_id: int) -> dict[str, Any]:
    """Rebuild `build_id`, which must answer 201: the new build's record."""
    response = await rebuild(stack, user, build_id)
    assert response.status_code == 201, response.text
    build: dict[str, Any] = response.json()["build"]
    return build


async def wait_for_build(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    build_id: int,
    statuses: tuple[str, ...] = FINAL,
    *,
    timeout: float = 90,
    interval: float = 0.05,
    through_outages: bool = False,
) -> dict[str, Any]:
    """Poll `GET /api/build/{id}` until the build's status is one of `statuses`: its record.

    With `through_outages`, a refused connection or an answer other than 200 (the API or its
    database restarting) is no answer yet; otherwise it fails the wait."""

    async def reached() -> dict[str, Any] | None:
        try:
            response = await http.get(f"/api/build/{build_id}", headers=headers)
        except httpx.TransportError:
            if through_outages:
                return None
            raise
        if through_outages and response.status_code != 200:
            return None
        assert response.status_code == 200, response.text
        build: dict[str, Any] = response.json()["build"]
        return build if build["status"] in statuses else None

    return await eventually(reached, timeout=timeout, interval=interval)


def count_builds(stack: Stack, project_id: int | None = None) -> int:
    """Build rows in the database: all of them, or one project's."""
    query = select(func.count()).select_from(Build)
    if project_id is not None:
        query = query.where(Build.project_id == project_id)
    with stack.sessions() as session:
        return session.scalar(query) or 0


def last_line(logs: str) -> str:
    """The last non-blank line of a build's log: where Kiln writes why a build ended."""
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines, "the logs are empty"
    return lines[-1]


@asynccontextmanager
async def connected(stack: Stack, user: User) -> AsyncIterator[SocketRecorder]:
    """A Socket.io client of `user`, recording every event, disconnected on the way out."""
    recorder = SocketRecorder()
    await recorder.connect(stack.base_url, user.token)
    try:
        yield recorder
    finally:
        await recorder.client.disconnect()


# --- what a build leaves behind ------------------------------------------------------------------


def build_containers(client: docker.DockerClient, deployment: str, build_id: int) -> list[Any]:
    """The build's containers, running or not. Other Kiln test stacks share this Docker host
    and number their builds from 1 too: the deployment label keeps them apart."""
    found: list[Any] = client.containers.list(
        all=True, ignore_removed=True, filters={"label": build_labels(deployment, build_id)}
    )
    return found


async def wait_left_nothing(
    client: docker.DockerClient,
    deployment: str,
    build_id: int,
    workspaces: Iterable[Path],
    *,
    timeout: float,
) -> None:
    """Wait until no container of the build and none of `workspaces` remain (cleanup may trail
    the status write); fail after `timeout` seconds."""
    paths = list(workspaces)

    async def gone() -> bool | None:
        left = build_containers(client, deployment, build_id) or any(p.exists() for p in paths)
        return None if left else True

    await eventually(gone, timeout=timeout)


async def assert_cleaned_up(
    stack: Stack, client: docker.DockerClient, build_id: int, timeout: float = 15
) -> None:
    """No container of the build and no workspace remain."""
    workspace = workspace_path(stack.settings.workspace_dir, build_id)
    await wait_left_nothing(
        client, stack.settings.task_queue, build_id, [workspace], timeout=timeout
    )


# --- waiting -----------------------------------------------------------------------------------


async def holds(condition: bool) -> bool | None:
    """A probe for `eventually`: `eventually(lambda: holds(x == y))` waits until x == y."""
    return True if condition else None


async def run_together(*scenarios: Coroutine[Any, Any, None]) -> None:
    """Run scenarios concurrently; every one runs to its end, and every failure is reported."""
    results = await asyncio.gather(*scenarios, return_exceptions=True)
    failures = [result for result in results if isinstance(result, Exception)]
    if failures:
        raise ExceptionGroup("scenarios failed", failures)
