"""GitHub push webhooks: a signed push to a connected branch queues one build per project.

What a delivery means (signatures, push rules, dedupe) is `kiln.webhooks`; this route reads the
request and answers. In order, each step before anything costlier: a delivery without a
well-formed signature header is refused before its body is read (401); the body is read up to
`KILN_WEBHOOK_MAX_BYTES` (413); the signature is checked over the raw bytes (401); only then is
the body parsed, in a thread (400 for anything but a JSON object, nesting too deep included).
A push counts against its owner's queued-build limit: when no project it is for has room, it
is a 429 (and a redelivery may queue it later).

Every signed delivery is logged for each project it was signed for (queued, ignored and why, or
a duplicate); its owner reads the project's newest 50 at `GET
/api/project/projects/{projectId}/deliveries`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import BuildsDep, CurrentUser, ProjectId, SettingsDep, WebhooksDep, WorkflowsDep
from api.errors import NotQueued
from api.queueing import start_builds, write_builds
from api.schemas import BuildsQueued, Message, errors
from kiln.contracts import Trigger
from kiln.models import DeliveryResult
from kiln.webhooks import (
    OTHER_REPOSITORY,
    Delivery,
    DuplicateDelivery,
    InvalidPayload,
    Outcome,
    SignedProject,
    WebhookService,
    body_digest,
    decode_payload,
    event_ignored,
    parse_push,
    push_ignored,
    raw_repository_keys,
    repository_keys,
    well_formed_signature,
)
from workflows.client import Workflows

router = APIRouter(prefix="/api/webhook", tags=["webhooks"])
# The most of an unverified body the shared URL parses (to answer malformed JSON with a 400).
UNVERIFIED_PARSE_BYTES = 64 * 1024
NOT_SIGNED = "No valid signature for a project of this repository"
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Message, "description": "A ping: `pong`"},
    202: {"model": BuildsQueued, "description": "Builds queued (or none, and why)"},
    **errors(400, 401, 413, 429, 500, 503),
}


def signature_of(request: Request) -> str:
    """The `X-Hub-Signature-256` header; 401 at once (the body unread) unless well formed."""
    signature = request.headers.get("x-hub-signature-256", "")
    if not well_formed_signature(signature):
        raise HTTPException(401, "Missing or malformed X-Hub-Signature-256 header")
    return signature


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


async def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object, parsed off the event loop; 400 for anything else."""
    try:
        return await run_in_threadpool(decode_payload, body)
    except InvalidPayload as exc:
        raise HTTPException(400, str(exc)) from None


