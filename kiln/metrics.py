"""Prometheus metrics of builds, for every Kiln process (`prometheus_client`).

Correct with any number of API processes and workers, because each figure has one owner:

- Counts of builds by status (`kiln_builds_total{status}` for finished builds, the
  `kiln_builds_queued` and `kiln_builds_running` gauges) are read from the `builds` table at
  scrape time by `BuildCounts`, one grouped COUNT. Every API process reports the same figures:
  aggregate them with `max()`, never `sum()`. (Deleting a project deletes its builds, which the
  counter shows as a reset; `rate()` and `increase()` cope with that.)
- The time histograms (`kiln_build_queue_seconds`, `kiln_build_duration_seconds{status}`) are
  observed by `BuildMetrics` in the process that commits the transition, when it commits: a
  build goes queued → running once and becomes final once (those writes are guarded in
  `kiln.builds`), so each build is observed exactly once, by one process — a worker, or an API
  process for a build it failed at queueing time. Sum them over every Kiln target.
  Queue time is from the record's creation (`startedAt`) to the claim of a slot; duration is
  from the record's creation to its end (`finishedAt`), the duration the dashboard shows.
- Per-process figures (HTTP requests, sockets, event delivery, a worker's own builds) live in
  that process and carry its `instance` label when scraped: sum them over instances.
- Several API processes share one port (`KILN_API_WORKERS`), so one scrape reaches only one of
  them. `kiln api` then gives them a directory (`PROMETHEUS_MULTIPROC_DIR`, prometheus_client's
  multiprocess mode): each process writes its values there, and `/metrics` shows them summed
  over the live processes (`shared_registry`). The `process_*` and `python_*` figures are left
  out then: they would be those of whichever process answered.

Each process keeps its own `CollectorRegistry` (tests run several Kilns in one process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus, utcnow

log = logging.getLogger(__name__)

# `*_created` series double every counter and histogram for little use.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

FINAL_STATUSES = [status for status in BuildStatus if status.is_final]
QUEUE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
_PENDING = "kiln_metrics_pending"
# prometheus_client reads it when first imported: `kiln api` sets it before its processes start.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_dir() -> str | None:
    """The directory the API's processes share their values in, when there are several."""
    return os.environ.get(MULTIPROCESS_ENV) or None


def new_registry() -> CollectorRegistry:
    """A registry of this process's own, with the usual process figures (CPU, memory, GC) when
    the process answers its scrapes alone."""
    registry = CollectorRegistry()
    if shared_dir() is None:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def shared_registry(path: str, *collectors: Collector) -> CollectorRegistry:
    """What `/metrics` shows when several API processes share the port: every live process's
    counters, histograms and gauges, summed from `path`, and `collectors` (which read the
    database, the same from any process)."""
    registry = CollectorRegistry()
    registry.register(LiveProcesses(path))
    for collector in collectors:
        registry.register(collector)
    return registry


