"""The GitHub webhook (docs/api.md, `POST /api/webhook/github`): size, then JSON, then the
signature (`sha256=` HMAC of the raw body with the project's `webhookSecret`), then the event.
A push to the project's branch queues one build at the pushed commit and starts its workflow;
a delivery id is acted on once."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from testbed.git_server import GitRepo
from tests.api.support import (
    NOT_QUEUED,
    WEBHOOK,
    WEBHOOK_MAX_BYTES,
    Api,
    FakeWorkflows,
    User,
    assert_error,
    push_payload,
    sign,
)
from tests.support.records import BUILD_KEYS

NO_SIGNATURE = "No valid signature for a project of this repository"
ZEROS = "0" * 40


@dataclass(frozen=True)
class Connected:
    owner: User
    repo: GitRepo
    project: dict[str, Any]

    @property
    def secret(self) -> str:
        secret: str = self.project["webhookSecret"]
        return secret


@pytest.fixture(scope="module")
async def connected(api: Api) -> Connected:
    """A project on its own repository, building `main`."""
    owner = await api.register()
    repo = api.repo()
    created = await api.create_project(owner, repo)
    api.workflows.reset()  # whichever test comes first sees only what it did
    return Connected(owner, repo, created["project"])


async def deliver(
    api: Api,
    body: bytes,
    *,
    secret: str | None,
    event: str | None = "push",
    delivery: str | None = None,
) -> httpx.Response:
    """POST `body` as GitHub would: signed with `secret` (None: no signature header)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    if event is not None:
        headers["X-GitHub-Event"] = event
    headers["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
    return await api.http.post(WEBHOOK, content=body, headers=headers)


def ping_body(connected: Connected) -> bytes:
    url = connected.repo.url
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1, "repository": {"clone_url": url}}
    return json.dumps(payload).encode()


def assert_accepted(response: httpx.Response, message: str) -> list[dict[str, Any]]:
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"message", "builds"}, body
    assert body["message"] == message
    builds: list[dict[str, Any]] = body["builds"]
    return builds


# --- ping and signatures --------------------------------------------------------------------


async def test_a_signed_ping_answers_200_pong(api: Api, connected: Connected) -> None:
    response = await deliver(api, ping_body(connected), secret=connected.secret, event="ping")

    assert response.status_code == 200, response.text
    assert response.json() == {"message": "pong"}


@pytest.mark.parametrize("signer", ["other-secret", "other-body"])
async def test_a_ping_signed_otherwise_is_401(api: Api, connected: Connected, signer: str) -> None:
    body = ping_body(connected)
    signature = {
        "other-secret": sign("0" * 64, body),
        "other-body": sign(connected.secret, body + b" "),
    }[signer]
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signature}

    response = await api.http.post(WEBHOOK, content=body, headers=headers)

    assert assert_error(response, 401) == NO_SIGNATURE


@pytest.mark.parametrize(
    "signature", [None, "", "sha1=abc", "sha256=not-hex", "upper-case"], ids=repr
)
async def test_a_ping_without_a_well_formed_signature_is_401(
    api: Api, connected: Connected, signature: str | None
) -> None:
    body = ping_body(connected)
    headers = {"X-GitHub-Event": "ping"}
    if signature == "upper-case":
        headers["X-Hub-Signature-256"] = "sha256=" + sign(connected.secret, body)[7:].upper()
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature

    response = await api.http.post(WEBHOOK, content=body, headers=headers)

    # docs/api.md gives NO_SIGNATURE for these too; the route now names the header instead.
    assert "signature" in assert_error(response, 401).lower()


async def test_a_delivery_for_a_repository_of_no_project_is_401(
    api: Api, connected: Connected, workflows: FakeWorkflows
) -> None:
    body = push_payload(
        f"{api.git.base_url}/unknown.git", ref="refs/heads/main", after=connected.repo.head()
    )

    response = await deliver(api, body, secret=connected.secret)

    assert assert_error(response, 401) == NO_SIGNATURE
    assert workflows.started == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b"\xff\xfe", "Request body is not valid JSON"),
        (b"", "Request body is not valid JSON"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"push"', "Request body must be a JSON object"),
    ],
    ids=["malformed", "not-utf8", "empty", "array", "string"],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    api: Api, connected: Connected, body: bytes, message: str
) -> None:
    # Signed or not: the body is read before the signature is checked.
    response = await deliver(api, body, secret=connected.secret)

    assert assert_error(response, 400) == message


# --- pushes ---------------------------------------------------------------------------------


async def test_a_push_to_the_projects_branch_queues_one_build_at_the_pushed_commit(
    api: Api, connected: Connected, workflows: FakeWorkflows
) -> None:
    sha = connected.repo.commit({"feature.txt": "on\n"}, "feat: add feature")
    body = push_payload(
        connected.repo.url,
        ref="refs/heads/main",
        after=sha,
        message="feat: add feature",
        author="Jane Pusher",
    )

    response = await deliver(api, body, secret=connected.secret)

    (build,) = assert_accepted(response, "Builds queued")
    assert set(build) == BUILD_KEYS
    assert build["status"] == "queued"
    assert (build["commitHash"], build["branch"]) == (sha, "main")
    assert (build["commit"], build["commitAuthor"]) == ("feat: add feature", "Jane Pusher")
    assert build["projectId"] == connected.project["id"]
    assert workflows.started == [build["id"]]
    fetched = await api.build(connected.owner, build["id"])
    assert {key: fetched[key] for key in BUILD_KEYS} == build


