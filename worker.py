"""The Kiln worker: runs build workflows and, on this host's own queue, the builds themselves.

Two Temporal workers share one process: one on the shared queue (workflows and their local
activities) and one on `<queue>-host-<KILN_WORKER_ID>` (clone, run, cleanup), so every step of a
build that touches the disk or Docker happens on the same host.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import docker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.build import BuildActivities
from activities.containers import Containers
from activities.hosts import HostActivities
from activities.records import RecordActivities
from kiln.db import make_engine, make_session_factory
from kiln.settings import Settings, get_settings
from workflows.build import BuildWorkflow

log = logging.getLogger("kiln.worker")
LOCAL_ACTIVITY_SLOTS = 16
HOST_ACTIVITY_SLOTS = 48


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


def build_workers(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> list[Worker]:
    sessions = make_session_factory(make_engine(settings.database_url))
    records = RecordActivities(sessions)
    hosts = HostActivities(settings.host_queue)
    builds = BuildActivities(sessions, Containers(docker.from_env(), settings), settings)
    settings.workspace_dir.mkdir(parents=True, exist_ok=True)
    shared = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[BuildWorkflow],
        activities=[records.claim_slot, records.finish_build, hosts.pick_host],
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
    )
    return [shared, host]


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=LOCAL_ACTIVITY_SLOTS + HOST_ACTIVITY_SLOTS) as executor:
        workers = build_workers(client, settings, executor)
        log.info(
            "worker %s polling %s and %s",
            settings.worker_id,
            settings.task_queue,
            settings.host_queue,
        )
        await asyncio.gather(*(worker.run() for worker in workers))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