class LiveProcesses(Collector):
    """prometheus_client's MultiProcessCollector, after forgetting the gauges of processes that
    have died (uvicorn starts a new one in their place): their sockets are gone."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._collector = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for pid in _gauge_pids(self._path):
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, self._path)  # type: ignore[no-untyped-call]
        collected: Iterable[Metric] = self._collector.collect()  # type: ignore[no-untyped-call]
        return collected


def _gauge_pids(path: str) -> set[int]:
    # Live gauges are kept in files named gauge_live<mode>_<pid>.db.
    pids = set()
    for name in os.listdir(path):
        stem, _, pid = name.removesuffix(".db").rpartition("_")
        if stem.startswith("gauge_live") and pid.isdigit():
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process by now: not ours
        return False
    return True


class BuildMetrics:
    """Queue time and duration of builds, observed when a transition commits (see above)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue = Histogram(
            "kiln_build_queue_seconds",
            "Time from a build's creation to its start (queued -> running), observed by the "
            "process that started it",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "kiln_build_duration_seconds",
            "Time from a build's creation to its end, by final status, observed by the process "
            "that recorded the end",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        for status in FINAL_STATUSES:
            self.duration.labels(status=status.value)

    def watch(self, sessions: SessionFactory) -> None:
        """Observe the transitions committed through `sessions`."""
        event.listen(sessions, "after_flush", self._collect)
        event.listen(sessions, "after_commit", self._observe)
        event.listen(sessions, "after_rollback", self._forget)

    @staticmethod
    def _collect(session: Session, _flush_context: Any) -> None:
        # Before the flush is forgotten: the attribute history still says what changed.
        for obj in session.dirty:
            if not isinstance(obj, Build):
                continue
            history = inspect(obj).attrs.status.history
            if not history.added:
                continue
            new = BuildStatus(history.added[0])
            old = BuildStatus(history.deleted[0]) if history.deleted else None
            if old == new or (old is not None and old.is_final):
                continue
            now = utcnow()
            if new == BuildStatus.RUNNING:
                seconds = (now - obj.started_at).total_seconds()
                session.info.setdefault(_PENDING, []).append(("queue", None, seconds))
            elif new.is_final:
                end = obj.finished_at or now
                seconds = (end - obj.started_at).total_seconds()
                session.info.setdefault(_PENDING, []).append(("duration", new.value, seconds))

    def _observe(self, session: Session) -> None:
        for kind, status, seconds in session.info.pop(_PENDING, []):
            if kind == "queue":
                self.queue.observe(max(0.0, seconds))
            else:
                self.duration.labels(status=status).observe(max(0.0, seconds))

    @staticmethod
    def _forget(session: Session) -> None:
        session.info.pop(_PENDING, None)


class BuildCounts:
    """A collector: builds by status, counted in the database at each scrape (one query), so
    every API process reports the same figures. `kiln_database_up` says whether it could."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "kiln_database_up", "1 when this scrape could count builds in the database"
        )
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(Build.status, func.count()).group_by(Build.status)
                ).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: could not count builds (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        counts = {BuildStatus(status): int(count) for status, count in rows}
        finished = CounterMetricFamily(
            "kiln_builds",
            "Finished builds by final status (counted in the database: the same on every API "
            "process; aggregate with max)",
            labels=["status"],
        )
        for status in FINAL_STATUSES:
            finished.add_metric([status.value], counts.get(status, 0))
        yield finished
        yield GaugeMetricFamily(
            "kiln_builds_queued",
            "Builds waiting to start (from the database)",
            value=counts.get(BuildStatus.QUEUED, 0),
        )
        yield GaugeMetricFamily(
            "kiln_builds_running",
            "Builds running (from the database)",
            value=counts.get(BuildStatus.RUNNING, 0),
        )
        up.add_metric([], 1)
        yield up


class WorkerMetrics:
    """One worker host's figures, labelled with its `KILN_WORKER_ID`."""

    def __init__(self, registry: CollectorRegistry, worker_id: str, capacity: int) -> None:
        self.worker_id = worker_id
        self._running = Gauge(
            "kiln_worker_builds_running",
            "Builds holding one of this host's slots (cloning or running)",
            ["worker"],
            registry=registry,
        ).labels(worker=worker_id)
        Gauge(
            "kiln_worker_capacity",
            "Builds this host runs at once (KILN_MAX_BUILDS_PER_HOST)",
            ["worker"],
            registry=registry,
        ).labels(worker=worker_id).set(capacity)
        self.heartbeat_failures = Counter(
            "kiln_worker_heartbeat_failures",
            "Failed refreshes of this host's registration (its heartbeat in the database); "
            "a host that keeps failing them is no longer offered builds",
            ["worker"],
            registry=registry,
        ).labels(worker=worker_id)

    @contextmanager
    def build_running(self) -> Iterator[None]:
        """Count a build as running on this host while inside."""
        self._running.inc()
        try:
            yield
        finally:
            self._running.dec()


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None] | None:
    """Serve `registry` at http://host:port/metrics from a thread; returns how to stop it, or
    None when it could not listen (logged: a taken port must not stop the process's work)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%s (%s); metrics are not served", host, port, exc)
        return None
    log.info("metrics served at http://%s:%s/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
