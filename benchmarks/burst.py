"""A burst of rebuilds over many projects, `KILN_MAX_BUILDS_PER_HOST` at a time on one host,
beside raw `docker run --rm` of the same image at the same parallelism. Samples the API's and
the worker's resident memory meanwhile."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from benchmarks.deployment import BUILDS_PER_HOST, Deployment
from benchmarks.memory import process_tree_rss
from benchmarks.raw import parallel_runs
from benchmarks.table import Figure
from testbed.stack import User

PROJECTS_PER_USER = 10
POSTS_AT_ONCE = 16


@dataclass
class PeakMemory:
    """The largest RSS seen of each process tree."""

    peaks: dict[str, list[int]] = field(default_factory=dict)

    def sample(self, name: str, pid: int | None, *, tree: bool = True) -> None:
        if pid is None:
            return
        sizes = process_tree_rss(pid) if tree else process_tree_rss(pid)[:1]
        if sum(sizes) > sum(self.peaks.get(name, [])):
            self.peaks[name] = sizes


async def burst_figures(
    deployment: Deployment, builds: int, projects: int, memory: PeakMemory
) -> list[Figure]:
    owners = deployment.users(max(1, -(-projects // PROJECTS_PER_USER)))
    repo, _sha = deployment.repo("burst")
    firsts: list[tuple[User, int]] = []
    for i in range(projects):
        owner = owners[i // PROJECTS_PER_USER]
        created = await deployment.project(owner, repo.url, "true")
        firsts.append((owner, created["build"]["id"]))
    await _wait_final(deployment, [b for _u, b in firsts], memory)

    gate = asyncio.Semaphore(POSTS_AT_ONCE)

    async def rebuild(owner: User, build_id: int) -> int:
        async with gate:
            answer = await deployment.http.post(
                f"/api/build/rebuild/{build_id}", headers=owner.headers
            )
        answer.raise_for_status()
        new_id: int = answer.json()["build"]["id"]
        return new_id

    start = time.perf_counter()
    jobs = [firsts[n % projects] for n in range(builds)]
    ids = await asyncio.gather(*(rebuild(owner, build_id) for owner, build_id in jobs))
    await _wait_final(deployment, list(ids), memory)
    kiln_rate = builds / (time.perf_counter() - start)
    raw_rate = await asyncio.to_thread(parallel_runs, deployment.image, builds, BUILDS_PER_HOST)
    return [
        Figure(
            f"{builds} builds over {projects} projects, {BUILDS_PER_HOST} per host: builds/s",
            f"{kiln_rate:.2f}",
            f"{raw_rate:.2f} (docker run --rm, {BUILDS_PER_HOST} at a time)",
            f"{kiln_rate / raw_rate:.2f}",
        )
    ]


async def _wait_final(
    deployment: Deployment, build_ids: list[int], memory: PeakMemory, timeout: float = 600
) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(deployment.final_count, build_ids) < len(build_ids):
        memory.sample("api", _pid(deployment.api.process))
        memory.sample("worker", _pid(deployment.workers["host-a"].process), tree=False)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the burst's builds did not finish within {timeout:g}s")
        await asyncio.sleep(0.1)


def _pid(process: object) -> int | None:
    return getattr(process, "pid", None)
