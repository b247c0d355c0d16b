"""Queue builds: the `queued` rows and their events commit first (in a core service), then each
workflow starts — all before the API answers, so a 2xx means the build is durably queued."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.errors import NotQueued, QueueingFailed
from kiln.builds import BuildService
from kiln.contracts import BuildOutcome, Trigger
from workflows.client import Workflows, WorkflowsUnavailable, settle

log = logging.getLogger(__name__)
T = TypeVar("T")


async def write_builds(write: Callable[[], T], failure_message: str) -> T:
    """Run a core write that queues builds (in a thread); a database failure is a 500."""
    try:
        return await run_in_threadpool(write)
    except SQLAlchemyError:
        log.exception("build insert failed")
        raise QueueingFailed(failure_message) from None


async def start_builds(
    builds: BuildService,
    workflows: Workflows,
    records: list[dict[str, Any]],
    trigger: Trigger | None = None,
    rebuild_of: int | None = None,
) -> None:
    """Start each build's workflow, labelled with what queued it (and for a rebuild, which
    build it repeats); raises NotQueued (503) if any could not be started."""
    started = 0
    for record in records:
        started += await _start(builds, workflows, record["id"], trigger, rebuild_of)
    if started < len(records):
        raise NotQueued(started_any=started > 0)


async def _start(
    builds: BuildService,
    workflows: Workflows,
    build_id: int,
    trigger: Trigger | None,
    rebuild_of: int | None,
) -> bool:
    try:
        await workflows.start(build_id, trigger=trigger, rebuild_of=rebuild_of)
    except WorkflowsUnavailable as exc:
        log.error("could not start the workflow of build %s: %s", build_id, exc)
        # A build whose workflow never started must not sit `queued`.
        outcome = BuildOutcome.failed(build_id, "the build could not be queued")
        await settle(builds, workflows, outcome)
        return False
    return True
