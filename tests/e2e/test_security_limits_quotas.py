"""Per-user quotas bound what one account can pile up: projects, queued builds and running builds
(429 with a message beyond each), and deleting a project with a thousand queued builds answers
at once, its builds stopped afterwards.

The stack's limits are small (2 projects, 3 queued builds, 1 running build per user); every test
uses fresh users.
"""

from __future__ import annotations

import time
from typing import Any

import docker
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from kiln.models import Build
from testbed.stack import Stack, User, eventually
from tests.support.helpers import (
    PROJECTS,
    assert_cleaned_up,
    assert_error,
    count_builds,
    new_repo,
    rebuild,
    requeue,
    wait_for_build,
)
from workflows.client import Closed, TemporalWorkflows

MAX_PROJECTS, MAX_QUEUED, MAX_RUNNING = 2, 3, 1
# Prints a line once the container runs, then blocks until SIGTERM, on which it exits at once.
BLOCK_UNTIL_TERM = "echo started; trap 'exit 0' TERM; sleep 300 & wait"
# Well below the 30 s a waiting build takes to look again by itself: a wake did it.
WAKE_BOUND = 15.0


@pytest.fixture(scope="module")
async def temporal(limited: Stack) -> Client:
    return await Client.connect(limited.settings.temporal_address)


@pytest.fixture(scope="module")
def workflows(limited: Stack, temporal: Client) -> TemporalWorkflows:
    """The stack's Temporal facade, to look at build workflows from outside."""
    return TemporalWorkflows(temporal, limited.settings)


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    return {
        "max_projects_per_user": MAX_PROJECTS,
        "max_queued_builds_per_user": MAX_QUEUED,
        "max_running_builds_per_user": MAX_RUNNING,
    }


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Stack:
    """The shared stack, with this module's limits."""
    return stack


async def create(stack: Stack, user: User, command: str = "true") -> Any:
    body = {"name": "app", "repoUrl": new_repo(stack.git, "quota").url, "image": stack.image}
    return await stack.http.post(
        PROJECTS, json=body | {"buildCommand": command}, headers=user.headers
    )


async def created(stack: Stack, user: User, command: str = "true") -> dict[str, Any]:
    response = await create(stack, user, command)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def running(stack: Stack, user: User, build_id: int) -> None:
    """Wait until the build's container runs its command."""
    await wait_for_build(stack.http, user.headers, build_id, ("running",))

    async def started() -> bool | None:
        return True if "started" in await stack.logs(user, build_id) else None

    await eventually(started, timeout=60)


async def cancel(stack: Stack, user: User, build_id: int) -> None:
    response = await stack.http.post(f"/api/build/{build_id}/cancel", headers=user.headers)
    assert response.status_code in (202, 409), response.text


async def test_a_project_beyond_the_users_limit_is_a_429(limited: Stack) -> None:
    user, other = await limited.register(), await limited.register()
    first = await created(limited, user)
    await created(limited, user)

    over = await create(limited, user)

    assert "at most 2 projects" in assert_error(over, 429)
    assert (await created(limited, other))["project"]["id"]  # others are not affected
    # Deleting one makes room again.
    deleted = await limited.http.delete(
        f"{PROJECTS}/{first['project']['id']}", headers=user.headers
    )
    assert deleted.status_code == 200, deleted.text
    assert (await create(limited, user)).status_code == 201


async def test_rebuilds_beyond_the_users_queued_limit_are_a_429(limited: Stack) -> None:
    user = await limited.register()
    answer = await created(limited, user, BLOCK_UNTIL_TERM)
    first = answer["build"]["id"]
    await running(limited, user, first)
    queued = [(await requeue(limited, user, first))["id"] for _ in range(MAX_QUEUED)]

    over = await rebuild(limited, user, first)

    assert "at most 3 builds waiting" in assert_error(over, 429)
    assert count_builds(limited, answer["project"]["id"]) == 1 + MAX_QUEUED
    for build_id in [first, *queued]:
        await cancel(limited, user, build_id)


async def test_a_user_runs_at_most_their_limit_across_projects_and_the_next_starts_after(
    limited: Stack, temporal: Client, workflows: TemporalWorkflows
) -> None:
    user = await limited.register()
    first = (await created(limited, user, BLOCK_UNTIL_TERM))["build"]["id"]
    await running(limited, user, first)
    second = (await created(limited, user, BLOCK_UNTIL_TERM))["build"]["id"]

    # The second project has a free slot, but its owner runs as many builds as allowed: the
    # build's claim is refused and its workflow waits (a timer), the build still queued.
    second_workflow = temporal.get_workflow_handle(workflows.workflow_id(second))
    await eventually(lambda: waits_for_a_slot(second_workflow), timeout=30)
    assert (await limited.build(user, second))["status"] == "queued"

    await cancel(limited, user, first)
    started = time.monotonic()
    await running(limited, user, second)
    assert time.monotonic() - started < WAKE_BOUND
    await cancel(limited, user, second)


async def waits_for_a_slot(workflow: WorkflowHandle[Any, Any]) -> bool | None:
    """Whether the build's workflow was refused a slot and now waits to look again."""
    async for event in workflow.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            return True
    return None


async def test_deleting_a_project_with_a_thousand_queued_builds_answers_at_once_and_stops_them(
    limited: Stack, workflows: TemporalWorkflows, docker_client: docker.DockerClient
) -> None:
    user = await limited.register()
    answer = await created(limited, user, BLOCK_UNTIL_TERM)
    project_id, first = answer["project"]["id"], answer["build"]["id"]
    await running(limited, user, first)
    # Two waiting builds with workflows of their own, and a thousand rows behind them.
    waiting = [(await requeue(limited, user, first))["id"] for _ in range(2)]
    with limited.sessions.begin() as session:
        session.add_all(
            Build(project_id=project_id, branch="main", commit_hash=answer["build"]["commitHash"])
            for _ in range(1000)
        )

    started = time.monotonic()
    response = await limited.http.delete(f"{PROJECTS}/{project_id}", headers=user.headers)
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Project deleted", "projectId": project_id}
    assert elapsed < 1.0, elapsed
    assert count_builds(limited, project_id) == 0
    # Afterwards: the running build is stopped and its container removed; every workflow ends.
    await assert_cleaned_up(limited, docker_client, first, timeout=30)

    async def all_canceled() -> bool | None:
        outcomes = [await workflows.describe(build_id) for build_id in [first, *waiting]]
        return True if outcomes == [Closed.CANCELED] * len(outcomes) else None

    await eventually(all_canceled, timeout=30)
