"""Builds: fetch one, its logs, rebuild it at the same pinned commit, cancel it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from api.deps import BuildId, BuildsDep, Caller, CallerDep, CurrentUser, SessionDep, WorkflowsDep
from api.queueing import start_builds, write_builds
from api.schemas import BuildAnswer, BuildFetched, BuildLogs, errors
from kiln.access import owned_build
from kiln.contracts import BuildOutcome, Trigger
from kiln.db import reads_only
from kiln.logs import read_log
from kiln.models import BuildStatus
from kiln.records import build_record, project_summary, queue_positions
from workflows.client import WorkflowsUnavailable, settle

router = APIRouter(prefix="/api/build", tags=["builds"])
OWNED = (400, 401, 403, 404)


async def _reads_only() -> AsyncIterator[None]:
    """The route only reads (the caller's lookup included): on SQLite its transactions take no
    write lock. Async, so it runs in the request's own context, which the route's sync parts
    copy; undone when the request ends (an in-process caller shares that context)."""
    with reads_only():
        yield


# Route dependencies are solved before the route's own (the caller's session among them).
READS_ONLY = [Depends(_reads_only)]


@router.post("/rebuild/", include_in_schema=False)
@router.get("/", include_in_schema=False)
def missing_build_id(_user: CurrentUser) -> None:
    raise HTTPException(400, "buildId is missing")


@router.post(
    "/rebuild/{buildId}",
    status_code=201,
    response_model=BuildAnswer,
    responses=errors(*OWNED, 429, 500, 503),
)
async def rebuild(
    build_id: BuildId, user: CurrentUser, builds: BuildsDep, workflows: WorkflowsDep
) -> dict[str, Any]:
    """A new `queued` build at the original's commit; the original is left as it was."""
    record = await write_builds(
        lambda: builds.rebuild(user.id, build_id), "Failed to insert the new build record"
    )
    await start_builds(builds, workflows, [record], Trigger.REBUILD, rebuild_of=build_id)
    return {"message": "Build re-queued", "build": record}


@router.post(
    "/{buildId}/cancel",
    status_code=202,
    response_model=BuildAnswer,
    responses=errors(*OWNED, 409, 503),
)
async def cancel(
    build_id: BuildId, user: CurrentUser, builds: BuildsDep, workflows: WorkflowsDep
) -> dict[str, Any]:
    """Stop a queued or running build; it ends `canceled` once its container is gone."""
    record = await run_in_threadpool(builds.cancellable, user.id, build_id)
    try:
        has_workflow = await workflows.cancel(build_id)
    except WorkflowsUnavailable:
        raise HTTPException(503, "Cancel failed: the workflow service is unavailable") from None
    if not has_workflow:
        # No workflow (it never started): nothing runs, so settle the record here.
        await settle(builds, workflows, BuildOutcome.canceled(build_id))
    return {"message": "Build cancel requested", "build": record}


@router.get("/{buildId}", response_model=BuildFetched, responses=errors(*OWNED))
async def get_build(build_id: BuildId, caller: CallerDep) -> dict[str, Any]:
    # The hot read path: async, with its database work, the caller's lookup included, in one
    # trip to the thread pool and one transaction (a sync route with `CurrentUser` would take
    # four trips: the caller, its session, its body, its answer's validation).
    record = await run_in_threadpool(_fetch_build, caller, build_id)
    return {"message": "Build fetched", "build": record}


def _fetch_build(caller: Caller, build_id: int) -> dict[str, Any]:
    # Read-only here, not by a route dependency: FastAPI runs a generator dependency in a
    # context manager of its own, a cost on every request of this route.
    with reads_only(), caller.sessions() as session:
        build = owned_build(session, build_id, caller.user_in(session).id)
        # Only a queued build has a place in its queue: spare the others the query.
        queued = build.status is BuildStatus.QUEUED
        positions = queue_positions(session, [build.project_id]) if queued else {}
        return build_record(build, positions) | {"project": project_summary(build.project)}


@router.get(
    "/{buildId}/logs", response_model=BuildLogs, responses=errors(*OWNED), dependencies=READS_ONLY
)
def get_logs(
    build_id: BuildId,
    user: CurrentUser,
    session: SessionDep,
    offset: int = Query(default=0, ge=0, le=2**62),
) -> dict[str, Any]:
    """The output so far from byte `offset`; ask again with `nextOffset` for the rest."""
    build = owned_build(session, build_id, user.id)
    data, next_offset = read_log(session, build.id, offset)
    return {
        "message": "Build logs fetched",
        "buildId": build.id,
        "logs": data.decode(errors="replace"),
        "offset": offset,
        "nextOffset": next_offset,
    }
