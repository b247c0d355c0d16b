"""Fixtures of the unit tier: a freshly migrated SQLite file per test, and a factory for the
user, project and build rows the core services work on. Nothing here starts Docker, Temporal
or a network service."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kiln.db import SessionFactory, make_engine, make_session_factory
from kiln.migrate import upgrade
from kiln.models import Build, BuildStatus, Project, SocketEvent, User

SHA = "a" * 40


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database file migrated to head; every test gets its own copy."""
    path = tmp_path_factory.mktemp("template") / "kiln.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sessions(migrated_template: Path, tmp_path: Path) -> Iterator[SessionFactory]:
    path = tmp_path / "kiln.db"
    shutil.copyfile(migrated_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield make_session_factory(engine)
    engine.dispose()


@dataclass
class Rows:
    """Inserts rows straight through the models (no service, so no outbox events)."""

    sessions: SessionFactory
    _numbers: Iterator[int]

    def user(self) -> User:
        number = next(self._numbers)
        with self.sessions.begin() as session:
            user = User(email=f"user{number}@example.com", name=f"User {number}", password_hash="x")
            session.add(user)
        return user

    def project(self, owner: User | None = None, *, max_concurrent_builds: int = 1) -> Project:
        owner = owner or self.user()
        with self.sessions.begin() as session:
            project = Project(
                owner_id=owner.id,
                name="app",
                repo_url="https://example.com/owner/app.git",
                repo_key="https://example.com/owner/app",
                branch="main",
                image="busybox",
                build_command="true",
                max_concurrent_builds=max_concurrent_builds,
            )
            session.add(project)
        return project

    def build(self, project: Project, status: BuildStatus = BuildStatus.QUEUED) -> Build:
        with self.sessions.begin() as session:
            build = Build(project_id=project.id, branch="main", commit_hash=SHA, status=status)
            session.add(build)
        return build

    def status(self, build_id: int) -> BuildStatus:
        with self.sessions() as session:
            build = session.get(Build, build_id)
            assert build is not None
            return build.status

    def events(self) -> list[dict[str, Any]]:
        """The outbox, oldest first, as the Socket.io messages it holds."""
        with self.sessions() as session:
            payloads = session.scalars(select(SocketEvent.payload).order_by(SocketEvent.id))
            return [json.loads(payload) for payload in payloads]


@pytest.fixture
def rows(sessions: SessionFactory) -> Rows:
    return Rows(sessions, count(1))
