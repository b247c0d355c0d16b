"""Repair what crashes leave behind: builds whose record is `queued`/`running` but whose
workflow has closed or never existed. Every worker runs this periodically; settling is
idempotent, so several workers doing it at once is harmless."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from kiln.builds import BuildService
from kiln.contracts import BuildOutcome, Skipped
from kiln.models import BuildStatus
from workflows.client import Closed, Workflows, WorkflowsUnavailable, settle

log = logging.getLogger(__name__)


async def _outcome(workflows: Workflows, build_id: int) -> BuildOutcome | None:
    """What the record should say, or None while the workflow still runs (or is unreachable)."""
    try:
        state = await workflows.describe(build_id)
    except LookupError:
        return BuildOutcome.failed(build_id, "the build was never started")
    except WorkflowsUnavailable:
        return None  # try again next round
    if state is None:
        return None
    if isinstance(state, BuildOutcome):
        return state
    if isinstance(state, Skipped):
        return BuildOutcome.failed(build_id, "the build ended without a result")
    if state is Closed.CANCELED:
        return BuildOutcome.canceled(build_id)
    return BuildOutcome(build_id, BuildStatus.FAILED, reason=state.value)


async def reconcile_once(
    builds: BuildService, workflows: Workflows, min_age: timedelta
) -> list[int]:
    """Settle stuck builds; returns their ids."""
    settled = []
    for build_id in await asyncio.to_thread(builds.unfinished, min_age):
        outcome = await _outcome(workflows, build_id)
        if outcome is None:
            continue
        log.warning("settling build %s: %s", build_id, outcome.reason or outcome.status)
        await settle(builds, workflows, outcome)
        settled.append(build_id)
    return settled
