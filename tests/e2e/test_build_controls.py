"""Build controls: cancel, per-project timeouts, and per-project concurrency with a FIFO queue.

Commands that must be stopped from outside either exit on SIGTERM (`trap 'exit 0' TERM; sleep
300 & wait`: the shell is PID 1 and runs the trap as soon as the signal interrupts `wait`), so
a test does not sit through the 10 s grace period, or deliberately ignore it to show the SIGKILL
that follows the grace period.
"""

from __future__ import annotations

import time
from typing import Any

import docker
import pytest

from testbed.stack import SocketRecorder, Stack, User, eventually
from tests.support.helpers import (
    FINAL,
    assert_cleaned_up,
    build_containers,
    connected,
    holds,
    last_line,
    new_repo,
    requeue,
    run_together,
    wait_for_build,
)

# Prints a line once the container runs, then blocks until SIGTERM, on which it exits at once.
BLOCK_UNTIL_TERM = "echo started; trap 'exit 0' TERM; sleep 300 & wait"
# Prints a line, then ignores SIGTERM: only the SIGKILL after the grace period stops it.
IGNORE_TERM = "echo started; trap '' TERM; sleep 300"
# Cancel: the request reaches the run loop with its next heartbeat, then the container stops.
CANCEL_BOUND = 30.0
# A stopped build's container and workspace are gone this soon after its final status.
CLEANUP_BOUND = 5.0


async def wait_logs(stack: Stack, user: User, build_id: int, text: str) -> str:
    """Wait until the build's output contains `text` (its container is running by then)."""

    async def printed() -> str | None:
        logs = await stack.logs(user, build_id)
        return logs if text in logs else None

    return await eventually(printed, timeout=60)


async def cancel(stack: Stack, user: User, build_id: int | str) -> Any:
    return await stack.http.post(f"/api/build/{build_id}/cancel", headers=user.headers)


async def patch_project(stack: Stack, user: User, project_id: int | str, body: Any) -> Any:
    return await stack.http.patch(
        f"/api/project/projects/{project_id}", json=body, headers=user.headers
    )


