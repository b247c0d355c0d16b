"""Read-only answers come from one snapshot of the database, on SQLite and on PostgreSQL: a
project's builds and their places in the queue are two queries, and a build that starts
between them must not leave the queue numbered from 2 (kiln.db.reads_only)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from kiln import models
from kiln.db import SessionFactory, make_engine, make_session_factory, reads_only
from testbed.databases import create_postgres_database, drop_postgres_database
from tests.unit.conftest import Rows

NUMBERS = count(1, 1000)  # each test's users get emails of their own


@pytest.fixture(scope="module")
def sessions(db_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def project(sessions: SessionFactory) -> models.Project:
    rows = Rows(sessions, count(next(NUMBERS)))
    project = rows.project()
    for _ in range(3):
        rows.build(project)
    return project


def _queued(session: Session, project_id: int) -> int:
    query = select(func.count()).where(
        models.Build.project_id == project_id, models.Build.status == models.BuildStatus.QUEUED
    )
    return int(session.scalar(query) or 0)


def test_a_read_only_transaction_sees_no_commit_made_after_its_first_read(
    sessions: SessionFactory, project: models.Project
) -> None:
    with reads_only(), sessions() as reader:
        assert _queued(reader, project.id) == 3
        with sessions.begin() as writer:  # the first build starts meanwhile
            first = writer.scalars(
                select(models.Build).where(models.Build.project_id == project.id)
            ).first()
            assert first is not None
            first.status = models.BuildStatus.RUNNING
        assert _queued(reader, project.id) == 3  # still the snapshot of the first read
    with sessions() as later:
        assert _queued(later, project.id) == 2


def test_on_postgresql_a_writer_after_a_reader_on_its_connection_is_read_committed() -> None:
    # Writers must keep READ COMMITTED: under REPEATABLE READ, two that update one row at once
    # fail instead of waiting for each other.
    name, url = create_postgres_database()
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        for _ in range(2):  # the pool hands the same connection back
            with reads_only(), sessions() as reader:
                assert reader.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            with sessions() as writer:
                assert writer.scalar(text("SHOW transaction_isolation")) == "read committed"
    finally:
        engine.dispose()
        drop_postgres_database(name)
