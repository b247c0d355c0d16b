"""Kiln's state on disk is its own user's: the SQLite file (password hashes, webhook secrets,
every build's output) with its -wal and -shm is 0600, the `.kiln` directory `kiln dev` keeps
its state in is 0700, its JWT secret 0600, and the workspaces root 0700 — whatever the umask.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cli import dev
from kiln.db import make_engine
from kiln.migrate import upgrade
from kiln.settings import STATE_DIR
from kiln.workspaces import prepare_root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The laxest umask a service could run with: what Kiln creates must not depend on it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_the_sqlite_database_and_its_wal_files_are_readable_by_their_owner_only(
    tmp_path: Path, open_umask: None
) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'kiln.db'}"

    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:  # WAL mode: the write makes -wal and -shm
            connection.execute(text("CREATE TABLE probe (x INTEGER)"))
            connection.execute(text("INSERT INTO probe VALUES (1)"))
        state = tmp_path / "state"
        files = {p.name: mode(p) for p in state.iterdir()}
    finally:
        engine.dispose()

    assert mode(state) == 0o700
    assert files == {"kiln.db": 0o600, "kiln.db-wal": 0o600, "kiln.db-shm": 0o600}, files


def test_a_world_readable_database_from_before_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "kiln.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    path.chmod(0o644)

    make_engine(url).dispose()

    assert mode(path) == 0o600


def test_kiln_dev_keeps_its_state_directory_and_secret_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    monkeypatch.chdir(tmp_path)

    secret = dev._dev_secret()

    assert len(secret) >= 16
    assert mode(tmp_path / STATE_DIR) == 0o700
    assert mode(tmp_path / STATE_DIR / "jwt_secret") == 0o600
    assert dev._dev_secret() == secret  # kept across restarts


def test_a_state_directory_made_world_readable_before_is_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / STATE_DIR).mkdir(mode=0o755)
    (tmp_path / STATE_DIR).chmod(0o755)

    dev._dev_secret()

    assert mode(tmp_path / STATE_DIR) == 0o700


def test_the_workspaces_root_is_private_to_the_worker(tmp_path: Path, open_umask: None) -> None:
    root = tmp_path / "deep" / "workspaces"
    prepare_root(root)
    assert mode(root) == 0o700
    root.chmod(0o755)

    prepare_root(root)

    assert mode(root) == 0o700
