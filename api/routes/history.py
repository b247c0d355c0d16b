"""A project's builds, paged: `GET /api/project/projects/{projectId}/builds`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, ProjectId, get_sessions
from api.schemas import BuildRecord, errors
from kiln.db import SessionFactory
from kiln.history import MAX_PAGE, builds_page
from kiln.models import BuildStatus

router = APIRouter(prefix="/api/project", tags=["projects"])
SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]


class BuildsPage(BaseModel):
    message: str
    builds: list[BuildRecord] = Field(description="Newest first")
    nextBefore: int | None = Field(  # noqa: N815
        description="Pass as `before` for the next (older) page; null on the last page"
    )


@router.get(
    "/projects/{projectId}/builds",
    response_model=BuildsPage,
    responses=errors(400, 401, 403, 404),
)
async def list_builds(
    project_id: ProjectId,
    user: CurrentUser,
    sessions: SessionsDep,
    status: Annotated[BuildStatus | None, Query(description="Only builds in this status")] = None,
    branch: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="A build id")] = None,
) -> dict[str, Any]:
    """The project's builds newest first; `nextBefore` asks for the next, older page."""
    page = await run_in_threadpool(
        lambda: builds_page(
            sessions, user.id, project_id, status=status, branch=branch, limit=limit, before=before
        )
    )
    return {"message": "Builds fetched", "builds": page.builds, "nextBefore": page.next_before}
