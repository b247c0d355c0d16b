"""Worker hosts: each registers itself and keeps its entry fresh; a build goes to the live host
with the most free capacity, so builds spread over all hosts."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

from sqlalchemy import delete, func, select

from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus, WorkerHost, utcnow
from kiln.settings import Settings

# A host that has not refreshed its entry for this long is not offered new builds: three
# refreshes missed. Short, so that new builds stop going to a dead host within seconds.
LIVE_WINDOW = timedelta(seconds=10)
REFRESH_SECONDS = 3.0


class HostRegistry:
    """The `worker_hosts` table, as this worker host sees it."""

    def __init__(self, sessions: SessionFactory, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    def register(self) -> None:
        """Create or refresh this host's entry (called every REFRESH_SECONDS)."""
        settings = self._settings
        with self._sessions.begin() as session:
            host = session.get(WorkerHost, settings.worker_id)
            if host is None:
                host = WorkerHost(worker_id=settings.worker_id)
                session.add(host)
            host.task_queue = settings.host_queue
            host.capacity = settings.max_builds_per_host
            host.seen_at = utcnow()

    def unregister(self) -> None:
        with self._sessions.begin() as session:
            session.execute(
                delete(WorkerHost).where(WorkerHost.worker_id == self._settings.worker_id)
            )

    def pick(self, build_id: int, exclude: list[str]) -> str:
        """The task queue of the live host with the most free capacity (ties at random), which
        is recorded on the build. Hosts that failed to pick the build up are skipped; with none
        left, this worker's own host (it is alive: it is running this workflow task)."""
        with self._sessions.begin() as session:
            live = session.scalars(
                select(WorkerHost).where(
                    WorkerHost.seen_at > utcnow() - LIVE_WINDOW,
                    # Hosts of this Kiln only (tests run several on one database).
                    WorkerHost.task_queue.startswith(f"{self._settings.task_queue}-host-"),
                    WorkerHost.task_queue.not_in(exclude),
                )
            ).all()
            running = Counter(
                dict(
                    session.execute(
                        select(Build.host, func.count())
                        .where(Build.status == BuildStatus.RUNNING, Build.id != build_id)
                        .group_by(Build.host)
                    ).all()
                )
            )
            if live:
                lightest = min(running[h.worker_id] / h.capacity for h in live)
                chosen = random.choice(
                    [h for h in live if running[h.worker_id] / h.capacity == lightest]
                )
                worker_id, queue = chosen.worker_id, chosen.task_queue
            else:
                worker_id, queue = self._settings.worker_id, self._settings.host_queue
            build = session.get(Build, build_id)
            if build is not None:
                build.host = worker_id
            return queue
