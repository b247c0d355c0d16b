"""GitHub push webhooks: a signed push to a connected branch queues one build per project.

What a delivery means (signatures, push rules, dedupe) is `kiln.webhooks`; this route reads the
request and answers.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import BuildsDep, SettingsDep, WebhooksDep, WorkflowsDep
from api.errors import NotQueued
from api.queueing import start_builds, write_builds
from api.schemas import BuildsQueued, Message, errors
from kiln.webhooks import DuplicateDelivery, parse_push, repository_keys

router = APIRouter(prefix="/api/webhook", tags=["webhooks"])


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


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPException(400, "Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "Request body must be a JSON object")
    return payload


def _accepted(message: str, builds: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(status_code=202, content={"message": message, "builds": builds or []})


@router.post(
    "/github",
    response_model=None,
    responses={
        200: {"model": Message, "description": "A ping: `pong`"},
        202: {"model": BuildsQueued, "description": "Builds queued (or none, and why)"},
        **errors(400, 401, 413, 500, 503),
    },
)
async def github(
    request: Request,
    settings: SettingsDep,
    webhooks: WebhooksDep,
    builds: BuildsDep,
    workflows: WorkflowsDep,
) -> dict[str, Any] | JSONResponse:
    body = await read_body(request, settings.webhook_max_bytes)
    payload = parse_object(body)
    signature = request.headers.get("x-hub-signature-256", "")
    keys = repository_keys(payload)
    projects = await run_in_threadpool(webhooks.signed_projects, keys, body, signature)
    if not projects:
        raise HTTPException(401, "No valid signature for a project of this repository")
    event = request.headers.get("x-github-event", "")
    if event == "ping":
        return {"message": "pong"}
    if event != "push":
        return _accepted(f"Event '{event}' ignored")
    push = parse_push(payload)
    if push is None:  # a tag, a deletion: nothing to build
        return _accepted("Builds queued")
    targets = [project.id for project in projects if project.branch == push.branch]
    delivery = request.headers.get("x-github-delivery", "")[:100]
    try:
        records = await write_builds(
            lambda: webhooks.queue_push(delivery, push, targets),
            "Failed to insert the build records",
        )
        await start_builds(builds, workflows, records)
    except DuplicateDelivery:
        return _accepted("Delivery already processed")
    except NotQueued as exc:
        if delivery and not exc.started_any:
            # Nothing queued: forget the delivery, so GitHub's redelivery can try again.
            await run_in_threadpool(webhooks.forget, delivery)
        raise
    return _accepted("Builds queued", records)
