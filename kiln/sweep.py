"""The worker's sweep: remove containers and workspaces this host left behind for builds that
are finished (or deleted). Runs at start, so a worker that crashed tidies up when it returns,
and then periodically."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from kiln.containers import Containers
from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus
from kiln.workspaces import build_id_of, remove_workspace

log = logging.getLogger(__name__)


def _still_active(sessions: SessionFactory, build_ids: set[int]) -> set[int]:
    if not build_ids:
        return set()
    with sessions() as session:
        query = select(Build.id).where(
            Build.id.in_(build_ids), Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING])
        )
        return set(session.scalars(query))


def sweep_host(sessions: SessionFactory, containers: Containers, workspace_dir: Path) -> list[int]:
    """Remove leftovers of finished builds; returns the build ids tidied up."""
    found = containers.of_this_host()
    workspaces = {}
    if workspace_dir.is_dir():
        for entry in workspace_dir.iterdir():
            build_id = build_id_of(entry.name)
            if build_id is not None and entry.is_dir():
                workspaces[build_id] = entry
    active = _still_active(sessions, set(found) | set(workspaces))
    tidied = sorted((set(found) | set(workspaces)) - active)
    for build_id in tidied:  # each container goes before its workspace
        log.info("sweep: removing leftovers of finished build %s", build_id)
        containers.remove(build_id)
        if build_id in workspaces:
            # Its container is gone: remove what the build left, setuid files and all.
            remove_workspace(workspaces[build_id])
    return tidied
