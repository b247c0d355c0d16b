"""GitHub push webhooks: a signed push to a connected branch queues one build per project.

The signature (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body) is checked in constant time
against the secret of every project whose repository the payload names; only projects whose
secret signed it are built. A delivery id is acted on once, even when GitHub redelivers it
concurrently or after a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.queueing import NotQueued, queue_builds
from kiln.db import SessionFactory
from kiln.git import SHA_RE, repo_key
from kiln.models import Build, Project, WebhookDelivery

router = APIRouter(prefix="/api/webhook", tags=["webhooks"])
NO_COMMIT = "0" * 40


class DuplicateDelivery(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"Payload larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"Payload larger than {limit} bytes")
    return bytes(body)


def signed_by(secret: str, body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def _repository_keys(payload: dict[str, Any]) -> set[str]:
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return set()
    keys = set()
    for url in (repository.get("clone_url"), repository.get("html_url")):
        if isinstance(url, str) and url:
            try:
                keys.add(repo_key(url))
            except ValueError:  # matches no project
                pass
    return keys


def _forget_delivery(sessions: SessionFactory, delivery: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _accepted(response: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=202, content=response)


@router.post("/github", response_model=None)
async def github(
    request: Request, sessions: SessionsDep, settings: SettingsDep, temporal: TemporalDep
) -> dict[str, Any] | JSONResponse:
    body = await read_body(request, settings.webhook_max_bytes)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPException(400, "Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "Request body must be a JSON object")
    signature = request.headers.get("x-hub-signature-256", "")
    keys = _repository_keys(payload)

    def signed_projects() -> list[tuple[int, str]]:
        with sessions() as session:
            projects = session.scalars(select(Project).where(Project.repo_key.in_(keys))).all()
            return [
                (project.id, project.branch)
                for project in projects
                if signed_by(project.webhook_secret, body, signature)
            ]

    projects = await run_in_threadpool(signed_projects) if keys and signature else []
    if not projects:
        raise HTTPException(401, "No valid signature for a project of this repository")
    event = request.headers.get("x-github-event", "")
    if event == "ping":
        return {"message": "pong"}
    if event != "push":
        return _accepted({"message": f"Event '{event}' ignored", "builds": []})
    ref, after = payload.get("ref"), payload.get("after")
    if (
        not isinstance(ref, str)
        or not ref.startswith("refs/heads/")
        or payload.get("deleted") is True
        or not isinstance(after, str)
        or after == NO_COMMIT
        or not SHA_RE.match(after)
    ):
        return _accepted({"message": "Builds queued", "builds": []})
    branch = ref.removeprefix("refs/heads/")
    targets = [project_id for project_id, project_branch in projects if project_branch == branch]
    head = _object(payload.get("head_commit"))
    message, author = (
        str(head.get("message") or ""),
        str(_object(head.get("author")).get("name") or ""),
    )
    delivery = request.headers.get("x-github-delivery", "")[:100]

    def insert(session: Session) -> tuple[list[Build], dict[str, Any]]:
        if delivery:
            session.add(WebhookDelivery(delivery_id=delivery))
            try:
                session.flush()
            except IntegrityError:
                raise DuplicateDelivery() from None
        builds = [
            Build(
                project_id=project_id,
                branch=branch,
                commit_hash=after,
                commit=message,
                commit_author=author,
            )
            for project_id in targets
        ]
        session.add_all(builds)
        return builds, {}

    try:
        records, _ = await queue_builds(
            sessions, temporal, settings, insert, "Failed to insert the build records"
        )
    except DuplicateDelivery:
        return _accepted({"message": "Delivery already processed", "builds": []})
    except NotQueued as exc:
        if delivery and not exc.started_any:
            # Nothing queued: forget the delivery, so GitHub's redelivery can try again.
            await run_in_threadpool(_forget_delivery, sessions, delivery)
        raise
    return _accepted({"message": "Builds queued", "builds": records})
