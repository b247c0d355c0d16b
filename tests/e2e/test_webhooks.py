"""GitHub push webhooks: `POST /api/webhook/github`, signed per project, deduplicated per delivery.

Deliveries are GitHub's: headers as GitHub sends them, payloads from tests/fixtures/github/ (as
documented for the `push` and `ping` events, filled in by `tests.support.github`), signed with
`X-Hub-Signature-256` exactly as GitHub signs them. Matching a delivery to
projects is observable without running a build through `ping` (200 when a project of the
repository is signed for, 401 otherwise), so only the tests about queueing run real builds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kiln.models import WebhookDelivery
from testbed.stack import Stack, running_api
from tests.support import github
from tests.support.connected import Connected, connect
from tests.support.github import NO_COMMIT, encode, html_url_of, sign
from tests.support.helpers import assert_error, count_builds, repo_name

WEBHOOK = "/api/webhook/github"


# --- Kiln's side: deliveries, records and rows ----------------------------------------------


async def deliver(
    stack: Stack,
    event: str,
    payload: Any,
    secret: str | None,
    *,
    delivery: str | None = None,
    http: httpx.AsyncClient | None = None,
) -> httpx.Response:
    body = encode(payload)
    headers = github.headers(event, body, secret, delivery)
    return await (http or stack.http).post(WEBHOOK, content=body, headers=headers)


def assert_nothing_queued(response: httpx.Response, case: str = "") -> None:
    assert response.status_code == 202, f"{case}: {response.status_code}: {response.text}"
    body = response.json()
    assert isinstance(body.get("message"), str) and body["message"], (case, body)
    assert body.get("builds") == [], (case, body)


def delivery_recorded(stack: Stack, delivery: str) -> bool:
    with stack.sessions() as session:
        return session.get(WebhookDelivery, delivery) is not None


@pytest.fixture(scope="module")
async def shared(stack: Stack) -> AsyncIterator[Connected]:
    """One connected project for the checks that queue nothing, or wait for what they queue."""
    repo = stack.git.create_repo(repo_name("hook"))
    repo.commit({"app.txt": "shared v1\n"}, "first commit", author="Ada Lovelace")
    yield await connect(stack, repo)


async def push_commit(
    stack: Stack, target: Connected, content: str, message: str, author: str
) -> tuple[str, str, dict[str, Any]]:
    """Push a commit changing app.txt to the project's branch; GitHub's payload for that push."""
    before = target.repo.head()
    sha = target.repo.commit({"app.txt": content}, message, author=author)
    payload = github.payload(
        "push",
        target.html_url,
        ref="refs/heads/main",
        before=before,
        after=sha,
        message=message,
        author=author,
    )
    return before, sha, payload


# --- ping and signatures --------------------------------------------------------------------


async def test_a_signed_ping_answers_200(stack: Stack, shared: Connected) -> None:
    response = await deliver(stack, "ping", github.payload("ping", shared.html_url), shared.secret)

    assert response.status_code == 200, response.text
    assert isinstance(response.json()["message"], str)


async def test_an_unsigned_or_wrongly_signed_ping_is_401(stack: Stack, shared: Connected) -> None:
    payload = github.payload("ping", shared.html_url)

    assert_error(await deliver(stack, "ping", payload, None), 401)
    assert_error(await deliver(stack, "ping", payload, "not-the-secret"), 401)


@pytest.mark.parametrize(
    "variant", ["clone_url", "html_url", "html_url_trailing_slash", "upper_case_scheme"]
)
async def test_the_repository_is_matched_by_clone_url_or_html_url(
    stack: Stack, shared: Connected, variant: str
) -> None:
    """Either URL identifies the repository: without `.git`, and whatever the host's case."""
    unrelated = "https://github.com/someone-else/fork-of-app.git"
    html_url, clone_url = {
        "clone_url": ("https://github.com/someone-else/fork-of-app", shared.repo.url),
        "html_url": (shared.html_url, unrelated),
        "html_url_trailing_slash": (shared.html_url + "/", unrelated),
        "upper_case_scheme": (
            shared.html_url.replace("http://", "HTTP://"),
            shared.repo.url.replace("http://", "HTTP://"),
        ),
    }[variant]

    response = await deliver(
        stack, "ping", github.payload("ping", html_url, clone_url=clone_url), shared.secret
    )

    assert response.status_code == 200, f"{variant}: {response.text}"


