"""Services killed or restarted under running builds: the API killed (SIGKILL) during a burst of
rebuilds, and Temporal, PostgreSQL and dockerd restarted mid-build. Each test checks the figures
that matter: builds finished / builds started, container starts per build (duplicates), and
containers and workspaces left behind.

These run on PostgreSQL, the database of a multi-process deployment. They restart PostgreSQL and
dockerd on the machine they run on (a test machine, as root)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from kiln.models import Build, BuildStatus
from testbed.stack import eventually
from tests.support.cluster import Cluster
from tests.support.faults import restart_dockerd, restart_postgres
from tests.support.helpers import connected, holds, rebuild


async def test_api_killed_during_a_burst_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    created = await cluster.project(user, "true", maxConcurrentBuilds=20)
    first = created["build"]["id"]
    answered: list[int] = []

    async def attempt() -> None:
        try:
            response = await rebuild(cluster.stack, user, first)
        except httpx.TransportError:
            return  # no answer: the client knows nothing was promised
        if response.status_code == 201:
            answered.append(response.json()["build"]["id"])

    burst = [asyncio.create_task(attempt()) for _ in range(40)]
    await eventually(lambda: holds(len(answered) >= 5), timeout=60, interval=0.001)
    cluster.api.kill()
    await asyncio.gather(*burst)
    cluster.api.start()

    assert answered
    for build_id in answered:
        assert (await cluster.wait_final(user, build_id))["status"] == "passed"
    # Rows inserted but never answered are settled by the reconciler, never left queued.
    every = await _builds_of_project(cluster, created["project"]["id"])
    await eventually(lambda: _all_final(cluster, every), timeout=60, interval=0.2)
    for build_id in every:
        assert cluster.starts(build_id) <= 1
    assert all(cluster.starts(build_id) == 1 for build_id in answered)


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
async def test_temporal_restarted_mid_build_still_finishes_it(cluster: Cluster, kill: bool) -> None:
    # Killed -9 too: the dev server's history is synced at checkpoints, not at each commit
    # (cli.temporal_server.HISTORY_PRAGMAS), so what it committed must be in the file already.
    cluster.worker("host-1")
    user = await cluster.stack.register()
    build_id = await cluster.running_build(user, "echo before; sleep 6; echo survived")

    cluster.server.stop(kill=kill)
    cluster.server.start()

    build = await cluster.wait_final(user, build_id)
    assert (build["status"], build["exitCode"]) == ("passed", 0)
    assert "survived" in await cluster.stack.logs(user, build_id)
    assert cluster.starts(build_id) == 1
    await cluster.wait_left_nothing(build_id, ["host-1"])


async def test_postgres_restarted_mid_build_records_and_emits_the_end(cluster: Cluster) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    async with connected(cluster.stack, user) as recorder:
        build_id = await cluster.running_build(user, "echo one; sleep 6; echo two")

        restart_postgres()

        build = await cluster.wait_final(user, build_id)
        assert (build["status"], build["exitCode"]) == ("passed", 0)
        # The status change was emitted after the restart: the listener reconnected.
        await eventually(lambda: holds("passed" in recorder.statuses(build_id)), timeout=30)
        logs = await cluster.stack.logs(user, build_id)
        assert "one" in logs and "two" in logs
        assert cluster.starts(build_id) == 1
    await cluster.wait_left_nothing(build_id, ["host-1"])


async def test_docker_restarted_mid_build_ends_the_build_in_a_definite_state(
    cluster: Cluster,
) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    build_id = await cluster.running_build(user, "echo started; sleep 30")

    await asyncio.to_thread(restart_dockerd)

    build = await cluster.wait_final(user, build_id)
    # The engine stopped the container: the build is failed with what happened, never stuck.
    assert build["status"] == "failed"
    assert cluster.starts(build_id) <= 2
    await cluster.wait_left_nothing(build_id, ["host-1"])
    # And the host still builds.
    after = await cluster.project(user, "echo fine")
    assert (await cluster.wait_final(user, after["build"]["id"]))["status"] == "passed"


async def _builds_of_project(cluster: Cluster, project_id: int) -> list[int]:
    with cluster.stack.sessions() as session:
        return list(session.scalars(select(Build.id).where(Build.project_id == project_id)))


async def _all_final(cluster: Cluster, build_ids: list[int]) -> bool | None:
    with cluster.stack.sessions() as session:
        statuses = session.scalars(select(Build.status).where(Build.id.in_(build_ids))).all()
    return True if all(BuildStatus(s).is_final for s in statuses) else None
