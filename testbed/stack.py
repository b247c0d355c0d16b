"""A running Kiln for tests: the API (uvicorn) and a worker in this process, on real parts."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import socketio
import uvicorn
from temporalio.client import Client

from api.main import create_app
from kiln.db import SessionFactory, make_engine, make_session_factory
from kiln.settings import Settings
from testbed.git_server import GitServer
from worker import HOST_ACTIVITY_SLOTS, LOCAL_ACTIVITY_SLOTS, build_worker_process

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 60, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something other than None; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(interval)


def stack_settings(
    db_url: str, temporal_address: str, workspace: Path, *, worker_id: str = "host-a"
) -> Settings:
    return Settings(
        database_url=db_url,
        temporal_address=temporal_address,
        task_queue=(queue := f"kiln-test-{uuid.uuid4().hex[:8]}"),
        # All test stacks share one Temporal namespace: their build ids must not collide.
        workflow_id_prefix=f"{queue}-",
        jwt_secret=f"test-secret-{uuid.uuid4().hex}",
        worker_id=worker_id,
        workspace_dir=workspace,
        build_network="none",
        allow_local_repos=True,
        image_pull="never",
        # Every test client is 127.0.0.1: the per-address login throttle would soon refuse the
        # whole module's logins. Tests of the throttle set their own limits.
        login_max_failures=100_000,
        # Tests create projects of one user side by side; the git cap's own tests lower it.
        git_per_user=100,
    )


@dataclass
class User:
    id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    settings: Settings
    sessions: SessionFactory
    base_url: str
    http: httpx.AsyncClient
    git: GitServer
    image: str
    _users: int = field(default=0)

    async def register(self) -> User:
        self._users += 1
        email = f"user{self._users}-{uuid.uuid4().hex[:6]}@example.com"
        body = {"email": email, "password": "correct horse battery", "name": "Jane Doe"}
        response = await self.http.post("/api/auth/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return User(id=data["user"]["id"], email=email, token=data["token"])

    async def create_project(
        self, user: User, repo_url: str, command: str, **fields: Any
    ) -> dict[str, Any]:
        body = {"name": "app", "repoUrl": repo_url, "image": self.image, "buildCommand": command}
        response = await self.http.post(
            "/api/project/projects", json=body | fields, headers=user.headers
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def build(self, user: User, build_id: int) -> dict[str, Any]:
        response = await self.http.get(f"/api/build/{build_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        build: dict[str, Any] = response.json()["build"]
        return build

    async def wait_final(self, user: User, build_id: int, timeout: float = 90) -> dict[str, Any]:
        async def final() -> dict[str, Any] | None:
            build = await self.build(user, build_id)
            return build if build["status"] in ("passed", "failed") else None

        return await eventually(final, timeout=timeout)

    async def logs(self, user: User, build_id: int) -> str:
        response = await self.http.get(f"/api/build/{build_id}/logs", headers=user.headers)
        assert response.status_code == 200, response.text
        logs: str = response.json()["logs"]
        return logs


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server, task), timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool | None:
    if task.done():
        task.result()  # raises the start-up error
        raise AssertionError("the API stopped during start-up")
    return True if server.started else None


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    client = await Client.connect(settings.temporal_address)
    with ThreadPoolExecutor(max_workers=LOCAL_ACTIVITY_SLOTS + HOST_ACTIVITY_SLOTS) as executor:
        process = build_worker_process(client, settings, executor)
        task = asyncio.create_task(process.run())
        try:
            yield
        finally:
            await asyncio.gather(*(worker.shutdown() for worker in process.workers))
            await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def running_stack(settings: Settings, git: GitServer, image: str) -> AsyncIterator[Stack]:
    engine = make_engine(settings.database_url)
    async with running_worker(settings), running_api(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            yield Stack(settings, make_session_factory(engine), base_url, http, git, image)
    engine.dispose()


class SocketRecorder:
    """A real Socket.io client that keeps every event it receives, in order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.client.on("*", self._record)

    async def _record(self, event: str, data: Any) -> None:
        self.events.append((event, data))

    async def connect(self, base_url: str, token: str) -> None:
        await self.client.connect(
            base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10
        )

    def statuses(self, build_id: int) -> list[str]:
        return [
            data["status"]
            for event, data in self.events
            if event == "buildStatusUpdate" and data["id"] == build_id
        ]

    async def wait_statuses(self, build_id: int, count: int, timeout: float = 90) -> list[str]:
        async def enough() -> list[str] | None:
            statuses = self.statuses(build_id)
            return statuses if len(statuses) >= count else None

        return await eventually(enough, timeout=timeout)
