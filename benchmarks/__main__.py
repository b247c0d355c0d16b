"""`python -m benchmarks`: Kiln's figures beside raw references measured in the same run.

    .venv/bin/python -m benchmarks [--db sqlite,postgres] [--quick] [--clients 1000]

Starts everything itself (a Temporal dev server, a git server, `kiln api` and `kiln worker`
processes on a fresh database of each kind) and prints one markdown table. It reports what it
measured; it judges nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from benchmarks.burst import PeakMemory, burst_figures
from benchmarks.deployment import Deployment, database, running_deployment
from benchmarks.fanout import fanout_figures
from benchmarks.http_load import read_figures
from benchmarks.latency import end_to_end
from benchmarks.listing import listing_figures
from benchmarks.memory import describe, process_tree_rss
from benchmarks.table import Figure, markdown
from benchmarks.worker_kill import worker_kill_figures
from cli.temporal_server import start_dev_server
from testbed.git_server import GitServer
from testbed.images import ensure_busybox_image
from testbed.stack import free_port

DATABASES = ("sqlite", "postgres")


@dataclass(frozen=True)
class Scale:
    builds: int  # one-at-a-time rebuilds
    wrk_seconds: float
    connections: tuple[int, ...]
    projects: int  # listing: projects × builds each
    history: int
    listings: int
    clients: int  # fan-out sockets
    burst: int
    burst_projects: int


FULL = Scale(20, 10, (1, 32, 128), 50, 1000, 100, 1000, 200, 50)
# The burst spreads over at least KILN_MAX_BUILDS_PER_HOST projects: a project runs one build
# at a time by default, so fewer projects would cap Kiln below the raw parallelism.
QUICK = Scale(3, 2, (1, 32, 128), 5, 100, 10, 20, 16, 8)


async def measure(deployment: Deployment, scale: Scale, work: Path) -> list[Figure]:
    await asyncio.sleep(2)  # settled: start-up work done
    api_pid, worker_pid = _pid(deployment.api.process), _pid(deployment.workers["host-a"].process)
    # The API's tree holds its uvicorn workers; the worker's children are git and the like.
    idle_api, idle_worker = process_tree_rss(api_pid), process_tree_rss(worker_pid)[:1]
    figures, build_id = await end_to_end(deployment, scale.builds, work)
    figures += await attempt("`GET /api/build/:id` (wrk)", _read_load(deployment, build_id, scale))
    await settled(deployment, build_id)
    figures += await attempt(
        "`GET /api/project/projects`",
        listing_figures(deployment, scale.projects, scale.history, scale.listings),
    )
    figures += await attempt("Socket.io fan-out", fanout_figures(deployment, scale.clients))
    memory = PeakMemory()
    figures += await attempt(
        "burst", burst_figures(deployment, scale.burst, scale.burst_projects, memory)
    )
    figures += [
        Figure("`kiln api` resident memory, idle", describe(idle_api)),
        Figure("`kiln api` resident memory, peak under the burst", _peak(memory, "api")),
        Figure("`kiln worker` resident memory, idle", describe(idle_worker)),
        Figure("`kiln worker` resident memory, peak under the burst", _peak(memory, "worker")),
    ]
    figures += await attempt("worker kill -9", worker_kill_figures(deployment))
    return figures


async def settled(deployment: Deployment, build_id: int, timeout: float = 120) -> None:
    """Until the API answers a read briskly again: requests wrk gave up on may still be queued
    in it, and would slow what is measured next."""
    (user,) = deployment.users(1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        start = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            await deployment.http.get(f"/api/build/{build_id}", headers=user.headers)
            if time.perf_counter() - start < 0.1:
                return
        await asyncio.sleep(0.5)


def _peak(memory: PeakMemory, name: str) -> str:
    return describe(memory.peaks[name]) if name in memory.peaks else "not measured"


async def attempt(label: str, scenario: Awaitable[list[Figure]]) -> list[Figure]:
    """The scenario's figures; if it broke, one row saying how, and the run goes on."""
    try:
        return await scenario
    except Exception as exc:  # a benchmark reports a failure as a measurement
        print(f"benchmarks: {label} failed: {exc!r}", file=sys.stderr)
        text = " ".join(str(exc).split())[:120]
        return [Figure(f"{label}: FAILED", f"{type(exc).__name__}: {text}")]


async def _read_load(deployment: Deployment, build_id: int, scale: Scale) -> list[Figure]:
    """wrk on the end-to-end run's build, as its owner."""
    with deployment.sessions() as session:
        from kiln.models import Build, Project

        build = session.get(Build, build_id)
        assert build is not None
        owner = session.get(Project, build.project_id)
        assert owner is not None
        owner_id = owner.owner_id
    from api.security import create_token

    token = create_token(owner_id, deployment.settings.jwt_secret, 3600)
    processes = deployment.settings.api_workers  # the ceiling gets as many
    return await asyncio.to_thread(
        read_figures,
        f"{deployment.base_url}/api/build/{build_id}",
        {"Authorization": f"Bearer {token}"},
        processes,
        scale.wrk_seconds,
        list(scale.connections),
    )


def _pid(process: object) -> int:
    pid: int = getattr(process, "pid")  # noqa: B009 - started processes have one
    return pid


async def run(databases: list[str], scale: Scale) -> dict[str, list[Figure]]:
    results: dict[str, list[Figure]] = {}
    image = ensure_busybox_image()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp, GitServer() as git:
        root = Path(tmp)
        port = free_port()
        temporal = start_dev_server(root / "temporal.db", port=port, ui_port=None)
        try:
            for kind in databases:
                work = root / kind
                work.mkdir()
                with database(kind, work) as url:
                    address = f"127.0.0.1:{port}"
                    async with running_deployment(url, address, work, git, image) as deployment:
                        results[kind] = await measure(deployment, scale, work)
        finally:
            temporal.terminate()
            temporal.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--db", default=None, help="sqlite, postgres or both (sqlite,postgres)")
    parser.add_argument("--quick", action="store_true", help="small counts, one database (CI)")
    parser.add_argument("--clients", type=int, default=None, help="fan-out sockets")
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    if args.clients:
        scale = replace(scale, clients=args.clients)
    default = "sqlite" if args.quick else ",".join(DATABASES)
    databases = [name.strip() for name in (args.db or default).split(",") if name.strip()]
    unknown = set(databases) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database {', '.join(sorted(unknown))}: sqlite or postgres")
    results = asyncio.run(run(databases, scale))
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores ({_cpu_model()}), "
        f"load average {load} at the end; {'--quick' if args.quick else 'full'} run\n"
    )
    print(markdown(results))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