async def test_a_repository_on_a_host_in_another_case_matches(stack: Stack) -> None:
    """Project on `http://localhost:PORT/...`; GitHub says `http://LOCALHOST:PORT/...`."""
    repo = stack.git.create_repo(repo_name("hook"))
    repo.commit({"app.txt": "local\n"}, "first commit")
    local_url = repo.url.replace("127.0.0.1", "localhost")
    target = await connect(stack, repo, local_url)
    shouted = html_url_of(local_url).replace("localhost", "LOCALHOST")

    ping = github.payload("ping", shouted)
    assert (await deliver(stack, "ping", ping, target.secret)).status_code == 200
    # Only the host is case-insensitive: another path is another repository.
    other_path = github.payload("ping", shouted.upper().replace("HTTP://", "http://"))
    assert_error(await deliver(stack, "ping", other_path, target.secret), 401)

    # And a push named that way queues the build.
    before = repo.head()
    sha = repo.commit({"app.txt": "pushed to localhost\n"}, "local push", author="Grace Hopper")
    payload = github.payload(
        "push", shouted, ref="refs/heads/main", before=before, after=sha, message="local push",
        author="Grace Hopper",
    )  # fmt: skip
    response = await deliver(stack, "push", payload, target.secret)

    assert response.status_code == 202, response.text
    [build] = response.json()["builds"]
    assert build["projectId"] == target.id and build["commitHash"] == sha
    final = await stack.wait_final(target.user, build["id"])
    assert final["status"] == "passed"
    assert "pushed to localhost" in await stack.logs(target.user, build["id"])


async def test_a_push_for_a_repository_of_no_project_is_401(
    stack: Stack, shared: Connected
) -> None:
    stranger = html_url_of(stack.git.create_repo(repo_name("hook")).url)
    before = count_builds(stack)
    payload = github.payload(
        "push",
        stranger,
        ref="refs/heads/main",
        before=NO_COMMIT,
        after="a" * 40,
        message="m",
        author="a",
    )

    # Signed with a real project's secret, but that project is on another repository.
    assert_error(await deliver(stack, "push", payload, shared.secret), 401)
    assert count_builds(stack) == before


async def test_bad_signatures_are_401_and_create_nothing(stack: Stack, shared: Connected) -> None:
    _, sha, payload = await push_commit(stack, shared, "signed v2\n", "v2", "Ada Lovelace")
    body = encode(payload)
    delivery = str(uuid.uuid4())
    headers = github.headers("push", body, None, delivery)
    good = sign(shared.secret, body)
    other_body = encode(payload | {"after": "b" * 40})
    builds_before = count_builds(stack)

    signatures = {
        "missing": None,
        "empty": "",
        "wrong secret": sign(uuid.uuid4().hex, body),
        "other body": sign(shared.secret, other_body),
        "no algorithm prefix": good.removeprefix("sha256="),
        "sha1": "sha1=" + hmac.new(shared.secret.encode(), body, hashlib.sha1).hexdigest(),
        "truncated": good[:-1],
        "secret as signature": shared.secret,
    }
    for name, signature in signatures.items():
        sent = headers if signature is None else headers | {"X-Hub-Signature-256": signature}
        response = await stack.http.post(WEBHOOK, content=body, headers=sent)
        assert_error(response, 401, name)
        assert count_builds(stack) == builds_before, name
    # GitHub's legacy SHA-1 header alone is not enough either.
    legacy = headers | {"X-Hub-Signature": signatures["sha1"] or ""}
    assert_error(await stack.http.post(WEBHOOK, content=body, headers=legacy), 401)
    # A body changed after signing is refused.
    tampered = await stack.http.post(
        WEBHOOK, content=other_body, headers=headers | {"X-Hub-Signature-256": good}
    )
    assert_error(tampered, 401)
    assert count_builds(stack) == builds_before
    # Refused deliveries are not remembered: the genuine one with that id still builds.
    assert not delivery_recorded(stack, delivery)

    genuine = await stack.http.post(
        WEBHOOK, content=body, headers=headers | {"X-Hub-Signature-256": good}
    )

    assert genuine.status_code == 202, genuine.text
    [build] = genuine.json()["builds"]
    assert build["commitHash"] == sha
    assert count_builds(stack) == builds_before + 1
    assert (await stack.wait_final(shared.user, build["id"]))["status"] == "passed"


