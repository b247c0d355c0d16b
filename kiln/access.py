"""Ownership: a project or build that does not exist is NotFound, one of another user Forbidden."""

from __future__ import annotations

from sqlalchemy.orm import Session, joinedload

from kiln.errors import Forbidden, NotFound
from kiln.models import Build, Project

# Ids are 32-bit in the database: a larger one names nothing (and must not reach a query).
MAX_ID = 2**31 - 1


def owned_project(session: Session, project_id: int, user_id: int) -> Project:
    project = session.get(Project, project_id) if project_id <= MAX_ID else None
    if project is None:
        raise NotFound("Project not found")
    if project.owner_id != user_id:
        raise Forbidden("You do not have access to this project")
    return project


def owned_build(session: Session, build_id: int, user_id: int) -> Build:
    build = (
        session.get(Build, build_id, options=[joinedload(Build.project)])
        if build_id <= MAX_ID
        else None
    )
    if build is None:
        raise NotFound("Build not found")
    if build.project.owner_id != user_id:
        raise Forbidden("You do not have access to this build")
    return build
