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

from activities.records import RecordActivities
from activities.types import BuildOutcome
from kiln.db import SessionFactory
from kiln.events import announce
from kiln.models import Build, BuildStatus
from kiln.records import build_record, queue_positions
from kiln.settings import Settings
from workflows.build import BuildInput, BuildWorkflow, wake_waiting_builds, workflow_id

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
    started = 0
    for record in records:
        started += await start_build_workflow(sessions, temporal, settings, record["id"])
    if started < len(records):
        raise NotQueued(started_any=started > 0)
    return records, extra


class NotQueued(HTTPException):
    """Some workflow could not be started (those builds are `failed`): a 503."""

    def __init__(self, *, started_any: bool) -> None:
        super().__init__(503, "Build could not be queued: the workflow service is unavailable")
        self.started_any = started_any


async def start_build_workflow(
    sessions: SessionFactory, temporal: Client, settings: Settings, build_id: int
) -> bool:
    """Start the build's workflow; False (and the build `failed`) when Temporal refuses."""
    try:
        await temporal.start_workflow(
            BuildWorkflow.run,
            BuildInput(build_id, host_pickup_seconds=settings.host_pickup_seconds),
            id=workflow_id(build_id, settings.workflow_id_prefix),
            task_queue=settings.task_queue,
        )
    except WorkflowAlreadyStartedError:
        pass  # the id is the build's: a repeated start is the same build
    except Exception as exc:
        log.error("could not start the workflow of build %s: %s", build_id, exc)
        # A build whose workflow never started must not sit `queued`.
        outcome = BuildOutcome(build_id, BuildStatus.FAILED, reason="the build could not be queued")
        await settle(sessions, temporal, settings, outcome)
        return False
    return True


async def settle(
    sessions: SessionFactory, temporal: Client, settings: Settings, outcome: BuildOutcome
) -> None:
    """Record a final status outside any workflow, and wake the builds its slot frees."""
    waiting = await run_in_threadpool(RecordActivities(sessions).finish_build, outcome)
    await wake_waiting_builds(temporal, waiting, settings.workflow_id_prefix)