# --- push: what queues a build, and what does not -------------------------------------------


async def test_a_push_to_the_connected_branch_builds_the_pushed_commit(stack: Stack) -> None:
    repo = stack.git.create_repo(repo_name("hook"))
    repo.commit({"app.txt": "version one\n"}, "first commit")
    target = await connect(stack, repo)
    message = "Render the dashboard\n\nA longer body, as GitHub sends the full message."
    _, sha, payload = await push_commit(
        stack, target, "version two from the push\n", message, "Grace Hopper"
    )
    delivery = str(uuid.uuid4())

    response = await deliver(stack, "push", payload, target.secret, delivery=delivery)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == "Builds queued"
    [queued] = body["builds"]
    # Straight from the payload: known before the worker has checked anything out.
    assert queued["projectId"] == target.id
    assert queued["status"] == "queued"
    assert queued["commitHash"] == sha
    assert queued["commit"] == message
    assert queued["commitAuthor"] == "Grace Hopper"
    assert queued["branch"] == "main"
    assert count_builds(stack, target.id) == 2
    assert delivery_recorded(stack, delivery)

    final = await stack.wait_final(target.user, queued["id"])
    assert final["status"] == "passed", final
    assert final["commitHash"] == sha
    assert final["commit"] == message
    assert final["commitAuthor"] == "Grace Hopper"
    assert final["branch"] == "main"
    logs = await stack.logs(target.user, queued["id"])
    assert "version two from the push" in logs and "version one" not in logs


async def test_a_push_builds_the_payloads_commit_not_the_branch_head(stack: Stack) -> None:
    """Two quick pushes: the first delivery builds the first commit, though main moved on."""
    repo = stack.git.create_repo(repo_name("hook"))
    repo.commit({"app.txt": "base\n"}, "first commit")
    target = await connect(stack, repo)
    _, first, payload = await push_commit(stack, target, "first push\n", "first", "Ada Lovelace")
    repo.commit({"app.txt": "second push\n"}, "second", author="Ada Lovelace")

    response = await deliver(stack, "push", payload, target.secret)

    assert response.status_code == 202, response.text
    [queued] = response.json()["builds"]
    assert queued["commitHash"] == first
    assert (await stack.wait_final(target.user, queued["id"]))["status"] == "passed"
    logs = await stack.logs(target.user, queued["id"])
    assert "first push" in logs and "second push" not in logs


