"""A Kiln of separate processes for fault tests: one API process and worker processes, on one
PostgreSQL database and one restartable Temporal server."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from temporalio.client import Client

from kiln.settings import Settings
from kiln.workspaces import workspace_path
from testbed.processes import KilnProcess, worker_process
from testbed.stack import Stack, User, eventually
from tests.support.faults import RestartableTemporal, container_starts, running_container
from tests.support.helpers import new_repo, wait_for_build, wait_left_nothing


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
        return workspace_path(self.root / worker_id, build_id)

    async def project(self, user: User, command: str, **fields: Any) -> dict[str, Any]:
        repo = new_repo(self.stack.git, "faults")
        return await self.stack.create_project(user, repo.url, command, **fields)

    async def wait_final(self, user: User, build_id: int) -> dict[str, Any]:
        """Poll through outages: a refused connection or a 5xx during a restart is not an answer."""
        return await wait_for_build(
            self.stack.http,
            user.headers,
            build_id,
            timeout=120,
            interval=0.2,
            through_outages=True,
        )

    async def running_build(self, user: User, command: str) -> int:
        """A new project's first build, once its container runs: the build's id."""
        created = await self.project(user, command)
        build_id: int = created["build"]["id"]

        async def up() -> bool | None:
            return (
                True if running_container(self.docker, self.settings.task_queue, build_id) else None
            )

        await eventually(up, timeout=60)
        return build_id

    async def wait_left_nothing(self, build_id: int, hosts: list[str]) -> None:
        """No container of the build, and no workspace of it on any of `hosts`."""
        workspaces = [self.workspace(host, build_id) for host in hosts]
        await wait_left_nothing(
            self.docker, self.settings.task_queue, build_id, workspaces, timeout=60
        )

    def starts(self, build_id: int) -> int:
        return container_starts(self.docker, self.settings.task_queue, build_id, self.since)
