"""The raw references: what a build is made of, done by hand with git and the docker CLI."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def fetch_commit(url: str, sha: str, into: Path) -> None:
    """A depth-1 fetch of one commit and its checkout, as a build's workspace gets it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    into.mkdir(parents=True)
    for args in (
        ["init", "-q"],
        ["fetch", "-q", "--depth", "1", url, sha],
        ["checkout", "-q", "FETCH_HEAD"],
    ):
        subprocess.run(["git", *args], cwd=into, env=env, check=True, capture_output=True)


def docker_run(image: str, command: str = "true") -> None:
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "sh", "-c", command],
        check=True,
        capture_output=True,
    )


def fetch_and_run(url: str, sha: str, image: str, into: Path) -> float:
    """Seconds for a depth-1 fetch and a `docker run --rm` of `true`."""
    start = time.perf_counter()
    fetch_commit(url, sha, into)
    docker_run(image)
    return time.perf_counter() - start


def parallel_runs(image: str, count: int, parallelism: int) -> float:
    """Runs per second of `count` `docker run --rm` of `true`, `parallelism` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(parallelism) as pool:
        list(pool.map(lambda _: docker_run(image), range(count)))
    return count / (time.perf_counter() - start)
