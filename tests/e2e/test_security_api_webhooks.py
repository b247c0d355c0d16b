"""Abuse of the GitHub webhook: unsigned bodies, parsing bombs, work per delivery, and replays.

- A delivery without a well-formed `X-Hub-Signature-256` is refused before its body is read, and
  no body is parsed before its signature is checked over the raw bytes; JSON nested too deep
  for the parser is a 400.
- Each project has its own URL, `/api/webhook/github/{projectId}`: one HMAC, with that
  project's secret. The shared `/api/webhook/github` checks at most 20 projects of a repository
  (the oldest first).
- A delivery is acted on once per project and signed body, whatever its `X-GitHub-Delivery`
  says (a captured delivery replayed under a new or no id queues nothing); these records are
  kept 7 days and pruned as new ones come.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

import kiln.webhooks
from kiln.git import repo_key
from kiln.models import Project, WebhookDelivery, WebhookPayload, new_webhook_secret, utcnow
from testbed.stack import Stack, User
from tests.support import github
from tests.support.connected import Connected, connect, new_repo
from tests.support.github import encode, html_url_of, sign
from tests.support.helpers import assert_error, count_builds, repo_name

SHARED = "/api/webhook/github"
MIB = 1 << 20


def own_url(project_id: int) -> str:
    return f"{SHARED}/{project_id}"


async def connected(stack: Stack) -> Connected:
    """A new user's project on a new repository, its first build finished."""
    return await connect(stack, new_repo(stack, "hook-abuse", author="Ada"))


@pytest.fixture(scope="module")
async def target(stack: Stack) -> AsyncIterator[Connected]:
    yield await connected(stack)


async def post(
    stack: Stack,
    url: str,
    body: bytes,
    *,
    event: str = "push",
    secret: str | None = None,
    signature: str | None = None,
    delivery: str | None = None,
) -> httpx.Response:
    headers = github.headers(event, body, secret, delivery)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await stack.http.post(url, content=body, headers=headers)


