"""Builds: fetch one, its logs, and rebuild it at the same pinned commit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from temporalio.service import RPCError, RPCStatusCode

from activities.types import BuildOutcome
from api.access import owned_build
from api.deps import CurrentUserId, SessionDep, SessionsDep, SettingsDep, TemporalDep, parse_id
from api.queueing import queue_builds, settle
from kiln.logs import read_log
from kiln.models import Build, BuildStatus
from kiln.records import build_record, project_summary, queue_positions
from workflows.build import workflow_id

router = APIRouter(prefix="/api/build", tags=["builds"])


@router.post("/rebuild/", include_in_schema=False)
@router.get("/", include_in_schema=False)
def missing_build_id(_user_id: CurrentUserId) -> None:
    raise HTTPException(400, "buildId is missing")


@router.post("/rebuild/{build_id}", status_code=201)
async def rebuild(
    build_id: str,
    user_id: CurrentUserId,
    sessions: SessionsDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """A new `queued` build at the original's commit; the original is left as it was."""
    original_id = parse_id(build_id, "buildId")

    def insert(session: Session) -> tuple[list[Build], dict[str, Any]]:
        original = owned_build(session, original_id, user_id)
        copy = Build(
            project_id=original.project_id,
            commit=original.commit,
            branch=original.branch,
            commit_author=original.commit_author,
            commit_hash=original.commit_hash,
        )
        session.add(copy)
        return [copy], {}

    builds, _ = await queue_builds(
        sessions, temporal, settings, insert, "Failed to insert the new build record"
    )
    return {"message": "Build re-queued", "build": builds[0]}


@router.post("/{build_id}/cancel", status_code=202)
async def cancel(
    build_id: str,
    user_id: CurrentUserId,
    sessions: SessionsDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """Stop a queued or running build; it ends `canceled` once its container is gone."""
    bid = parse_id(build_id, "buildId")

    def check() -> dict[str, Any]:
        with sessions() as session:
            build = owned_build(session, bid, user_id)
            if BuildStatus(build.status).is_final:
                raise HTTPException(409, f"Build already finished ({build.status})")
            return build_record(build, queue_positions(session, [build.project_id]))

    record = await run_in_threadpool(check)
    try:
        await temporal.get_workflow_handle(workflow_id(bid, settings.workflow_id_prefix)).cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise HTTPException(503, "Cancel failed: the workflow service is unavailable") from None
        # No workflow (it never started): nothing runs, so settle the record here.
        outcome = BuildOutcome(bid, BuildStatus.CANCELED, reason="build canceled")
        await settle(sessions, temporal, settings, outcome)
    return {"message": "Build cancel requested", "build": record}


@router.get("/{build_id}")
def get_build(build_id: str, user_id: CurrentUserId, session: SessionDep) -> dict[str, Any]:
    build = owned_build(session, parse_id(build_id, "buildId"), user_id)
    positions = queue_positions(session, [build.project_id])
    record = build_record(build, positions) | {"project": project_summary(build.project)}
    return {"message": "Build fetched", "build": record}


@router.get("/{build_id}/logs")
def get_logs(
    build_id: str,
    user_id: CurrentUserId,
    session: SessionDep,
    offset: int = Query(default=0, ge=0, le=2**62),
) -> dict[str, Any]:
    """The output so far from byte `offset`; ask again with `nextOffset` for the rest."""
    build = owned_build(session, parse_id(build_id, "buildId"), user_id)
    data, next_offset = read_log(session, build.id, offset)
    return {
        "message": "Build logs fetched",
        "buildId": build.id,
        "logs": data.decode(errors="replace"),
        "offset": offset,
        "nextOffset": next_offset,
    }
