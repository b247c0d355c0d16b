"""Worker hosts under faults: builds spread over hosts and each stays on one; a host never runs
more builds at once than its cap; a build that no host picks up fails after a bounded number of
moves; a worker killed with SIGKILL mid-build comes back and re-attaches to its build; a host that
dies for good loses its build to another host. Each test checks the figures that matter: builds
finished / builds started, container starts per build (duplicates), and containers and
workspaces left behind.

These run on PostgreSQL, the database of a multi-process deployment."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from kiln.models import WorkerHost, utcnow
from tests.support.cluster import Cluster
from tests.support.faults import activity_queues, container_lifetimes
from tests.support.helpers import last_line, rebuild


async def test_builds_spread_over_hosts_and_each_stays_on_one(cluster: Cluster) -> None:
    hosts = ["host-1", "host-2", "host-3"]
    for host in hosts:
        cluster.worker(host)
    user = await cluster.stack.register()
    created = await cluster.project(user, "sleep 0.3", maxConcurrentBuilds=9)
    first = created["build"]["id"]
    responses = await asyncio.gather(*(rebuild(cluster.stack, user, first) for _ in range(8)))
    build_ids = [first] + [r.json()["build"]["id"] for r in responses]

    used = set()
    for build_id in build_ids:
        assert (await cluster.wait_final(user, build_id))["status"] == "passed"
        queues = {
            queue
            for kind, queue in await activity_queues(cluster.temporal, cluster.prefix, build_id)
        }
        assert len(queues) == 1, f"build {build_id} ran on {queues}"
        used |= queues
        assert cluster.starts(build_id) == 1
        await cluster.wait_left_nothing(build_id, hosts)
    assert len(used) > 1, f"all {len(build_ids)} builds ran on {used}"


async def test_a_host_never_runs_more_builds_at_once_than_its_cap(cluster: Cluster) -> None:
    cluster.worker("host-1", KILN_MAX_BUILDS_PER_HOST="1")
    user = await cluster.stack.register()
    created = await cluster.project(user, "sleep 1", maxConcurrentBuilds=3)
    first = created["build"]["id"]
    responses = await asyncio.gather(*(rebuild(cluster.stack, user, first) for _ in range(2)))
    for build_id in [first] + [r.json()["build"]["id"] for r in responses]:
        assert (await cluster.wait_final(user, build_id))["status"] == "passed"

    lifetimes = container_lifetimes(cluster.docker, cluster.settings.task_queue, cluster.since)
    spans = sorted((min(times), max(times)) for times in lifetimes.values())
    assert len(spans) == 3
    # Each container started only after the one before it had died.
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


async def test_a_build_no_host_picks_up_fails_after_a_bounded_number_of_moves(
    cluster: Cluster,
) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    # A long build keeps host-1 busy, so idle-looking hosts are preferred over it.
    sleeper = await cluster.running_build(user, "sleep 120")
    prefix = f"{cluster.settings.task_queue}-host-"
    with cluster.stack.sessions.begin() as session:
        # Hosts that look alive but never poll their queue.
        for index in range(4):
            session.add(
                WorkerHost(
                    worker_id=f"ghost-{index}",
                    task_queue=f"{prefix}ghost-{index}",
                    capacity=100,
                    seen_at=utcnow() + timedelta(hours=1),
                )
            )

    created = await cluster.project(user, "true")
    build_id = created["build"]["id"]
    build = await cluster.wait_final(user, build_id)

    assert build["status"] == "failed" and build["exitCode"] is None
    logs = await cluster.stack.logs(user, build_id)
    assert last_line(logs) == "[kiln] no worker host picked the build up"
    queues = [q for kind, q in await activity_queues(cluster.temporal, cluster.prefix, build_id)]
    assert sorted(queues) == [f"{prefix}ghost-{index}" for index in range(4)]
    assert (
        await cluster.stack.http.post(f"/api/build/{sleeper}/cancel", headers=user.headers)
    ).status_code == 202


async def test_worker_killed_mid_build_comes_back_and_reattaches(cluster: Cluster) -> None:
    worker = cluster.worker("host-k")
    user = await cluster.stack.register()
    build_id = await cluster.running_build(user, "echo begin; sleep 15; echo end; exit 3")

    worker.kill()
    cluster.worker("host-k")  # the same host id: it takes its own queue back

    build = await cluster.wait_final(user, build_id)
    assert (build["status"], build["exitCode"]) == ("failed", 3)  # as an undisturbed run
    assert cluster.starts(build_id) == 1  # re-attached: the command ran once
    logs = await cluster.stack.logs(user, build_id)
    assert logs.count("begin") == 1 and logs.count("end") == 1
    await cluster.wait_left_nothing(build_id, ["host-k"])


async def test_a_dead_host_loses_its_build_to_another_host(cluster: Cluster) -> None:
    cluster.worker("host-a")
    cluster.worker("host-b")
    user = await cluster.stack.register()
    build_id = await cluster.running_build(user, "sleep 12; echo finished")
    queues = await activity_queues(cluster.temporal, cluster.prefix, build_id)
    first_queue = next(q for kind, q in queues if kind == "execute_build")
    doomed = first_queue.removeprefix(f"{cluster.settings.task_queue}-host-")
    survivor = "host-b" if doomed == "host-a" else "host-a"

    cluster.workers[doomed].kill()  # for good

    build = await cluster.wait_final(user, build_id)
    assert (build["status"], build["exitCode"]) == ("passed", 0)
    hosts = [q for kind, q in await activity_queues(cluster.temporal, cluster.prefix, build_id)]
    assert hosts[-1].endswith(f"-host-{survivor}")  # moved after the pickup timeout
    assert cluster.starts(build_id) == 1
    # The dead host's disk keeps its checkout until it returns; then its sweep removes it.
    cluster.worker(doomed)
    await cluster.wait_left_nothing(build_id, ["host-a", "host-b"])