def _accepted(message: str, builds: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(status_code=202, content={"message": message, "builds": builds or []})


@router.post("/github", response_model=None, responses=RESPONSES)
async def github(
    request: Request,
    settings: SettingsDep,
    webhooks: WebhooksDep,
    builds: BuildsDep,
    workflows: WorkflowsDep,
) -> dict[str, Any] | JSONResponse:
    """The shared URL, for hooks set up before per-project URLs: the delivery is matched to the
    repository's projects (at most 20, the oldest first) by their secrets.

    The repository is found in the raw bytes first, so a genuine delivery is verified before it
    is parsed. Only a small body (up to UNVERIFIED_PARSE_BYTES) that matched nothing is parsed
    unverified: to tell malformed JSON (400) from a bad signature (401), and to read a
    repository the raw scan could not."""
    signature = signature_of(request)
    body = await read_body(request, settings.webhook_max_bytes)
    scanned = await run_in_threadpool(raw_repository_keys, body)
    signers = await run_in_threadpool(webhooks.signed_projects, scanned, body, signature)
    if not signers and len(body) > UNVERIFIED_PARSE_BYTES:
        raise HTTPException(401, NOT_SIGNED)
    payload = await parse_object(body)
    keys = repository_keys(payload)
    if signers:  # the raw scan finds URLs anywhere in the body: the repository must be theirs
        elsewhere = [project for project in signers if project.repo_key not in keys]
        await _ignore(request, body, elsewhere, OTHER_REPOSITORY, webhooks)
        signers = [project for project in signers if project.repo_key in keys]
    elif keys - scanned:  # a repository the scan could not read (escaped characters)
        signers = await run_in_threadpool(webhooks.signed_projects, keys - scanned, body, signature)
    if not signers:
        raise HTTPException(401, NOT_SIGNED)
    return await _act(request, payload, body, signers, webhooks, builds, workflows)


@router.post("/github/{projectId}", response_model=None, responses=RESPONSES)
async def github_project(
    project_id: ProjectId,
    request: Request,
    settings: SettingsDep,
    webhooks: WebhooksDep,
    builds: BuildsDep,
    workflows: WorkflowsDep,
) -> dict[str, Any] | JSONResponse:
    """A project's own URL: the delivery is checked against that project's secret only."""
    signature = signature_of(request)
    body = await read_body(request, settings.webhook_max_bytes)
    signer = await run_in_threadpool(webhooks.signed_project, project_id, body, signature)
    if signer is None:
        raise HTTPException(401, "No valid signature for this project")
    payload = await parse_object(body)
    if request.headers.get("x-github-event", "") == "push" and (
        signer.repo_key not in repository_keys(payload)
    ):
        await _ignore(request, body, [signer], OTHER_REPOSITORY, webhooks)
        return _accepted("Delivery is for another repository")
    return await _act(request, payload, body, [signer], webhooks, builds, workflows)


def _delivery(request: Request, body: bytes) -> Delivery:
    return Delivery(
        delivery_id=request.headers.get("x-github-delivery", "")[:100],
        event=request.headers.get("x-github-event", "")[:100],
        digest=body_digest(body),
    )


async def _ignore(
    request: Request,
    body: bytes,
    signers: list[SignedProject],
    reason: str,
    webhooks: WebhookService,
) -> None:
    """Log, for each signer, that the delivery was ignored and why."""
    outcomes = [Outcome(project.id, DeliveryResult.IGNORED, reason) for project in signers]
    await run_in_threadpool(webhooks.record, _delivery(request, body), outcomes)


async def _act(
    request: Request,
    payload: dict[str, Any],
    body: bytes,
    signers: list[SignedProject],
    webhooks: WebhookService,
    builds: BuildsDep,
    workflows: Workflows,
) -> dict[str, Any] | JSONResponse:
    """What a genuine delivery asks: pong, nothing, or one build per signer on the branch."""
    delivery = _delivery(request, body)
    if delivery.event != "push":
        await _ignore(request, body, signers, event_ignored(delivery.event), webhooks)
        if delivery.event == "ping":
            return {"message": "pong"}
        return _accepted(f"Event '{delivery.event}' ignored")
    push = parse_push(payload)
    if push is None:  # a tag, a deletion: nothing to build
        await _ignore(request, body, signers, push_ignored(payload), webhooks)
        return _accepted("Builds queued")
    targets = [project.id for project in signers if project.branch == push.branch]
    try:
        records = await write_builds(
            lambda: webhooks.queue_push(delivery, push, signers),
            "Failed to insert the build records",
        )
        await start_builds(builds, workflows, records, Trigger.PUSH)
    except DuplicateDelivery:
        return _accepted("Delivery already processed")
    except NotQueued as exc:
        if not exc.started_any:
            # Nothing queued: forget the delivery, so GitHub's redelivery can try again.
            await run_in_threadpool(webhooks.forget, delivery, targets)
        raise
    return _accepted("Builds queued", records)


# --- the delivery log, for the project's owner ---------------------------------------------


class DeliveryRecord(BaseModel):
    """A signed delivery and what it did for the project."""

    deliveryId: str | None = Field(description="GitHub's X-GitHub-Delivery, if sent")  # noqa: N815
    event: str = Field(description="GitHub's X-GitHub-Event (`push`, `ping`, ...)")
    receivedAt: str = Field(description="ISO 8601 UTC with milliseconds")  # noqa: N815
    result: DeliveryResult
    reason: str | None = Field(description="Why nothing was queued (null when queued)")
    builds: list[int] = Field(description="The ids of the builds it queued")


class DeliveriesFetched(BaseModel):
    message: str
    deliveries: list[DeliveryRecord]


# Under /api/project (a project's resource), beside the webhook it logs. Its routes join this
# module's `router` (below), which api/main.py already includes; its prefix stays the webhook's.
deliveries = APIRouter(prefix="/api/project", tags=["webhooks"])


@deliveries.get(
    "/projects/{projectId}/deliveries",
    response_model=DeliveriesFetched,
    responses=errors(400, 401, 403, 404),
)
def project_deliveries(
    project_id: ProjectId, user: CurrentUser, webhooks: WebhooksDep
) -> dict[str, Any]:
    """The project's newest 50 signature-verified webhook deliveries, newest first: `queued`
    (with the builds), `ignored` (and why: another branch, a tag, a deletion, another event),
    or `duplicate` (a redelivery, or the same signed body again)."""
    return {
        "message": "Deliveries fetched",
        "deliveries": webhooks.deliveries(user.id, project_id),
    }


router.routes.extend(deliveries.routes)
