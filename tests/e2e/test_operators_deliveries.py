"""Webhook deliveries as the operator reads them, on the whole system and on each database:
`GET /api/project/projects/{projectId}/deliveries` lists the project's newest 50 signed
deliveries, newest first, each `queued` (with the builds it queued, which then run), `ignored`
(and why) or `duplicate`. GitHub's own payloads and headers (tests/fixtures/github/)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from kiln.models import DeliveryLog
from testbed.stack import Stack
from tests.support import github
from tests.support.connected import Connected, connect, new_repo
from tests.support.github import NO_COMMIT, encode
from tests.support.helpers import assert_error

SHARED = "/api/webhook/github"
PROJECTS = "/api/project/projects"
DELIVERY_KEYS = {"deliveryId", "event", "receivedAt", "result", "reason", "builds"}


async def connected(stack: Stack) -> Connected:
    """A new user's project on a new repository, its first build finished."""
    return await connect(stack, new_repo(stack, "deliveries"))


async def deliver(
    stack: Stack,
    target: Connected,
    event: str,
    payload: Any,
    *,
    delivery: str | None = None,
    own_url: bool = False,
    http: httpx.AsyncClient | None = None,
) -> httpx.Response:
    body = encode(payload)
    headers = github.headers(event, body, target.secret, delivery)
    url = f"{SHARED}/{target.id}" if own_url else SHARED
    return await (http or stack.http).post(url, content=body, headers=headers)


def push(target: Connected, ref: str, after: str, before: str | None = None) -> dict[str, Any]:
    return github.payload(
        "push", target.html_url, ref=ref, before=before or target.repo.head(), after=after,
        message="a change", author="Grace Hopper",
    )  # fmt: skip


async def listed(stack: Stack, target: Connected) -> list[dict[str, Any]]:
    url = f"{PROJECTS}/{target.id}/deliveries"
    response = await stack.http.get(url, headers=target.user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Deliveries fetched"
    entries: list[dict[str, Any]] = body["deliveries"]
    assert all(set(entry) == DELIVERY_KEYS for entry in entries), entries
    return entries


def logged_rows(stack: Stack, project_id: int) -> int:
    query = select(func.count()).select_from(DeliveryLog)
    with stack.sessions() as session:
        return session.scalar(query.where(DeliveryLog.project_id == project_id)) or 0


async def test_each_signed_delivery_is_listed_with_what_it_did_and_the_queued_build_runs(
    stack: Stack,
) -> None:
    target = await connected(stack)
    sha = target.repo.commit({"app.txt": "v2\n"}, "a change", author="Grace Hopper")

    answers = [
        await deliver(stack, target, "ping", github.payload("ping", target.html_url),
                      delivery="d-ping"),
        await deliver(stack, target, "push", push(target, "refs/heads/main", sha),
                      delivery="d-main"),
        await deliver(stack, target, "push", push(target, "refs/heads/main", sha),
                      delivery="d-main"),
        await deliver(stack, target, "push", push(target, "refs/heads/feature", sha),
                      delivery="d-feature"),
        await deliver(stack, target, "push", push(target, "refs/tags/v2", sha),
                      delivery="d-tag"),
        await deliver(stack, target, "push", push(target, "refs/heads/gone", NO_COMMIT, sha)
                      | {"deleted": True}, delivery="d-deleted"),
        await deliver(stack, target, "push", push(target, "refs/heads/main", sha),
                      delivery="d-own", own_url=True),
    ]  # fmt: skip

    assert [a.status_code for a in answers] == [200, 202, 202, 202, 202, 202, 202]
    [build] = answers[1].json()["builds"]
    entries = await listed(stack, target)
    assert [(e["deliveryId"], e["event"], e["result"], e["builds"]) for e in entries] == [
        ("d-own", "push", "duplicate", []),  # the same signed body, on the project's own URL
        ("d-deleted", "push", "ignored", []),
        ("d-tag", "push", "ignored", []),
        ("d-feature", "push", "ignored", []),
        ("d-main", "push", "duplicate", []),
        ("d-main", "push", "queued", [build["id"]]),
        ("d-ping", "ping", "ignored", []),
    ]
    reasons = {e["deliveryId"]: e["reason"] for e in entries if e["result"] != "queued"}
    assert "same signed body" in reasons["d-own"]
    assert "deleted" in reasons["d-deleted"] and "'gone'" in reasons["d-deleted"]
    assert "tag" in reasons["d-tag"] and "'v2'" in reasons["d-tag"]
    assert "'feature'" in reasons["d-feature"] and "'main'" in reasons["d-feature"]
    assert "redelivery" in reasons["d-main"]
    assert "ping" in reasons["d-ping"]
    assert entries[-2]["reason"] is None
    final = await stack.wait_final(target.user, build["id"])
    assert (final["status"], final["commitHash"]) == ("passed", sha)
    assert "v2" in await stack.logs(target.user, build["id"])


async def test_concurrent_redeliveries_are_listed_once_queued_and_otherwise_duplicate(
    stack: Stack,
) -> None:
    target = await connected(stack)
    sha = target.repo.commit({"app.txt": "v3\n"}, "a change", author="Grace Hopper")
    payload = push(target, "refs/heads/main", sha)

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as http:
        answers = await asyncio.gather(
            *(deliver(stack, target, "push", payload, delivery="d-burst", http=http)
              for _ in range(8))
        )  # fmt: skip

    assert all(answer.status_code == 202 for answer in answers), [a.text for a in answers]
    queued = [build for answer in answers for build in answer.json()["builds"]]
    assert len(queued) == 1
    entries = await listed(stack, target)
    assert sorted(e["result"] for e in entries) == ["duplicate"] * 7 + ["queued"]
    assert [e["builds"] for e in entries if e["result"] == "queued"] == [[queued[0]["id"]]]
    await stack.wait_final(target.user, queued[0]["id"])


async def test_only_the_newest_50_deliveries_of_a_project_are_kept(stack: Stack) -> None:
    target = await connected(stack)
    other = await connected(stack)
    await deliver(stack, other, "ping", github.payload("ping", other.html_url), delivery="keep")
    run = uuid.uuid4().hex[:6]

    for number in range(53):
        payload = push(target, "refs/heads/elsewhere", target.repo.head())
        response = await deliver(stack, target, "push", payload, delivery=f"{run}-{number}")
        assert response.status_code == 202, response.text

    entries = await listed(stack, target)
    assert [e["deliveryId"] for e in entries] == [f"{run}-{n}" for n in range(52, 2, -1)]
    assert logged_rows(stack, target.id) == 50
    # Another project's deliveries are its own, and untouched.
    assert [e["deliveryId"] for e in await listed(stack, other)] == ["keep"]
    stranger = await stack.register()
    response = await stack.http.get(f"{PROJECTS}/{target.id}/deliveries", headers=stranger.headers)
    assert_error(response, 403)
