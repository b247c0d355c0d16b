"""Queue a build: insert the `queued` row, announce it, and start its workflow — all before the
API answers, so a 2xx means the build is durably queued."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from kiln.db import SessionFactory
from kiln.events import announce
from kiln.logs import append_log
from kiln.models import Build, BuildStatus, utcnow
from kiln.records import build_record, queue_positions
from kiln.settings import Settings
from workflows.build import SLOT_FREED_SIGNAL, BuildInput, BuildWorkflow, workflow_id

log = logging.getLogger(__name__)

# Builds a route inserts, with whatever else it returns alongside them (e.g. a new project).
Inserter = Callable[[Session], tuple[list[Build], dict[str, Any]]]


async def queue_builds(
    sessions: SessionFactory,
    temporal: Client,
    settings: Settings,
    insert: Inserter,
    failure_message: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Insert through `insert`, commit with the `queued` events, then start each workflow."""

    def write() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            with sessions.begin() as session:
                builds, extra = insert(session)
                session.flush()
                for build in builds:
                    announce(session, build)
                positions = queue_positions(session, {build.project_id for build in builds})
                return [build_record(build, positions) for build in builds], extra
        except SQLAlchemyError:
            log.exception("build insert failed")
            raise HTTPException(500, failure_message) from None

    records, extra = await run_in_threadpool(write)
    for record in records:
        await start_build_workflow(sessions, temporal, settings, record["id"])
    return records, extra


async def start_build_workflow(
    sessions: SessionFactory, temporal: Client, settings: Settings, build_id: int
) -> None:
    try:
        await temporal.start_workflow(
            BuildWorkflow.run,
            BuildInput(build_id, host_pickup_seconds=settings.host_pickup_seconds),
            id=workflow_id(build_id),
            task_queue=settings.task_queue,
        )
    except WorkflowAlreadyStartedError:
        pass  # the id is the build's: a repeated start is the same build
    except Exception as exc:
        log.error("could not start the workflow of build %s: %s", build_id, exc)
        await run_in_threadpool(_fail_unqueued, sessions, build_id)
        raise HTTPException(
            503, "Build could not be queued: the workflow service is unavailable"
        ) from None


async def wake_waiting_builds(temporal: Client, build_ids: list[int]) -> None:
    """Tell waiting builds to look for a free slot now rather than at their next recheck."""
    for build_id in build_ids:
        try:
            await temporal.get_workflow_handle(workflow_id(build_id)).signal(SLOT_FREED_SIGNAL)
        except RPCError as exc:  # finished meanwhile, or never started
            log.info("could not wake build %s: %s", build_id, exc)


def _fail_unqueued(sessions: SessionFactory, build_id: int) -> None:
    """A build whose workflow never started must not sit `queued` for ever."""
    with sessions.begin() as session:
        build = session.get(Build, build_id)
        if build is None or build.status != BuildStatus.QUEUED:
            return
        build.status = BuildStatus.FAILED
        build.finished_at = utcnow()
        append_log(session, build_id, b"[kiln] the build could not be queued\n")
        announce(session, build)
