"""Repair what crashes leave behind: builds whose record is `queued`/`running` but whose
workflow has closed or never existed. Every worker runs this periodically; settling is
idempotent, so several workers doing it at once is harmless."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.records import RecordActivities
from activities.types import BuildOutcome
from kiln.db import SessionFactory
from kiln.models import Build, BuildStatus, utcnow
from workflows.build import SKIPPED, wake_waiting_builds, workflow_id

log = logging.getLogger(__name__)

_CLOSED = {
    WorkflowExecutionStatus.FAILED: "the build's workflow failed",
    WorkflowExecutionStatus.TERMINATED: "the build's workflow was terminated",
    WorkflowExecutionStatus.TIMED_OUT: "the build's workflow timed out",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "the build's workflow ended unexpectedly",
}


def _unfinished(sessions: SessionFactory, min_age: timedelta) -> list[int]:
    with sessions() as session:
        query = select(Build.id).where(
            Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING]),
            Build.started_at < utcnow() - min_age,
        )
        return list(session.scalars(query.order_by(Build.id)))


async def _outcome(handle: WorkflowHandle[object, object], build_id: int) -> BuildOutcome | None:
    """What the record should say, or None while the workflow still runs (or is unreachable)."""
    try:
        status = (await handle.describe()).status
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            return None  # Temporal is unreachable: try again next round
        return BuildOutcome(build_id, BuildStatus.FAILED, reason="the build was never started")
    if status is None or status == WorkflowExecutionStatus.RUNNING:
        return None
    if status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        if isinstance(result, BuildOutcome) and result.status != SKIPPED:
            return result
        return BuildOutcome(build_id, BuildStatus.FAILED, reason="the build ended without a result")
    if status == WorkflowExecutionStatus.CANCELED:
        return BuildOutcome(build_id, BuildStatus.CANCELED, reason="build canceled")
    return BuildOutcome(build_id, BuildStatus.FAILED, reason=_CLOSED[status])


async def reconcile_once(
    sessions: SessionFactory, client: Client, min_age: timedelta, prefix: str = ""
) -> list[int]:
    """Settle stuck builds; returns their ids."""
    records = RecordActivities(sessions)
    settled = []
    for build_id in await asyncio.to_thread(_unfinished, sessions, min_age):
        handle = client.get_workflow_handle(workflow_id(build_id, prefix), result_type=BuildOutcome)
        outcome = await _outcome(handle, build_id)
        if outcome is None:
            continue
        log.warning("settling build %s: %s", build_id, outcome.reason or outcome.status)
        waiting = await asyncio.to_thread(records.finish_build, outcome)
        settled.append(build_id)
        await wake_waiting_builds(client, waiting, prefix)
    return settled
