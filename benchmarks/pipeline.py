"""How fast a build goes through Kiln, on the same real parts the tests use.

    .venv/bin/python -m benchmarks.pipeline [--builds 20] [--db sqlite|postgres]

Prints medians and 90th percentiles of: the rebuild request's answer time, queued → running and
queued → final as seen by a Socket.io client, and, for comparison, the raw git checkout and
Docker run that a build is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import docker

from cli.temporal_server import start_dev_server
from kiln.git import checkout
from kiln.migrate import upgrade
from testbed.databases import create_postgres_database, drop_postgres_database
from testbed.git_server import GitServer
from testbed.images import ensure_busybox_image
from testbed.stack import SocketRecorder, eventually, free_port, running_stack, stack_settings


def summary(name: str, samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{name:<40} median {statistics.median(ordered):8.1f} ms   p90 {p90:8.1f} ms"


def timed(action: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def measure(builds: int, db_url: str, temporal: str, work: Path) -> None:
    image = ensure_busybox_image()
    with GitServer() as git:
        repo = git.create_repo(f"bench-{uuid.uuid4().hex[:6]}")
        sha = repo.commit({"a.txt": "a\n"}, "bench")
        client = docker.from_env()
        counter = iter(range(10**6))
        raw_git = timed(lambda: checkout(repo.url, sha, work / f"raw-{next(counter)}", timeout=30),
                        builds)  # fmt: skip
        raw_docker = timed(
            lambda: client.containers.run(image, ["true"], network_mode="none", remove=True),
            builds,
        )
        settings = stack_settings(db_url, temporal, work / "ws")
        async with running_stack(settings, git, image) as stack:
            user = await stack.register()
            recorder = SocketRecorder()
            await recorder.connect(stack.base_url, user.token)
            created = await stack.create_project(user, repo.url, "true")
            await recorder.wait_statuses(created["build"]["id"], 3)
            answer, to_running, to_final = [], [], []
            for _ in range(builds):
                start = time.perf_counter()
                response = await stack.http.post(
                    f"/api/build/rebuild/{created['build']['id']}", headers=user.headers
                )
                answered = time.perf_counter()
                build_id = response.json()["build"]["id"]
                await eventually(partial(_has, recorder, build_id, "running"), interval=0.001)
                running = time.perf_counter()
                await recorder.wait_statuses(build_id, 3)
                final = time.perf_counter()
                answer.append((answered - start) * 1000)
                to_running.append((running - start) * 1000)
                to_final.append((final - start) * 1000)
            await recorder.client.disconnect()
    print(summary("raw: git checkout of a pinned commit", raw_git))
    print(summary("raw: docker create+start+wait+remove", raw_docker))
    print(summary("rebuild request answered (queued)", answer))
    print(summary("request → running event", to_running))
    print(summary("request → passed event (command: true)", to_final))


async def _has(recorder: SocketRecorder, build_id: int, status: str) -> bool | None:
    return True if status in recorder.statuses(build_id) else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=20)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        server = start_dev_server(work / "temporal.db", port=port, ui_port=None)
        pg_name = None
        if args.db == "sqlite":
            db_url = f"sqlite:///{work / 'kiln.db'}"
        else:
            pg_name, db_url = create_postgres_database()
        try:
            upgrade(db_url)
            print(f"{args.builds} builds, {args.db}, Temporal dev server (SQLite file)")
            asyncio.run(measure(args.builds, db_url, f"127.0.0.1:{port}", work))
        finally:
            server.terminate()
            server.wait()
            if pg_name:
                drop_postgres_database(pg_name)


if __name__ == "__main__":
    main()