async def raw_head(stack: Stack, head: str) -> bytes:
    """Send only a request head (no body) and read the answer's status line and headers."""
    port = int(stack.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        except TimeoutError:
            raise AssertionError("the API waited for the body instead of answering") from None
    finally:
        writer.close()


# --- a signature before anything else ---------------------------------------------------------


@pytest.mark.parametrize("url", ["shared", "own"])
@pytest.mark.parametrize("signature", [None, "", "sha256=not-hex", "sha1=" + "0" * 40], ids=repr)
async def test_a_delivery_without_a_signature_is_refused_before_its_body_is_read(
    stack: Stack, target: Connected, url: str, signature: str | None
) -> None:
    """The head announces 20 MiB and no byte of it is sent: the API answers 401 anyway."""
    path = SHARED if url == "shared" else own_url(target.id)
    signed = "" if signature is None else f"X-Hub-Signature-256: {signature}\r\n"
    port = stack.base_url.rsplit(":", 1)[1]

    head = await raw_head(
        stack,
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: push\r\n{signed}Content-Length: {20 * MIB}\r\n\r\n",
    )

    assert head.startswith(b"HTTP/1.1 401 "), head


@pytest.mark.parametrize("url", ["shared", "own"])
@pytest.mark.parametrize(
    "body",
    [b"{" * MIB, b"[" * 100_000, b'{"repository": ' + b"x" * MIB],
    ids=["unclosed braces", "nested arrays", "not json"],
)
async def test_a_wrongly_signed_body_is_refused_without_being_parsed(
    stack: Stack, target: Connected, url: str, body: bytes
) -> None:
    """Malformed, but refused for its signature (401) — a parser would have said 400 or 500."""
    path = SHARED if url == "shared" else own_url(target.id)

    response = await post(stack, path, body, signature=sign(uuid.uuid4().hex, body))

    assert_error(response, 401, url)


def nested(html_url: str, depth: int) -> bytes:
    """A delivery naming the repository, with a value nested `depth` arrays deep."""
    return (
        f'{{"repository": {{"html_url": "{html_url}", "clone_url": "{html_url}.git"}}, "x": '
        + "[" * depth
        + "]" * depth
        + "}"
    ).encode()


@pytest.mark.parametrize("url", ["shared", "own"])
@pytest.mark.parametrize("body", ["deep arrays", "unclosed arrays"])
async def test_a_signed_body_nested_too_deep_is_400(
    stack: Stack, target: Connected, url: str, body: str
) -> None:
    path = SHARED if url == "shared" else own_url(target.id)
    raw = nested(target.html_url, 100_000)
    if body == "unclosed arrays":
        raw = raw[: raw.index(b"]")]
    before = count_builds(stack, target.id)

    response = await post(stack, path, raw, secret=target.secret)

    message = assert_error(response, 400, url)
    assert "nested too deeply" in message or "not valid JSON" in message, message
    assert count_builds(stack, target.id) == before


async def test_the_famous_bracket_bomb_is_400_on_a_projects_own_url(
    stack: Stack, target: Connected
) -> None:
    body = b"[" * 100_000

    response = await post(stack, own_url(target.id), body, secret=target.secret)

    assert_error(response, 400)


# --- a project's own URL ----------------------------------------------------------------------


async def test_a_projects_own_url_builds_the_pushed_commit(stack: Stack, target: Connected) -> None:
    sha, payload = target.push("own url\n")
    body = encode(payload)
    before = count_builds(stack, target.id)

    ping = await post(stack, own_url(target.id), encode(github.payload("ping", target.html_url)),
                      event="ping", secret=target.secret)  # fmt: skip
    response = await post(stack, own_url(target.id), body, secret=target.secret)

    assert ping.status_code == 200, ping.text
    assert response.status_code == 202, response.text
    [build] = response.json()["builds"]
    assert build["projectId"] == target.id and build["commitHash"] == sha
    assert count_builds(stack, target.id) == before + 1
    final = await stack.wait_final(target.user, build["id"])
    assert final["status"] == "passed"
    assert "own url" in await stack.logs(target.user, build["id"])


async def test_a_projects_own_url_takes_only_that_projects_secret(stack: Stack) -> None:
    """Two projects on one repository: Alice's secret opens her URL only."""
    alice = await connected(stack)
    bob_user = await stack.register()
    bob = Connected(
        bob_user,
        alice.repo,
        (await stack.create_project(bob_user, alice.repo.url, "cat app.txt"))["project"],
    )
    _, payload = alice.push("for alice\n")
    body = encode(payload)
    builds = count_builds(stack, alice.id), count_builds(stack, bob.id)

    assert_error(await post(stack, own_url(bob.id), body, secret=alice.secret), 401)
    assert_error(await post(stack, own_url(2**31 - 1), body, secret=alice.secret), 401)
    assert_error(await post(stack, own_url(10**25), body, secret=alice.secret), 401)
    assert_error(await post(stack, f"{SHARED}/not-a-number", body, secret=alice.secret), 400)
    assert (count_builds(stack, alice.id), count_builds(stack, bob.id)) == builds


async def test_a_push_of_another_repository_to_a_projects_own_url_queues_nothing(
    stack: Stack, target: Connected
) -> None:
    stranger = html_url_of(stack.git.create_repo(repo_name("stranger")).url)
    payload = github.payload(
        "push", stranger, ref="refs/heads/main", before=github.NO_COMMIT, after="a" * 40,
        message="m", author="a",
    )  # fmt: skip
    before = count_builds(stack, target.id)

    response = await post(stack, own_url(target.id), encode(payload), secret=target.secret)

    assert response.status_code == 202, response.text
    assert response.json()["builds"] == []
    assert count_builds(stack, target.id) == before


# --- work per delivery ------------------------------------------------------------------------


@pytest.fixture
def hmacs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HMAC the API (in this process) computes for a delivery: the secrets it tried."""
    tried: list[str] = []
    real: Callable[[str, bytes, str], bool] = kiln.webhooks.signed_by

    def counted(secret: str, body: bytes, signature: str) -> bool:
        tried.append(secret)
        return real(secret, body, signature)

    monkeypatch.setattr(kiln.webhooks, "signed_by", counted)
    return tried


def add_projects(stack: Stack, user: User, repo_url: str, count: int) -> list[tuple[int, str]]:
    """`count` projects of `user` on one repository, oldest first: (id, webhook secret)."""
    with stack.sessions.begin() as session:
        projects = [
            Project(
                owner_id=user.id, name=f"p{n}", repo_url=repo_url, repo_key=repo_key(repo_url),
                branch="main", image=stack.image, build_command="true",
                webhook_secret=new_webhook_secret(),
            )
            for n in range(count)
        ]  # fmt: skip
        session.add_all(projects)
        session.flush()
        return [(project.id, project.webhook_secret) for project in projects]


async def test_the_shared_url_checks_at_most_20_projects_of_a_repository_oldest_first(
    stack: Stack, hmacs: list[str]
) -> None:
    user = await stack.register()
    repo_url = stack.git.create_repo(repo_name("crowded")).url
    projects = add_projects(stack, user, repo_url, 25)
    ping = encode(github.payload("ping", html_url_of(repo_url)))
    (oldest_id, oldest), (newest_id, newest) = projects[0], projects[-1]

    # Signed by none of them: 20 tries, not 25.
    assert_error(await post(stack, SHARED, ping, event="ping", secret=uuid.uuid4().hex), 401)
    assert len(hmacs) == 20
    assert set(hmacs) == {secret for _, secret in projects[:20]}

    hmacs.clear()
    assert (await post(stack, SHARED, ping, event="ping", secret=oldest)).status_code == 200
    assert len(hmacs) <= 20

    # The newest is past the cap on the shared URL; its own URL takes it, with one HMAC.
    assert_error(await post(stack, SHARED, ping, event="ping", secret=newest), 401)
    hmacs.clear()
    response = await post(stack, own_url(newest_id), ping, event="ping", secret=newest)
    assert response.status_code == 200, response.text
    assert hmacs == [newest]
    hmacs.clear()
    assert_error(await post(stack, own_url(oldest_id), ping, event="ping", secret=newest), 401)
    assert hmacs == [oldest]


# --- replays ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["shared", "own"])
async def test_a_replayed_delivery_under_a_new_or_no_delivery_id_queues_nothing(
    stack: Stack, target: Connected, url: str
) -> None:
    path = SHARED if url == "shared" else own_url(target.id)
    sha, payload = target.push(f"replayed via {url}\n")
    body = encode(payload)
    before = count_builds(stack, target.id)

    genuine = await post(stack, path, body, secret=target.secret)
    assert genuine.status_code == 202, genuine.text
    [build] = genuine.json()["builds"]
    assert build["commitHash"] == sha

    # The attacker captured it: same body, same signature; another id, or none at all.
    signature = sign(target.secret, body)
    replays = [
        await post(stack, path, body, signature=signature, delivery=str(uuid.uuid4())),
        await stack.http.post(
            path,
            content=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature},
        ),
        # Through the other URL, too.
        await post(
            stack,
            own_url(target.id) if url == "shared" else SHARED,
            body,
            signature=signature,
            delivery=str(uuid.uuid4()),
        ),  # fmt: skip
    ]

    for replay in replays:
        assert replay.status_code == 202, replay.text
        assert replay.json()["builds"] == [], replay.json()
    assert count_builds(stack, target.id) == before + 1
    assert (await stack.wait_final(target.user, build["id"]))["status"] == "passed"


async def test_concurrent_replays_under_new_ids_queue_one_build(
    stack: Stack, target: Connected
) -> None:
    _, payload = target.push("concurrent replays\n")
    body = encode(payload)
    before = count_builds(stack, target.id)

    responses = await asyncio.gather(
        *(post(stack, SHARED, body, secret=target.secret) for _ in range(5))
    )

    assert [r.status_code for r in responses] == [202] * 5, [r.text for r in responses]
    queued = [build for r in responses for build in r.json()["builds"]]
    assert len(queued) == 1, [r.json() for r in responses]
    assert count_builds(stack, target.id) == before + 1
    await stack.wait_final(target.user, queued[0]["id"])


async def test_dedupe_records_older_than_7_days_are_pruned_when_a_delivery_is_recorded(
    stack: Stack, target: Connected
) -> None:
    old, recent = utcnow() - timedelta(days=8), utcnow() - timedelta(days=6)
    ids = {name: f"{name}-{uuid.uuid4()}" for name in ("old", "recent")}
    digests = {name: uuid.uuid4().hex * 2 for name in ("old", "recent")}
    with stack.sessions.begin() as session:
        for name, at in (("old", old), ("recent", recent)):
            session.add(WebhookDelivery(delivery_id=ids[name], created_at=at))
            session.add(
                WebhookPayload(project_id=target.id, body_sha256=digests[name], created_at=at)
            )
    _, payload = target.push("prunes\n")

    response = await post(stack, SHARED, encode(payload), secret=target.secret)

    assert response.status_code == 202, response.text
    with stack.sessions() as session:
        delivery_ids = set(session.scalars(select(WebhookDelivery.delivery_id)))
        digests_kept = set(session.scalars(select(WebhookPayload.body_sha256)))
    assert ids["old"] not in delivery_ids and digests["old"] not in digests_kept
    assert ids["recent"] in delivery_ids and digests["recent"] in digests_kept
    [build] = response.json()["builds"]
    await stack.wait_final(target.user, build["id"])