async def project_builds(stack: Stack, user: User, project_id: int) -> list[dict[str, Any]]:
    """The project's builds, all read in one request (one consistent snapshot)."""
    response = await stack.http.get(f"/api/project/projects/{project_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    builds: list[dict[str, Any]] = response.json()["project"]["builds"]
    return sorted(builds, key=lambda build: build["id"])


def status_events(recorder: SocketRecorder, build_ids: set[int]) -> list[tuple[int, str]]:
    """(build id, status) of every status event of these builds, in the order received."""
    return [
        (data["id"], data["status"])
        for event, data in recorder.events
        if event == "buildStatusUpdate" and data["id"] in build_ids
    ]


def max_running_at_once(events: list[tuple[int, str]]) -> int:
    running: set[int] = set()
    most = 0
    for build_id, status in events:
        if status == "running":
            running.add(build_id)
        else:
            running.discard(build_id)
        most = max(most, len(running))
    return most


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_of_a_queued_then_a_running_build(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    owner, stranger = await stack.register(), await stack.register()
    async with connected(stack, owner) as recorder:
        repo = new_repo(stack.git, "controls")
        created = await stack.create_project(
            owner, repo.url, BLOCK_UNTIL_TERM, maxConcurrentBuilds=1
        )
        running_id = created["build"]["id"]
        await wait_logs(stack, owner, running_id, "started")
        assert build_containers(docker_client, stack.settings.task_queue, running_id)
        waiting = await requeue(stack, owner, running_id)
        assert waiting["status"] == "queued" and waiting["queuePosition"] == 1

        # Only the owner may cancel.
        for build_id in (running_id, waiting["id"]):
            refused = await cancel(stack, stranger, build_id)
            assert refused.status_code == 403, refused.text
        assert (await stack.build(owner, running_id))["status"] == "running"
        assert (await stack.build(owner, waiting["id"]))["status"] == "queued"

        # The queued build: canceled without ever running.
        response = await cancel(stack, owner, waiting["id"])
        assert response.status_code == 202, response.text
        assert response.json()["message"] == "Build cancel requested"
        assert response.json()["build"]["id"] == waiting["id"]
        final = await wait_for_build(stack.http, owner.headers, waiting["id"], timeout=15)
        assert final["status"] == "canceled"
        assert final["finishedAt"] is not None and final["queuePosition"] is None
        assert (await stack.build(owner, running_id))["status"] == "running"

        # The running build: its container is stopped and removed, its workspace deleted.
        started = time.monotonic()
        response = await cancel(stack, owner, running_id)

        assert response.status_code == 202, response.text
        body = response.json()
        assert body["message"] == "Build cancel requested"
        assert body["build"]["id"] == running_id
        assert body["build"]["projectId"] == created["project"]["id"]
        final = await wait_for_build(stack.http, owner.headers, running_id, timeout=CANCEL_BOUND)
        assert time.monotonic() - started < CANCEL_BOUND
        await assert_cleaned_up(stack, docker_client, running_id, CLEANUP_BOUND)
        assert final["status"] == "canceled", await stack.logs(owner, running_id)
        assert final["finishedAt"] is not None and final["queuePosition"] is None
        await eventually(lambda: holds(len(recorder.statuses(running_id)) >= 3), timeout=10)
        assert recorder.statuses(running_id) == ["queued", "running", "canceled"]
        # Freeing the slot did not start the canceled build.
        assert recorder.statuses(waiting["id"]) == ["queued", "canceled"]
        assert (await stack.build(owner, waiting["id"]))["status"] == "canceled"
        # It never ran: its log holds only the note of its cancel.
        assert (await stack.logs(owner, waiting["id"])).strip() == "[kiln] build canceled"
        await assert_cleaned_up(stack, docker_client, waiting["id"], CLEANUP_BOUND)
        # A repeated cancel finds the build finished.
        again = await cancel(stack, owner, running_id)
        assert again.status_code == 409, again.text


async def test_a_build_ignoring_sigterm_is_killed_after_the_grace_period_on_cancel_and_timeout(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    """Both paths wait out the 10 s grace period, so they run side by side."""
    user = await stack.register()

    async def canceled() -> None:
        repo = new_repo(stack.git, "controls")
        created = await stack.create_project(user, repo.url, IGNORE_TERM)
        build_id = created["build"]["id"]
        await wait_logs(stack, user, build_id, "started")
        started = time.monotonic()
        response = await cancel(stack, user, build_id)
        assert response.status_code == 202, response.text
        final = await wait_for_build(stack.http, user.headers, build_id, timeout=CANCEL_BOUND + 10)
        assert time.monotonic() - started < CANCEL_BOUND + 10
        await assert_cleaned_up(stack, docker_client, build_id, CLEANUP_BOUND)
        assert final["status"] == "canceled", await stack.logs(user, build_id)

    async def timed_out() -> None:
        # `sleep` as PID 1 ignores SIGTERM: 2 s, then the 10 s grace, then SIGKILL.
        repo = new_repo(stack.git, "controls")
        created = await stack.create_project(
            user, repo.url, "echo started; sleep 60", timeoutSeconds=2
        )
        assert created["project"]["timeoutSeconds"] == 2
        build_id = created["build"]["id"]
        started = time.monotonic()
        final = await stack.wait_final(user, build_id, timeout=45)
        assert time.monotonic() - started < 40
        await assert_cleaned_up(stack, docker_client, build_id, CLEANUP_BOUND)
        assert final["status"] == "failed"
        logs = await stack.logs(user, build_id)
        assert "started" in logs
        assert "timed out" in last_line(logs).lower()

    await run_together(canceled(), timed_out())


async def test_cancelling_a_finished_build_is_a_conflict_and_changes_nothing(
    stack: Stack,
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "controls")
    created = await stack.create_project(user, repo.url, "echo done")
    build_id = created["build"]["id"]
    before = await stack.wait_final(user, build_id)
    assert before["status"] == "passed"
    logs_before = await stack.logs(user, build_id)

    response = await cancel(stack, user, build_id)

    assert response.status_code == 409, response.text
    assert "message" in response.json()
    assert await stack.build(user, build_id) == before
    assert await stack.logs(user, build_id) == logs_before


@pytest.mark.parametrize(("build_id", "status"), [("999999999", 404), ("abc", 400), ("0", 400)])
async def test_cancel_of_an_absent_or_malformed_build_id(
    stack: Stack, build_id: str, status: int
) -> None:
    user = await stack.register()

    response = await cancel(stack, user, build_id)

    assert response.status_code == status, response.text
    assert "message" in response.json()


# --- timeouts -------------------------------------------------------------------------------


async def test_project_settings_default_and_a_patched_timeout_applies_to_the_next_build(
    stack: Stack,
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "controls")
    created = await stack.create_project(user, repo.url, "echo quick")
    project_id = created["project"]["id"]
    assert created["project"]["timeoutSeconds"] == 3600
    assert created["project"]["maxConcurrentBuilds"] == 1
    first = await stack.wait_final(user, created["build"]["id"])
    assert first["status"] == "passed"

    # The command exits 0 when stopped: a timed-out build fails whatever its exit code.
    response = await patch_project(
        stack,
        user,
        project_id,
        {"timeoutSeconds": 2, "buildCommand": BLOCK_UNTIL_TERM},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Project updated"
    assert body["project"]["id"] == project_id
    assert body["project"]["timeoutSeconds"] == 2
    assert body["project"]["buildCommand"] == BLOCK_UNTIL_TERM
    fetched = await stack.http.get(f"/api/project/projects/{project_id}", headers=user.headers)
    assert fetched.json()["project"]["timeoutSeconds"] == 2

    second = await requeue(stack, user, first["id"])
    final = await stack.wait_final(user, second["id"], timeout=30)
    assert final["status"] == "failed"
    logs = await stack.logs(user, second["id"])
    assert "started" in logs
    assert "timed out" in last_line(logs).lower()
    # The earlier build is as it was.
    assert (await stack.build(user, first["id"]))["status"] == "passed"


async def test_patch_refuses_invalid_settings(stack: Stack) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "controls")
    created = await stack.create_project(user, repo.url, "true", timeoutSeconds=30)
    project_id = created["project"]["id"]
    invalid: list[dict[str, Any]] = [
        {"timeoutSeconds": 0},
        {"timeoutSeconds": -5},
        {"timeoutSeconds": "abc"},
        {"timeoutSeconds": 1.5},
        {"timeoutSeconds": None},
        {"maxConcurrentBuilds": 0},
        {"maxConcurrentBuilds": "two"},
    ]

    for body in invalid:
        response = await patch_project(stack, user, project_id, body)
        assert response.status_code == 400, (body, response.text)
        assert "message" in response.json()

    fetched = await stack.http.get(f"/api/project/projects/{project_id}", headers=user.headers)
    assert fetched.json()["project"]["timeoutSeconds"] == 30
    assert fetched.json()["project"]["maxConcurrentBuilds"] == 1
    await stack.wait_final(user, created["build"]["id"])


async def test_patch_by_another_user_is_forbidden_and_absent_project_is_not_found(
    stack: Stack,
) -> None:
    owner, stranger = await stack.register(), await stack.register()
    repo = new_repo(stack.git, "controls")
    created = await stack.create_project(owner, repo.url, "true")
    project_id = created["project"]["id"]

    forbidden = await patch_project(stack, stranger, project_id, {"timeoutSeconds": 5})
    absent = await patch_project(stack, owner, 999999999, {"timeoutSeconds": 5})
    malformed = await patch_project(stack, owner, "abc", {"timeoutSeconds": 5})

    assert forbidden.status_code == 403, forbidden.text
    assert absent.status_code == 404, absent.text
    assert malformed.status_code == 400, malformed.text
    fetched = await stack.http.get(f"/api/project/projects/{project_id}", headers=owner.headers)
    assert fetched.json()["project"]["timeoutSeconds"] == 3600
    await stack.wait_final(owner, created["build"]["id"])


# --- concurrency and queueing ---------------------------------------------------------------


async def test_builds_of_a_project_run_one_at_a_time_in_the_order_queued(stack: Stack) -> None:
    user = await stack.register()
    async with connected(stack, user) as recorder:
        repo = new_repo(stack.git, "controls")
        created = await stack.create_project(user, repo.url, "sleep 1; echo done")
        project_id = created["project"]["id"]
        first_id = created["build"]["id"]
        await wait_for_build(stack.http, user.headers, first_id, ("running",), timeout=30)

        queued = [await requeue(stack, user, first_id) for _ in range(3)]
        ids = [first_id] + [build["id"] for build in queued]
        assert ids == sorted(ids)

        # Each rebuild answered with its place in the queue, and a fresh look agrees.
        assert [build["queuePosition"] for build in queued] == [1, 2, 3]
        snapshot = await project_builds(stack, user, project_id)
        assert [(b["id"], b["status"]) for b in snapshot] == [(first_id, "running")] + [
            (build_id, "queued") for build_id in ids[1:]
        ]
        assert [b["queuePosition"] for b in snapshot] == [None, 1, 2, 3]
        assert [(await stack.build(user, i))["queuePosition"] for i in ids[2:]] == [2, 3]

        # Sample while the queue drains: never two running, positions always 1..n.
        async def drained() -> bool | None:
            builds = await project_builds(stack, user, project_id)
            assert sum(b["status"] == "running" for b in builds) <= 1, builds
            waiting = [b for b in builds if b["status"] == "queued"]
            assert [b["queuePosition"] for b in waiting] == list(range(1, len(waiting) + 1))
            assert all(b["queuePosition"] is None for b in builds if b["status"] != "queued")
            return True if all(b["status"] in FINAL for b in builds) else None

        await eventually(drained, timeout=60, interval=0.1)
        for build_id in ids:
            final = await stack.build(user, build_id)
            assert final["status"] == "passed", final
            assert "done" in await stack.logs(user, build_id)

        await eventually(
            lambda: holds(len(status_events(recorder, set(ids))) >= 3 * len(ids)), timeout=10
        )
        events = status_events(recorder, set(ids))
        assert max_running_at_once(events) == 1, events
        # They started in the order queued, each after the one before it ended.
        assert [build_id for build_id, status in events if status == "running"] == ids
        for earlier, later in zip(ids, ids[1:], strict=False):
            assert events.index((earlier, "passed")) < events.index((later, "running")), events


async def test_two_slots_let_two_builds_run_at_once_and_a_third_waits(stack: Stack) -> None:
    user = await stack.register()
    async with connected(stack, user) as recorder:
        repo = new_repo(stack.git, "controls")
        created = await stack.create_project(
            user, repo.url, "echo started; sleep 1.5", maxConcurrentBuilds=2
        )
        first_id = created["build"]["id"]
        second = await requeue(stack, user, first_id)
        third = await requeue(stack, user, first_id)
        ids = [first_id, second["id"], third["id"]]

        for build_id in ids:
            assert (await stack.wait_final(user, build_id))["status"] == "passed"

        await eventually(
            lambda: holds(len(status_events(recorder, set(ids))) >= 3 * len(ids)), timeout=10
        )
        events = status_events(recorder, set(ids))
        assert max_running_at_once(events) == 2, events
        # The first two overlap; the third starts only once one of them has ended.
        assert events.index((ids[1], "running")) < events.index((ids[0], "passed")), events
        first_end = min(events.index((ids[0], "passed")), events.index((ids[1], "passed")))
        assert events.index((ids[2], "running")) > first_end, events


async def test_raising_the_limit_starts_a_waiting_build_promptly(stack: Stack) -> None:
    """A waiting build looks again by itself only every 30 s: the PATCH must wake it."""
    user = await stack.register()
    repo = new_repo(stack.git, "controls")
    created = await stack.create_project(user, repo.url, "echo started; sleep 5")
    project_id = created["project"]["id"]
    first_id = created["build"]["id"]
    await wait_logs(stack, user, first_id, "started")
    waiting = await requeue(stack, user, first_id)
    assert waiting["queuePosition"] == 1
    assert (await stack.build(user, waiting["id"]))["status"] == "queued"

    response = await patch_project(
        stack, user, project_id, {"maxConcurrentBuilds": 2, "buildCommand": "echo quick"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["project"]["maxConcurrentBuilds"] == 2
    # It starts while the first build still runs.
    started = await wait_for_build(
        stack.http, user.headers, waiting["id"], ("running", "passed", "failed"), timeout=3
    )
    assert started["queuePosition"] is None
    assert (await stack.build(user, first_id))["status"] == "running"
    final = await stack.wait_final(user, waiting["id"])
    assert final["status"] == "passed"
    assert "quick" in await stack.logs(user, waiting["id"])
    assert (await stack.wait_final(user, first_id))["status"] == "passed"