@pytest.mark.parametrize(
    "change",
    [
        {"ref": "refs/heads/other-branch"},
        {"ref": "refs/tags/v1.0"},
        {"deleted": True, "after": ZEROS},
        {"after": ZEROS},
        {"after": "ABC" * 13 + "A"},  # not lower-case hex
        {"ref": None},
    ],
    ids=["other-branch", "tag", "deletion", "zero-sha", "upper-case-sha", "no-ref"],
)
async def test_a_push_that_is_not_a_new_head_of_the_branch_queues_nothing(
    api: Api, connected: Connected, workflows: FakeWorkflows, change: dict[str, Any]
) -> None:
    builds_before = api.build_ids(connected.project["id"])
    payload = json.loads(
        push_payload(connected.repo.url, ref="refs/heads/main", after=connected.repo.head())
    )
    body = json.dumps(payload | change).encode()

    response = await deliver(api, body, secret=connected.secret)

    assert assert_accepted(response, "Builds queued") == []
    assert workflows.started == []
    assert api.build_ids(connected.project["id"]) == builds_before


@pytest.mark.parametrize("event", ["issues", "pull_request", None])
async def test_other_events_are_accepted_and_ignored(
    api: Api, connected: Connected, workflows: FakeWorkflows, event: str | None
) -> None:
    body = push_payload(connected.repo.url, ref="refs/heads/main", after=connected.repo.head())

    response = await deliver(api, body, secret=connected.secret, event=event)

    assert assert_accepted(response, f"Event '{event or ''}' ignored") == []
    assert workflows.started == []


async def test_the_same_delivery_twice_queues_one_build(
    api: Api, connected: Connected, workflows: FakeWorkflows
) -> None:
    body = push_payload(connected.repo.url, ref="refs/heads/main", after=connected.repo.head())
    delivery = str(uuid.uuid4())
    first = await deliver(api, body, secret=connected.secret, delivery=delivery)
    (build,) = assert_accepted(first, "Builds queued")
    builds_after_first = api.build_ids(connected.project["id"])

    again = await deliver(api, body, secret=connected.secret, delivery=delivery)

    assert assert_accepted(again, "Delivery already processed") == []
    assert workflows.started == [build["id"]]
    assert api.build_ids(connected.project["id"]) == builds_after_first


async def test_a_push_whose_workflow_cannot_start_is_503_and_its_redelivery_queues_it(
    api: Api, connected: Connected, workflows: FakeWorkflows
) -> None:
    body = push_payload(connected.repo.url, ref="refs/heads/main", after=connected.repo.head())
    delivery = str(uuid.uuid4())
    before = set(api.build_ids(connected.project["id"]))
    workflows.start_fails = True

    refused = await deliver(api, body, secret=connected.secret, delivery=delivery)

    assert assert_error(refused, 503) == NOT_QUEUED
    (failed_id,) = set(api.build_ids(connected.project["id"])) - before
    failed = await api.build(connected.owner, failed_id)
    assert (failed["status"], failed["exitCode"]) == ("failed", None)
    logs = await api.logs(connected.owner, failed_id)
    assert logs.splitlines()[-1] == "[kiln] the build could not be queued"
    # Nothing started, so the delivery was forgotten: GitHub's redelivery queues the build.
    workflows.start_fails = False
    redelivered = await deliver(api, body, secret=connected.secret, delivery=delivery)
    (build,) = assert_accepted(redelivered, "Builds queued")
    assert workflows.started == [build["id"]]


# --- size -----------------------------------------------------------------------------------


def oversized(connected: Connected) -> bytes:
    """A signed-looking push padded past the limit."""
    payload = json.loads(
        push_payload(connected.repo.url, ref="refs/heads/main", after=connected.repo.head())
    )
    return json.dumps(payload | {"padding": "x" * WEBHOOK_MAX_BYTES}).encode()


async def test_a_body_declared_over_the_limit_is_413(
    api: Api, connected: Connected, workflows: FakeWorkflows
) -> None:
    assert api.settings.webhook_max_bytes == WEBHOOK_MAX_BYTES
    body = oversized(connected)

    response = await deliver(api, body, secret=connected.secret)

    assert assert_error(response, 413) == f"Payload larger than {WEBHOOK_MAX_BYTES} bytes"
    assert workflows.started == []


async def test_a_streamed_body_over_the_limit_is_413(
    api: Api, connected: Connected, workflows: FakeWorkflows
) -> None:
    body = oversized(connected)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await api.http.post(
        WEBHOOK,
        content=chunks(),  # no Content-Length: sent chunked
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": sign(connected.secret, body),
        },
    )

    assert assert_error(response, 413) == f"Payload larger than {WEBHOOK_MAX_BYTES} bytes"
    assert workflows.started == []


async def test_a_body_at_the_limit_is_read(api: Api, connected: Connected) -> None:
    payload = {"repository": {"clone_url": connected.repo.url}, "padding": ""}
    base = len(json.dumps(payload).encode())
    payload["padding"] = "x" * (WEBHOOK_MAX_BYTES - base)
    body = json.dumps(payload).encode()
    assert len(body) == WEBHOOK_MAX_BYTES

    response = await deliver(api, body, secret=connected.secret, event="ping")

    assert response.status_code == 200, response.text
