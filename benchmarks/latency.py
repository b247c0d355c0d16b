"""One build at a time: rebuild POST → `running` → `passed` at a Socket.io client, beside a raw
depth-1 fetch and `docker run --rm` of the same commit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from benchmarks.deployment import Deployment
from benchmarks.raw import fetch_and_run
from benchmarks.sockets import Listener
from benchmarks.table import Figure, median, ms, p50_p99, ratio
from testbed.stack import User


async def end_to_end(deployment: Deployment, count: int, work: Path) -> tuple[list[Figure], int]:
    """The figures, and the id of a finished build (the read benchmark's subject)."""
    repo, sha = deployment.repo("latency")
    image = deployment.image
    raw = [
        await asyncio.to_thread(fetch_and_run, repo.url, sha, image, work / f"raw-{i}")
        for i in range(count)
    ]
    (user,) = deployment.users(1)
    listener = Listener()
    await listener.connect(deployment.base_url, user.token)
    try:
        created = await deployment.project(user, repo.url, "true")
        first = created["build"]["id"]
        await listener.status(first, "passed")
        answered, running, passed = [], [], []
        for _ in range(count):
            times = await _rebuild(deployment, user, listener, first)
            answered.append(times[0])
            running.append(times[1])
            passed.append(times[2])
    finally:
        await listener.client.disconnect()
    figures = [
        Figure(
            "POST rebuild → `passed` event (`true`), median",
            ms(median(passed)),
            ms(median(raw)) + " (depth-1 fetch + docker run --rm)",
            ratio(median(passed), median(raw)),
        ),
        Figure("rebuild POST answered, p50 / p99", p50_p99(answered)),
        Figure("POST → `running` event, p50 / p99", p50_p99(running)),
    ]
    return figures, first


async def _rebuild(
    deployment: Deployment, user: User, listener: Listener, build_id: int
) -> tuple[float, float, float]:
    start = time.perf_counter()
    response = await deployment.http.post(f"/api/build/rebuild/{build_id}", headers=user.headers)
    answered = time.perf_counter()
    response.raise_for_status()
    new_id = response.json()["build"]["id"]
    running = await listener.status(new_id, "running")
    passed = await listener.status(new_id, "passed")
    return answered - start, running - start, passed - start
