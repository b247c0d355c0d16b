"""Fault injection on real processes with real signals: worker hosts killed mid-build, the API
killed during a burst, Temporal, PostgreSQL and Docker restarted under running builds. Each test
checks the figures that matter: builds finished / builds started, container starts per build
(duplicates), and containers and workspaces left behind.

These run on PostgreSQL, the database of a multi-process deployment."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client

from kiln.builds import BuildService
from kiln.db import make_engine, make_session_factory
from kiln.migrate import upgrade
from kiln.models import Build, BuildStatus, WorkerHost, utcnow
from kiln.settings import Settings
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.faults import (
    RestartableTemporal,
    activity_queues,
    build_containers,
    container_lifetimes,
    container_starts,
    restart_dockerd,
    restart_postgres,
    running_container,
)
from tests.support.git_server import GitServer
from tests.support.processes import KilnProcess, api_process, worker_process
from tests.support.stack import SocketRecorder, Stack, User, eventually, free_port, stack_settings
from workflows.client import TemporalWorkflows
from workflows.ids import workflow_id
from workflows.reconcile import reconcile_once

FINAL = ("passed", "failed", "canceled")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    name, url = create_postgres_database()
    upgrade(url)
    yield url
    drop_postgres_database(name)


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableTemporal]:
    server = RestartableTemporal(tmp_path_factory.mktemp("temporal") / "history.db", free_port())
    server.start()
    yield server
    server.stop()


@dataclass
class Cluster:
    """An API process and worker processes on one database and one Temporal."""

    stack: Stack
    settings: Settings
    root: Path
    api: KilnProcess
    temporal: Client
    server: RestartableTemporal
    docker: docker.DockerClient
    workers: dict[str, KilnProcess] = field(default_factory=dict)
    since: int = field(default_factory=lambda: int(time.time()) - 1)

    def worker(self, worker_id: str, **env: str) -> KilnProcess:
        if worker_id not in self.workers:
            self.workers[worker_id] = worker_process(self.settings, worker_id, self.root, **env)
        return self.workers[worker_id].start()

    @property
    def prefix(self) -> str:
        return self.settings.workflow_id_prefix

    def workspace(self, worker_id: str, build_id: int) -> Path:
        return self.root / worker_id / f"build-{build_id}"

    async def project(self, user: User, command: str, **fields: Any) -> dict[str, Any]:
        repo = self.stack.git.create_repo(f"faults-{uuid.uuid4().hex[:8]}")
        repo.commit({"a.txt": "a\n"}, "fault test")
        return await self.stack.create_project(user, repo.url, command, **fields)

    async def wait_running_container(self, build_id: int) -> None:
        async def up() -> bool | None:
            return (
                True if running_container(self.docker, self.settings.task_queue, build_id) else None
            )

        await eventually(up, timeout=60)

    async def wait_left_nothing(self, build_id: int, hosts: list[str]) -> None:
        async def clean() -> bool | None:
            containers = build_containers(self.docker, self.settings.task_queue, build_id)
            workspaces = [h for h in hosts if self.workspace(h, build_id).exists()]
            return True if not containers and not workspaces else None

        await eventually(clean, timeout=60)

    def starts(self, build_id: int) -> int:
        return container_starts(self.docker, self.settings.task_queue, build_id, self.since)


@pytest.fixture
async def cluster(
    pg_url: str,
    temporal: RestartableTemporal,
    git_server: GitServer,
    busybox: str,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    settings = stack_settings(pg_url, temporal.address, tmp_path / "unused").model_copy(
        update={"host_pickup_seconds": 3, "reconcile_seconds": 1, "reconcile_min_age_seconds": 2}
    )
    port = free_port()
    api = api_process(settings, port, tmp_path).start()
    engine = make_engine(pg_url)
    client = await Client.connect(temporal.address)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        stack = Stack(
            settings, make_session_factory(engine), str(http.base_url), http, git_server, busybox
        )
        running = Cluster(stack, settings, tmp_path, api, client, temporal, docker_client)
        try:
            yield running
        finally:
            for process in [*running.workers.values(), running.api]:
                process.stop()
            engine.dispose()


async def final_build(cluster: Cluster, user: User, build_id: int) -> dict[str, Any]:
    """Poll through outages: a refused connection or a 5xx during a restart is not an answer."""

    async def final() -> dict[str, Any] | None:
        try:
            response = await cluster.stack.http.get(f"/api/build/{build_id}", headers=user.headers)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        build: dict[str, Any] = response.json()["build"]
        return build if build["status"] in FINAL else None

    return await eventually(final, timeout=120, interval=0.2)


async def test_builds_spread_over_hosts_and_each_stays_on_one(cluster: Cluster) -> None:
    hosts = ["host-1", "host-2", "host-3"]
    for host in hosts:
        cluster.worker(host)
    user = await cluster.stack.register()
    created = await cluster.project(user, "sleep 0.3", maxConcurrentBuilds=9)
    first = created["build"]["id"]
    responses = await asyncio.gather(
        *(
            cluster.stack.http.post(f"/api/build/rebuild/{first}", headers=user.headers)
            for _ in range(8)
        )
    )
    build_ids = [first] + [r.json()["build"]["id"] for r in responses]

    used = set()
    for build_id in build_ids:
        assert (await final_build(cluster, user, build_id))["status"] == "passed"
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
    responses = await asyncio.gather(
        *(
            cluster.stack.http.post(f"/api/build/rebuild/{first}", headers=user.headers)
            for _ in range(2)
        )
    )
    for build_id in [first] + [r.json()["build"]["id"] for r in responses]:
        assert (await final_build(cluster, user, build_id))["status"] == "passed"

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
    sleeper = (await cluster.project(user, "sleep 120"))["build"]["id"]
    await cluster.wait_running_container(sleeper)
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
    build = await final_build(cluster, user, build_id)

    assert build["status"] == "failed" and build["exitCode"] is None
    logs = await cluster.stack.logs(user, build_id)
    assert logs.strip().splitlines()[-1] == "[kiln] no worker host picked the build up"
    queues = [q for kind, q in await activity_queues(cluster.temporal, cluster.prefix, build_id)]
    assert sorted(queues) == [f"{prefix}ghost-{index}" for index in range(4)]
    assert (
        await cluster.stack.http.post(f"/api/build/{sleeper}/cancel", headers=user.headers)
    ).status_code == 202


async def test_worker_killed_mid_build_comes_back_and_reattaches(cluster: Cluster) -> None:
    worker = cluster.worker("host-k")
    user = await cluster.stack.register()
    created = await cluster.project(user, "echo begin; sleep 15; echo end; exit 3")
    build_id = created["build"]["id"]
    await cluster.wait_running_container(build_id)

    worker.kill()
    cluster.worker("host-k")  # the same host id: it takes its own queue back

    build = await final_build(cluster, user, build_id)
    assert (build["status"], build["exitCode"]) == ("failed", 3)  # as an undisturbed run
    assert cluster.starts(build_id) == 1  # re-attached: the command ran once
    logs = await cluster.stack.logs(user, build_id)
    assert logs.count("begin") == 1 and logs.count("end") == 1
    await cluster.wait_left_nothing(build_id, ["host-k"])


async def test_a_dead_host_loses_its_build_to_another_host(cluster: Cluster) -> None:
    cluster.worker("host-a")
    cluster.worker("host-b")
    user = await cluster.stack.register()
    created = await cluster.project(user, "sleep 12; echo finished")
    build_id = created["build"]["id"]
    await cluster.wait_running_container(build_id)
    queues = await activity_queues(cluster.temporal, cluster.prefix, build_id)
    first_queue = next(q for kind, q in queues if kind == "execute_build")
    doomed = first_queue.removeprefix(f"{cluster.settings.task_queue}-host-")
    survivor = "host-b" if doomed == "host-a" else "host-a"

    cluster.workers[doomed].kill()  # for good

    build = await final_build(cluster, user, build_id)
    assert (build["status"], build["exitCode"]) == ("passed", 0)
    hosts = [q for kind, q in await activity_queues(cluster.temporal, cluster.prefix, build_id)]
    assert hosts[-1].endswith(f"-host-{survivor}")  # moved after the pickup timeout
    assert cluster.starts(build_id) == 1
    # The dead host's disk keeps its checkout until it returns; then its sweep removes it.
    cluster.worker(doomed)
    await cluster.wait_left_nothing(build_id, ["host-a", "host-b"])


async def test_api_killed_during_a_burst_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    created = await cluster.project(user, "true", maxConcurrentBuilds=20)
    first = created["build"]["id"]
    answered: list[int] = []

    async def rebuild() -> None:
        try:
            response = await cluster.stack.http.post(
                f"/api/build/rebuild/{first}", headers=user.headers
            )
        except httpx.TransportError:
            return  # no answer: the client knows nothing was promised
        if response.status_code == 201:
            answered.append(response.json()["build"]["id"])

    burst = [asyncio.create_task(rebuild()) for _ in range(40)]
    await eventually(lambda: _at_least(len(answered), 5), timeout=60, interval=0.001)
    cluster.api.kill()
    await asyncio.gather(*burst)
    cluster.api.start()

    assert answered
    for build_id in answered:
        assert (await final_build(cluster, user, build_id))["status"] == "passed"
    # Rows inserted but never answered are settled by the reconciler, never left queued.
    every = await _builds_of_project(cluster, created["project"]["id"])
    await eventually(lambda: _all_final(cluster, every), timeout=60, interval=0.2)
    for build_id in every:
        assert cluster.starts(build_id) <= 1
    assert all(cluster.starts(build_id) == 1 for build_id in answered)


async def test_temporal_restarted_mid_build_still_finishes_it(cluster: Cluster) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    created = await cluster.project(user, "echo before; sleep 6; echo survived")
    build_id = created["build"]["id"]
    await cluster.wait_running_container(build_id)

    cluster.server.stop()
    cluster.server.start()

    build = await final_build(cluster, user, build_id)
    assert (build["status"], build["exitCode"]) == ("passed", 0)
    assert "survived" in await cluster.stack.logs(user, build_id)
    assert cluster.starts(build_id) == 1
    await cluster.wait_left_nothing(build_id, ["host-1"])


async def test_postgres_restarted_mid_build_records_and_emits_the_end(cluster: Cluster) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    recorder = SocketRecorder()
    await recorder.connect(cluster.stack.base_url, user.token)
    try:
        created = await cluster.project(user, "echo one; sleep 6; echo two")
        build_id = created["build"]["id"]
        await cluster.wait_running_container(build_id)

        restart_postgres()

        build = await final_build(cluster, user, build_id)
        assert (build["status"], build["exitCode"]) == ("passed", 0)
        # The status change was emitted after the restart: the listener reconnected.
        await eventually(
            lambda: _at_least(int("passed" in recorder.statuses(build_id)), 1), timeout=30
        )
        logs = await cluster.stack.logs(user, build_id)
        assert "one" in logs and "two" in logs
        assert cluster.starts(build_id) == 1
    finally:
        await recorder.client.disconnect()
    await cluster.wait_left_nothing(build_id, ["host-1"])


async def test_docker_restarted_mid_build_ends_the_build_in_a_definite_state(
    cluster: Cluster,
) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    created = await cluster.project(user, "echo started; sleep 30")
    build_id = created["build"]["id"]
    await cluster.wait_running_container(build_id)

    await asyncio.to_thread(restart_dockerd)

    build = await final_build(cluster, user, build_id)
    # The engine stopped the container: the build is failed with what happened, never stuck.
    assert build["status"] == "failed"
    assert cluster.starts(build_id) <= 2
    await cluster.wait_left_nothing(build_id, ["host-1"])
    # And the host still builds.
    after = await cluster.project(user, "echo fine")
    assert (await final_build(cluster, user, after["build"]["id"]))["status"] == "passed"


async def test_reconciler_settles_builds_whose_workflow_ended_without_a_word(
    cluster: Cluster,
) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    created = await cluster.project(user, "sleep 60")
    build_id = created["build"]["id"]
    await cluster.wait_running_container(build_id)

    # An operator terminates the workflow in the Temporal UI: no activity records anything.
    handle = cluster.temporal.get_workflow_handle(workflow_id(build_id, cluster.prefix))
    await handle.terminate("operator")

    build = await final_build(cluster, user, build_id)
    assert build["status"] == "failed"
    assert "terminated" in (await cluster.stack.logs(user, build_id)).strip().splitlines()[-1]
    # Its container and workspace are swept once the build is final.
    await cluster.wait_left_nothing(build_id, ["host-1"])


async def test_reconciler_fails_a_build_whose_workflow_never_started(cluster: Cluster) -> None:
    user = await cluster.stack.register()
    created = await cluster.project(user, "true")
    project_id = created["project"]["id"]
    with cluster.stack.sessions.begin() as session:
        orphan = Build(project_id=project_id, branch="main", commit_hash="a" * 40)
        session.add(orphan)
    workflows = TemporalWorkflows(cluster.temporal, cluster.settings)
    settled = await reconcile_once(BuildService(cluster.stack.sessions), workflows, timedelta(0))
    assert orphan.id in settled
    build = await cluster.stack.build(user, orphan.id)
    assert build["status"] == "failed" and build["finishedAt"] is not None


async def test_a_returning_worker_sweeps_leftovers_of_finished_builds(cluster: Cluster) -> None:
    user = await cluster.stack.register()
    created = await cluster.project(user, "true")
    build_id = created["build"]["id"]
    with cluster.stack.sessions.begin() as session:
        session.get_one(Build, build_id).status = BuildStatus.FAILED  # finished long ago
    cluster.workspace("host-s", build_id).mkdir(parents=True)
    cluster.docker.containers.create(
        cluster.stack.image,
        ["true"],
        labels={
            "kiln.managed": "true",
            "kiln.worker": "host-s",
            "kiln.build": str(build_id),
            "kiln.deployment": cluster.settings.task_queue,
        },
    )

    cluster.worker("host-s")

    await cluster.wait_left_nothing(build_id, ["host-s"])


async def _at_least(value: int, minimum: int) -> bool | None:
    return True if value >= minimum else None


async def _builds_of_project(cluster: Cluster, project_id: int) -> list[int]:
    with cluster.stack.sessions() as session:
        return list(session.scalars(select(Build.id).where(Build.project_id == project_id)))


async def _all_final(cluster: Cluster, build_ids: list[int]) -> bool | None:
    with cluster.stack.sessions() as session:
        statuses = session.scalars(select(Build.status).where(Build.id.in_(build_ids))).all()
    return True if all(BuildStatus(s).is_final for s in statuses) else None
