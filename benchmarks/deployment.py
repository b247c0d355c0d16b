"""A Kiln of real processes for the benchmarks: `kiln api` and `kiln worker` subprocesses on a
fresh SQLite file or PostgreSQL database, one Temporal dev server and one git server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.security import create_token, hash_password
from kiln import models
from kiln.db import SessionFactory, make_engine, make_session_factory
from kiln.migrate import upgrade
from kiln.settings import Settings
from testbed.databases import create_postgres_database, drop_postgres_database
from testbed.git_server import GitRepo, GitServer
from testbed.processes import KilnProcess, api_process, worker_process
from testbed.stack import User, free_port, stack_settings

PASSWORD = "correct horse battery"
# The burst's parallelism; every benchmark deployment runs with it.
BUILDS_PER_HOST = 8


@contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    """A migrated, empty database of `kind` (sqlite or postgres): its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{root / 'kiln.db'}"
        upgrade(url)
        yield url
        return
    name, url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(name)


@dataclass
class Deployment:
    """The processes of one Kiln, and the handles a benchmark drives it with."""

    settings: Settings
    root: Path
    git: GitServer
    image: str
    api: KilnProcess
    http: httpx.AsyncClient
    sessions: SessionFactory
    workers: dict[str, KilnProcess] = field(default_factory=dict)
    _users: int = 0
    _password_hash: str = ""

    @property
    def base_url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    def worker(self, worker_id: str) -> KilnProcess:
        """Start the worker of host `worker_id` (again, after a kill)."""
        if worker_id not in self.workers:
            self.workers[worker_id] = worker_process(self.settings, worker_id, self.root)
        return self.workers[worker_id].start()

    def users(self, count: int) -> list[User]:
        """`count` new users, written straight into the database (argon2 once, not per user),
        each with a login token."""
        self._password_hash = self._password_hash or hash_password(PASSWORD)
        with self.sessions.begin() as session:
            rows = []
            for _ in range(count):
                self._users += 1
                email = f"bench{self._users}-{uuid.uuid4().hex[:6]}@example.com"
                rows.append(
                    models.User(email=email, name="Bench", password_hash=self._password_hash)
                )
            session.add_all(rows)
            session.flush()
            made = [(row.id, row.email) for row in rows]
        secret, ttl = self.settings.jwt_secret, self.settings.jwt_ttl_seconds
        return [User(id, email, create_token(id, secret, ttl)) for id, email in made]

    def repo(self, name: str) -> tuple[GitRepo, str]:
        repo = self.git.create_repo(f"{name}-{uuid.uuid4().hex[:6]}")
        return repo, repo.commit({"a.txt": "a\n"}, "bench")

    async def project(self, user: User, repo_url: str, command: str) -> dict[str, Any]:
        """A new project through the API (its first build is queued): the answer's body."""
        body = {"name": "app", "repoUrl": repo_url, "image": self.image, "buildCommand": command}
        response = await self.http.post("/api/project/projects", json=body, headers=user.headers)
        if response.status_code != 201:
            raise RuntimeError(
                f"creating a project answered {response.status_code}: {response.text}"
            )
        data: dict[str, Any] = response.json()
        return data

    async def build(self, user: User, build_id: int) -> dict[str, Any]:
        response = await self.http.get(f"/api/build/{build_id}", headers=user.headers)
        response.raise_for_status()
        build: dict[str, Any] = response.json()["build"]
        return build

    def final_count(self, build_ids: list[int]) -> int:
        """How many of `build_ids` have a final status (read from the database)."""
        with self.sessions() as session:
            finished = session.query(models.Build).filter(
                models.Build.id.in_(build_ids), models.Build.finished_at.is_not(None)
            )
            return finished.count()


def deployment_settings(db_url: str, temporal: str, root: Path) -> Settings:
    return stack_settings(db_url, temporal, root / "unused").model_copy(
        update={"max_builds_per_host": BUILDS_PER_HOST, "max_queued_builds_per_user": 1000}
    )


@asynccontextmanager
async def running_deployment(
    db_url: str, temporal: str, root: Path, git: GitServer, image: str
) -> AsyncIterator[Deployment]:
    """The API process and the worker of host `host-a`; every process is stopped on the way
    out, whatever the benchmarks did to them."""
    settings = deployment_settings(db_url, temporal, root)
    port = free_port()
    api = api_process(settings, port, root)
    engine = make_engine(db_url)
    deployment = Deployment(
        settings, root, git, image, api, httpx.AsyncClient(), make_session_factory(engine)
    )
    try:
        api.start()
        deployment.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deployment.worker("host-a")
        await _wait_ready(deployment.http)
        yield deployment
    finally:
        for process in [*deployment.workers.values(), api]:
            process.stop()
        await deployment.http.aclose()
        engine.dispose()


async def _wait_ready(http: httpx.AsyncClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")
