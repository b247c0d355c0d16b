"""A worker killed with SIGKILL mid-build: seconds until the build's output flows again when the
same host comes back, and when the host is gone for good (another host takes the build)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from benchmarks.deployment import Deployment
from benchmarks.sockets import EventKey, Listener, PublishTimes
from benchmarks.table import Figure
from kiln.events import LOG_EVENT
from kiln.models import Build, WorkerHost
from testbed.stack import User, eventually

# Prints a line every 0.1 s for up to two minutes: output that stops tells the worker is gone.
TICKER = "i=0; while [ $i -lt 1200 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"


async def worker_kill_figures(deployment: Deployment, timeout: float = 120) -> list[Figure]:
    (user,) = deployment.users(1)
    listener = Listener()
    await listener.connect(deployment.base_url, user.token)
    repo, _sha = deployment.repo("kill")
    try:
        with PublishTimes(deployment.settings.database_url, deployment.sessions) as published:
            build_id, host = await _ticking_build(deployment, user, repo.url, listener)
            back = await _output_resumes(
                deployment, published, listener, build_id, host, timeout, restart=True
            )
            await _cancel(deployment, user, build_id)

            deployment.worker("host-b")
            await _registered(deployment, "host-b")
            build_id, host = await _ticking_build(deployment, user, repo.url, listener)
            moved = await _output_resumes(
                deployment, published, listener, build_id, host, timeout, restart=False
            )
            await _cancel(deployment, user, build_id)
    finally:
        await listener.client.disconnect()
    return [
        Figure(
            "worker kill -9 mid-build, same host back: s until output flows again", moved_s(back)
        ),
        Figure("worker host gone for good: s until its build runs on another host", moved_s(moved)),
    ]


def moved_s(seconds: float | None) -> str:
    return f"{seconds:.1f} s" if seconds is not None else "not within the timeout"


async def _ticking_build(
    deployment: Deployment, user: User, repo_url: str, listener: Listener
) -> tuple[int, str]:
    """A new build printing ticks, once its output reaches the socket: its id and host."""
    created = await deployment.project(user, repo_url, TICKER)
    build_id: int = created["build"]["id"]

    async def output() -> bool | None:
        return (
            True if any(k[0] == LOG_EVENT and k[1] == build_id for k in listener.arrivals) else None
        )

    await eventually(output, timeout=120, interval=0.05)
    with deployment.sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None and build.host is not None
        return build_id, build.host


async def _output_resumes(
    deployment: Deployment,
    published: PublishTimes,
    listener: Listener,
    build_id: int,
    host: str,
    timeout: float,
    *,
    restart: bool,
) -> float | None:
    """Kill `host`'s worker (and start it again if `restart`): seconds until output published
    after the kill reaches the socket."""
    deployment.workers[host].kill()
    killed_at = time.time()
    if restart:
        deployment.worker(host)

    def after_kill(key: EventKey) -> bool:
        return (
            key[0] == LOG_EVENT and key[1] == build_id and published.sent_at.get(key, 0) > killed_at
        )

    return await _first_arrival(listener, after_kill, killed_at, timeout)


async def _first_arrival(
    listener: Listener, keep: Callable[[EventKey], bool], since: float, timeout: float
) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arrived = [at for key, at in list(listener.arrivals.items()) if keep(key)]
        if arrived:
            return min(arrived) - since
        await asyncio.sleep(0.05)
    return None


async def _registered(deployment: Deployment, worker_id: str) -> None:
    async def seen() -> bool | None:
        with deployment.sessions() as session:
            return True if session.get(WorkerHost, worker_id) is not None else None

    await eventually(seen, timeout=60)


async def _cancel(deployment: Deployment, user: User, build_id: int) -> None:
    answer = await deployment.http.post(f"/api/build/{build_id}/cancel", headers=user.headers)
    if answer.status_code == 202:
        await eventually(lambda: _final(deployment, build_id), timeout=120, interval=0.2)


async def _final(deployment: Deployment, build_id: int) -> bool | None:
    return True if deployment.final_count([build_id]) else None
