"""The Kiln worker: runs build workflows and, on this host's own queue, the builds themselves.

Two Temporal workers share one process: one on the shared queue (workflows and their local
activities) and one on `<queue>-host-<KILN_WORKER_ID>` (clone, run, cleanup), so every step of a
build that touches the disk or Docker happens on the same host. Beside them, a maintenance loop
sweeps this host's leftovers and settles builds whose workflow ended without a word.

Builds run on the network `KILN_BUILD_NETWORK` names; left empty (the default), on Kiln's own
bridge network, which reaches the public internet only (`kiln.network`). The worker sets that
network and its firewall rules up before it polls, re-applies the rules at every maintenance
round, and refuses to start if it cannot install them.

For operators: the worker serves Prometheus metrics on `KILN_HOST:KILN_WORKER_METRICS_PORT`
(0: off) — this host's running builds, capacity and failed heartbeats, and the queue time and
duration of the builds whose transitions it commits (kiln.metrics) — and its log lines carry
the `buildId` and `workflowId` of the Temporal activity they were written in.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import docker
from prometheus_client import CollectorRegistry
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker
from typing_extensions import override

from activities.build import BuildActivities
from activities.hosts import HostActivities
from activities.notify import NotifyActivities
from activities.records import RecordActivities
from kiln.builds import BuildService
from kiln.containers import Containers
from kiln.contracts import RunResult
from kiln.db import SessionFactory, make_engine, make_session_factory
from kiln.events import prune_outbox
from kiln.execution import Attempt, BuildExecutor
from kiln.hosts import REFRESH_SECONDS, HostRegistry
from kiln.logconfig import add_context_source, configure_logging
from kiln.metrics import BuildMetrics, WorkerMetrics, new_registry, serve_metrics
from kiln.network import BuildNetworkError, ProtectedNetwork
from kiln.notifications import Notifier
from kiln.quotas import UserLimits
from kiln.sealed import require_secrets_key
from kiln.secrets import SecretsKeyError
from kiln.settings import Settings, get_settings
from kiln.sweep import sweep_host
from kiln.visibility import BuildVisibility
from workflows.build import BuildWorkflow
from workflows.client import TemporalWorkflows
from workflows.reconcile import reconcile_once
from workflows.visibility import SearchAttributesError, require_search_attributes

log = logging.getLogger("kiln.worker")
LOCAL_ACTIVITY_SLOTS = 16
HOST_ACTIVITY_SLOTS = 48
_BUILD_OF_WORKFLOW = re.compile(r"build-(\d+)\Z")


def temporal_log_ids(record: logging.LogRecord) -> Mapping[str, Any] | None:
    """The ids of the Temporal activity (or workflow) a line was logged in, for kiln.logconfig:
    `workflowId`, and `buildId` read from it (`<prefix>build-<id>`)."""
    workflow_id: str | None = None
    if activity.in_activity():
        workflow_id = activity.info().workflow_id
    else:
        # Temporal's own loggers (workflow.logger, activity.logger) attach the ids themselves.
        for key in ("temporal_activity", "temporal_workflow"):
            extra = getattr(record, key, None)
            if isinstance(extra, dict) and isinstance(extra.get("workflow_id"), str):
                workflow_id = extra["workflow_id"]
                break
    if not workflow_id:
        return None
    found = _BUILD_OF_WORKFLOW.search(workflow_id)
    return {"workflowId": workflow_id, "buildId": int(found.group(1)) if found else None}


class CountedExecutor(BuildExecutor):
    """The build executor, counting the builds that hold one of this host's slots."""

    def __init__(self, *args: Any, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    @override
    def _execute(self, build_id: int, attempt: Attempt) -> RunResult:
        with self._metrics.build_running():
            return super()._execute(build_id, attempt)


@dataclass
class WorkerProcess:
    """Everything one worker process runs."""

    workers: list[Worker]
    sessions: SessionFactory
    containers: Containers
    settings: Settings
    builds: BuildService
    hosts: HostRegistry
    workflows: TemporalWorkflows
    docker_client: docker.DockerClient
    # Kiln's protected build network, when builds run on it (KILN_BUILD_NETWORK empty).
    network: ProtectedNetwork | None = None
    # This process's Prometheus figures (served by `run_worker`).
    registry: CollectorRegistry | None = None
    metrics: WorkerMetrics | None = None

    async def maintain(self) -> None:
        """Sweep now, then sweep and reconcile every `KILN_RECONCILE_SECONDS`; re-apply the
        build network's firewall rules each time (a firewall reload may have dropped them)."""
        while True:
            if self.network is not None:
                try:
                    await asyncio.to_thread(self.network.ensure, self.docker_client)
                except Exception:
                    log.exception("could not re-apply the build network's firewall rules")
            try:
                await asyncio.to_thread(
                    sweep_host, self.sessions, self.containers, self.settings.workspace_dir
                )
                min_age = timedelta(seconds=self.settings.reconcile_min_age_seconds)
                await reconcile_once(self.builds, self.workflows, min_age)
                await asyncio.to_thread(prune_outbox, self.sessions)
            except Exception:  # a database or Docker hiccup: the next round tries again
                log.exception("maintenance round failed")
            await asyncio.sleep(self.settings.reconcile_seconds)

    def request_shutdown(self) -> None:
        log.info("worker %s shutting down", self.settings.worker_id)
        self._shutdowns = [asyncio.ensure_future(worker.shutdown()) for worker in self.workers]

    async def stay_registered(self) -> None:
        """Keep this host's entry fresh, so builds keep being offered to it."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.hosts.register)
            except Exception:  # the database is away: the entry ages, builds go elsewhere
                if self.metrics is not None:
                    self.metrics.heartbeat_failures.inc()
                log.warning("could not refresh this host's registration", exc_info=True)

    async def run(self) -> None:
        await asyncio.to_thread(self.hosts.register)
        background = [
            asyncio.create_task(self.maintain()),
            asyncio.create_task(self.stay_registered()),
        ]
        try:
            await asyncio.gather(*(worker.run() for worker in self.workers))
        finally:
            for task in background:
                task.cancel()
            try:
                await asyncio.to_thread(self.hosts.unregister)
            except Exception:  # it ages out of the live window anyway
                log.warning("could not unregister this host", exc_info=True)


def build_worker_process(
    client: Client, settings: Settings, executor: ThreadPoolExecutor
) -> WorkerProcess:
    """The composition root: core services, the activities that delegate to them, and the two
    Temporal workers. Raises `BuildNetworkError` if builds would run on Kiln's protected
    network and it cannot be set up."""
    docker_client = docker.from_env()
    network = None
    if not settings.build_network:
        network = ProtectedNetwork()
        info = network.ensure(docker_client)
        log.info("builds run on network %s (%s): public internet only", info.name, info.subnet)
        settings = settings.model_copy(update={"build_network": network.name})
    elif settings.build_network in ("bridge", "host", "default"):
        log.warning(
            "KILN_BUILD_NETWORK=%s: builds can reach this host, its private networks and cloud "
            "metadata; leave it empty for Kiln's protected network, or use `none`",
            settings.build_network,
        )
    sessions = make_session_factory(
        make_engine(settings.database_url), workflow_id_prefix=settings.workflow_id_prefix
    )
    require_secrets_key(sessions, settings)
    registry = new_registry()
    BuildMetrics(registry).watch(sessions)
    metrics = WorkerMetrics(registry, settings.worker_id, settings.max_builds_per_host)
    add_context_source(temporal_log_ids)
    containers = Containers(docker_client, settings)
    build_service = BuildService(sessions, UserLimits.from_settings(settings))
    host_registry = HostRegistry(sessions, settings)
    build_executor = CountedExecutor(sessions, build_service, containers, settings, metrics=metrics)
    records = RecordActivities(build_service, BuildVisibility(sessions))
    hosts = HostActivities(host_registry)
    builds = BuildActivities(build_executor)
    notices = NotifyActivities(Notifier(sessions, settings))
    settings.workspace_dir.mkdir(parents=True, exist_ok=True)
    shared = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[BuildWorkflow],
        activities=[
            records.claim_slot,
            records.finish_build,
            hosts.pick_host,
            notices.notify_plan,
            notices.send_github_status,
            notices.send_hook,
        ],
        max_concurrent_local_activities=LOCAL_ACTIVITY_SLOTS,
        activity_executor=executor,
    )
    host = Worker(
        client,
        task_queue=settings.host_queue,
        activities=[builds.execute_build, builds.cleanup_build],
        activity_executor=executor,
        # Builds past the host's cap wait inside the activity (heartbeating), not in the queue:
        # a host that does not poll would look dead and its builds would be moved.
        max_concurrent_activities=HOST_ACTIVITY_SLOTS,
        # Heartbeat every second: a cancel reaches a running build within about a second
        # (the default would wait up to 0.8 x the heartbeat timeout).
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
    )
    workflows = TemporalWorkflows(client, settings)
    return WorkerProcess(
        [shared, host],
        sessions,
        containers,
        settings,
        build_service,
        host_registry,
        workflows,
        docker_client,
        network,
        registry,
        metrics,
    )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    # Builds carry Kiln's search attributes: without them Temporal refuses every build.
    await require_search_attributes(client, settings.temporal_namespace)
    with ThreadPoolExecutor(max_workers=LOCAL_ACTIVITY_SLOTS + HOST_ACTIVITY_SLOTS) as executor:
        process = build_worker_process(client, settings, executor)
        # SIGTERM/Ctrl-C: stop polling and unregister. Running build containers are left
        # alone: the retried activity re-attaches to them when a worker comes back.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, process.request_shutdown)
        log.info("worker %s polling %s and %s", settings.worker_id, settings.task_queue,
                 settings.host_queue)  # fmt: skip
        stop_metrics = None
        if settings.worker_metrics_port and process.registry is not None:
            stop_metrics = await asyncio.to_thread(
                serve_metrics, process.registry, settings.host, settings.worker_metrics_port
            )
        try:
            await process.run()
        finally:
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)


def main() -> None:
    configure_logging(level=logging.INFO)
    try:
        asyncio.run(run_worker())
    except (BuildNetworkError, SearchAttributesError, SecretsKeyError) as exc:
        sys.exit(f"kiln worker: cannot start: {exc}")


if __name__ == "__main__":
    main()