async def test_pushes_that_are_not_a_new_head_of_the_branch_queue_nothing(
    stack: Stack, shared: Connected
) -> None:
    repo, html_url = shared.repo, shared.html_url
    head = repo.head()
    feature = repo.commit({"app.txt": "feature\n"}, "feature work", branch="feature")
    from_main = {"base_ref": "refs/heads/main"}
    cases = {
        "other branch": github.payload(
            "branch_create", html_url, ref="refs/heads/feature", after=feature,
            message="feature work", author="Ada",
        ),
        "branch named like the connected one": github.payload(
            "branch_create", html_url, ref="refs/heads/main-next", after=head, message="x",
            author="Ada",
        ) | from_main,
        "tag": github.payload(
            "tag_push", html_url, ref="refs/tags/v1.0.0", after=head, message="x", author="Ada",
        ) | from_main,
        "tag named like the branch": github.payload(
            "tag_push", html_url, ref="refs/tags/main", after=head, message="x", author="Ada",
        ),
        "deletion of the connected branch": github.payload(
            "branch_delete", html_url, ref="refs/heads/main", before=head
        ),
        "deletion of another branch": github.payload(
            "branch_delete", html_url, ref="refs/heads/feature", before=feature
        ),
    }  # fmt: skip
    before = count_builds(stack)

    for name, payload in cases.items():
        response = await deliver(stack, "push", payload, shared.secret)
        assert_nothing_queued(response, name)
        assert response.json()["message"] == "Builds queued", name
        assert count_builds(stack) == before, name


@pytest.mark.parametrize("event", ["issues", "pull_request", "create", "delete", "star"])
async def test_other_events_are_accepted_and_ignored(
    stack: Stack, shared: Connected, event: str
) -> None:
    # Even a body that reads like a push to the connected branch: the event header decides.
    payload = github.payload(
        "push", shared.html_url, ref="refs/heads/main", before=NO_COMMIT,
        after=shared.repo.head(), message="x", author="Ada",
    ) | {"action": "opened"}  # fmt: skip
    before = count_builds(stack)

    response = await deliver(stack, event, payload, shared.secret)

    assert_nothing_queued(response)
    assert count_builds(stack) == before


async def test_a_delivery_signed_by_one_project_builds_only_that_project(stack: Stack) -> None:
    repo = stack.git.create_repo(repo_name("hook"))
    repo.commit({"app.txt": "shared repository\n"}, "first commit")
    alice = await connect(stack, repo)
    bob = await connect(stack, repo)
    assert alice.secret != bob.secret and alice.user.id != bob.user.id
    _, sha, payload = await push_commit(stack, alice, "for alice\n", "alice's push", "Alice")

    response = await deliver(stack, "push", payload, alice.secret)

    assert response.status_code == 202, response.text
    [queued] = response.json()["builds"]
    assert queued["projectId"] == alice.id and queued["commitHash"] == sha
    assert count_builds(stack, alice.id) == 2
    assert count_builds(stack, bob.id) == 1
    assert (await stack.wait_final(alice.user, queued["id"]))["status"] == "passed"
    # Bob's own hook on the same repository gets its own delivery, signed with his secret.
    response = await deliver(stack, "push", payload, bob.secret)
    assert response.status_code == 202, response.text
    [queued] = response.json()["builds"]
    assert queued["projectId"] == bob.id
    assert count_builds(stack, alice.id) == 2 and count_builds(stack, bob.id) == 2
    assert (await stack.wait_final(bob.user, queued["id"]))["status"] == "passed"


# --- redelivery -----------------------------------------------------------------------------


