"""A worker's own `/metrics` (a real `kiln worker` process, `KILN_WORKER_METRICS_PORT` on
`KILN_HOST`), scraped and parsed as Prometheus does while real builds run: its capacity, the
builds holding its slots, the queue time and duration of the builds it moved (each observed
once, by the process that committed the change), and its failed heartbeats."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from kiln.db import make_engine, make_session_factory
from testbed.git_server import GitServer
from testbed.processes import KilnProcess, worker_process
from testbed.stack import Stack, User, eventually, free_port, running_api, stack_settings
from tests.support.helpers import new_repo

WORKER = "metrics-host"
CAPACITY = 2
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Deployment:
    """The API in this process, and one worker process serving its metrics."""

    stack: Stack
    worker: KilnProcess
    metrics_url: str

    async def worker_metrics(self) -> Samples:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.metrics_url)
        assert response.status_code == 200, response.text
        return parse(response.text)

    async def api_metrics(self) -> Samples:
        response = await self.stack.http.get("/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)


def parse(exposition: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def worker_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics-worker")


@pytest.fixture(scope="module")
async def deployment(
    db_url: str, temporal_address: str, git_server: GitServer, busybox: str, worker_root: Path
) -> AsyncIterator[Deployment]:
    settings = stack_settings(db_url, temporal_address, worker_root / "api-unused").model_copy(
        update={"max_builds_per_host": CAPACITY}
    )
    port = free_port()
    worker = worker_process(
        settings, WORKER, worker_root, KILN_WORKER_METRICS_PORT=str(port)
    ).start()
    engine = make_engine(db_url)
    try:
        async with running_api(settings) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                stack = Stack(settings, make_session_factory(engine), base_url, http, git_server,
                              busybox)  # fmt: skip
                running = Deployment(stack, worker, f"http://127.0.0.1:{port}/metrics")
                await eventually(lambda: _serving(running), timeout=60, interval=0.2)
                yield running
    finally:
        worker.stop()
        engine.dispose()


async def _serving(deployment: Deployment) -> bool | None:
    assert deployment.worker.process is not None
    assert deployment.worker.process.poll() is None, (deployment.worker.log_path.read_text())[
        -3000:
    ]
    try:
        await deployment.worker_metrics()
    except httpx.TransportError:
        return None
    return True


async def _running_on_worker(deployment: Deployment, count: int) -> bool | None:
    samples = await deployment.worker_metrics()
    return True if value(samples, "kiln_worker_builds_running", worker=WORKER) == count else None


async def _build(deployment: Deployment, user: User, command: str) -> int:
    repo = new_repo(deployment.stack.git, "worker-metrics")
    created = await deployment.stack.create_project(user, repo.url, command)
    build_id: int = created["build"]["id"]
    return build_id


async def test_a_worker_reports_its_capacity_and_the_builds_holding_its_slots(
    deployment: Deployment,
) -> None:
    idle = await deployment.worker_metrics()
    assert value(idle, "kiln_worker_capacity", worker=WORKER) == CAPACITY
    assert value(idle, "kiln_worker_builds_running", worker=WORKER) == 0
    assert ("kiln_worker_heartbeat_failures_total", frozenset({("worker", WORKER)})) in idle

    user = await deployment.stack.register()
    first = await _build(deployment, user, "sleep 4")
    second = await _build(deployment, user, "sleep 4")
    await eventually(lambda: _running_on_worker(deployment, 2), timeout=60, interval=0.1)
    for build_id in (first, second):
        assert (await deployment.stack.wait_final(user, build_id))["status"] == "passed"
    await eventually(lambda: _running_on_worker(deployment, 0), timeout=30, interval=0.1)


async def test_queue_time_and_duration_are_observed_once_each_by_the_worker_that_moved_the_build(
    deployment: Deployment,
) -> None:
    before, api_before = await deployment.worker_metrics(), await deployment.api_metrics()
    user = await deployment.stack.register()
    passing = await _build(deployment, user, "sleep 2")
    failing = await _build(deployment, user, "exit 2")
    assert (await deployment.stack.wait_final(user, passing))["status"] == "passed"
    assert (await deployment.stack.wait_final(user, failing))["status"] == "failed"
    after, api_after = await deployment.worker_metrics(), await deployment.api_metrics()

    def moved(samples: tuple[Samples, Samples], name: str, **labels: str) -> float:
        return value(samples[1], name, **labels) - value(samples[0], name, **labels)

    worker = (before, after)
    assert moved(worker, "kiln_build_queue_seconds_count") == 2
    assert moved(worker, "kiln_build_duration_seconds_count", status="passed") == 1
    assert moved(worker, "kiln_build_duration_seconds_count", status="failed") == 1
    # From the record's creation to its end: at least the command's own 2 seconds.
    assert moved(worker, "kiln_build_duration_seconds_sum", status="passed") >= 2
    queued = moved(worker, "kiln_build_queue_seconds_sum")
    assert 0 <= queued < moved(worker, "kiln_build_duration_seconds_sum", status="passed") + 60
    # The API committed none of these changes: it observed none (no double count), and its
    # counts, read from the database, moved by one each.
    api = (api_before, api_after)
    assert moved(api, "kiln_build_queue_seconds_count") == 0
    assert moved(api, "kiln_build_duration_seconds_count", status="passed") == 0
    assert moved(api, "kiln_builds_total", status="passed") == 1
    assert moved(api, "kiln_builds_total", status="failed") == 1


@pytest.fixture
def worker_hosts_away(db_url: str) -> Iterator[None]:
    """The table of host heartbeats, renamed away for the test: every refresh fails."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE worker_hosts RENAME TO worker_hosts_away"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE worker_hosts_away RENAME TO worker_hosts"))
        engine.dispose()


async def test_failed_heartbeats_of_the_host_are_counted(
    deployment: Deployment, worker_hosts_away: None
) -> None:
    before = await deployment.worker_metrics()
    name = "kiln_worker_heartbeat_failures_total"

    async def failed_twice() -> bool | None:
        now = await deployment.worker_metrics()
        return (
            True
            if value(now, name, worker=WORKER) >= value(before, name, worker=WORKER) + 2
            else None
        )

    await eventually(failed_twice, timeout=30, interval=0.5)
