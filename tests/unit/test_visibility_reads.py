"""The labels a workflow start carries, and the count a waiting build shows, are read without
SQLite's write lock (kiln.visibility): a start never waits behind a worker appending output."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from kiln.models import Build, BuildStatus
from kiln.visibility import BuildVisibility
from tests.unit.conftest import Rows


def _while_the_write_lock_is_held(rows: Rows, read: Callable[[], Any]) -> Any:
    with rows.sessions.begin() as writer, ThreadPoolExecutor(1) as pool:
        writer.execute(select(Build.id))  # BEGIN IMMEDIATE: the write lock is held
        # A read that queued behind the lock would wait out the 30 s busy timeout.
        return pool.submit(read).result(timeout=5)


@pytest.mark.parametrize("read", ["labels", "builds_ahead"])
def test_a_start_reads_what_it_needs_while_another_connection_holds_the_write_lock(
    rows: Rows, read: str
) -> None:
    project = rows.project()
    rows.build(project, BuildStatus.RUNNING)
    waiting = rows.build(project)
    visibility = BuildVisibility(rows.sessions)

    answer = _while_the_write_lock_is_held(rows, lambda: getattr(visibility, read)(waiting.id))

    if read == "labels":
        assert answer is not None and answer.project == "app"
    else:
        assert answer == 1  # the running build is ahead