async def test_concurrent_redeliveries_queue_one_build(stack: Stack, shared: Connected) -> None:
    _, sha, payload = await push_commit(stack, shared, "once\n", "build me once", "Ada Lovelace")
    body = encode(payload)
    headers = github.headers("push", body, shared.secret)
    delivery = headers["X-GitHub-Delivery"]
    before = count_builds(stack, shared.id)

    responses = await asyncio.gather(
        *(stack.http.post(WEBHOOK, content=body, headers=headers) for _ in range(5))
    )

    assert [r.status_code for r in responses] == [202] * 5, [r.text for r in responses]
    queued = [build for r in responses for build in r.json()["builds"]]
    assert len(queued) == 1, [r.json() for r in responses]
    assert queued[0]["commitHash"] == sha
    assert count_builds(stack, shared.id) == before + 1
    assert delivery_recorded(stack, delivery)

    # Redelivered later, to a freshly started API on the same database: still nothing new.
    async with running_api(stack.settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            again = await http.post(WEBHOOK, content=body, headers=headers)
    assert_nothing_queued(again)
    assert count_builds(stack, shared.id) == before + 1
    assert (await stack.wait_final(shared.user, queued[0]["id"]))["status"] == "passed"


async def test_a_redelivery_of_a_push_that_queued_nothing_stays_harmless(
    stack: Stack, shared: Connected
) -> None:
    payload = github.payload(
        "tag_push", shared.html_url, ref="refs/tags/v2", after=shared.repo.head(), message="x",
        author="Ada",
    )  # fmt: skip
    delivery = str(uuid.uuid4())
    before = count_builds(stack)

    for _ in range(2):
        assert_nothing_queued(
            await deliver(stack, "push", payload, shared.secret, delivery=delivery)
        )
    assert count_builds(stack) == before


# --- malformed and oversized bodies ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"ref": "refs/heads/main", ', b"", b"not json", b"\xff\xfe{}", b"[]", b'"push"', b"42"],
    ids=["truncated", "empty", "text", "not utf-8", "array", "string", "number"],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    stack: Stack, shared: Connected, body: bytes
) -> None:
    before = count_builds(stack)
    headers = github.headers("push", body, shared.secret)

    assert_error(await stack.http.post(WEBHOOK, content=body, headers=headers), 400)
    assert count_builds(stack) == before


BROKEN_URLS = {
    "non-numeric port": "http://127.0.0.1:notaport/app",
    "port out of range": "http://127.0.0.1:99999/app",
    "unclosed IPv6 bracket": "http://[::1/app",
}


@pytest.mark.parametrize("broken", BROKEN_URLS.values(), ids=BROKEN_URLS.keys())
async def test_a_repository_url_that_does_not_parse_is_not_a_server_error(
    stack: Stack, shared: Connected, broken: str
) -> None:
    """GitHub never sends these, but anyone may: such a URL names no project's repository."""
    only_broken = github.payload("ping", shared.html_url) | {
        "repository": github.payload("ping", broken, clone_url=f"{broken}.git")["repository"]
    }
    response = await deliver(stack, "ping", only_broken, shared.secret)
    # No project of that repository signed it (401); calling it malformed (400) is fine too.
    assert response.status_code in (400, 401), f"{response.status_code}: {response.text}"
    assert_error(response, response.status_code)

    # The other URL still names the project's repository: the delivery is the project's.
    one_broken = github.payload("ping", broken, clone_url=shared.repo.url)
    assert (await deliver(stack, "ping", one_broken, shared.secret)).status_code == 200


async def test_a_body_over_the_limit_is_413(stack: Stack, shared: Connected) -> None:
    limit = stack.settings.webhook_max_bytes
    payload = github.payload("ping", shared.html_url)
    padding = limit - len(encode(payload | {"zen": ""}))
    at_limit = encode(payload | {"zen": "z" * padding})
    over_limit = encode(payload | {"zen": "z" * (padding + 1)})
    assert len(at_limit) == limit and len(over_limit) == limit + 1
    before = count_builds(stack)

    # Exactly at the limit is still read (and, being a signed ping, answered).
    response = await stack.http.post(
        WEBHOOK, content=at_limit, headers=github.headers("ping", at_limit, shared.secret)
    )
    assert response.status_code == 200, response.text[:500]

    # One byte more is refused, whether the length is declared up front…
    response = await stack.http.post(
        WEBHOOK, content=over_limit, headers=github.headers("ping", over_limit, shared.secret)
    )
    assert_error(response, 413)

    # …or the body arrives chunked, with no length to go by.
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(over_limit), 1 << 20):
            yield over_limit[start : start + (1 << 20)]

    response = await stack.http.post(
        WEBHOOK, content=chunks(), headers=github.headers("ping", over_limit, shared.secret)
    )
    assert_error(response, 413)
    assert count_builds(stack) == before
