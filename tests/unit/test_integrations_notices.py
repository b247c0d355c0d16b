"""The pieces of notices: which repositories are GitHub's, what a commit status and a hook body
say, the hook signature, the order guard that drops a notice older than one already handed over,
what a project has configured, and a POST pinned to the address that was checked."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from sqlalchemy import select

from kiln.crypto import SecretBox, generate_key
from kiln.github_status import (
    GithubRepo,
    GithubTokens,
    describe,
    github_repo,
    github_state,
    status_body,
    status_url,
)
from kiln.hooks import HookService, hook_body, hook_text, sign
from kiln.integration_models import ProjectHook
from kiln.models import BuildStatus, Project
from kiln.notifications import GITHUB_TARGET, Delivery, Notice, Notifier, hook_target
from kiln.outbound import OutboundFailed, post_json
from kiln.settings import Settings
from tests.support.receiver import Receiver
from tests.unit.conftest import Rows

API = "https://api.github.com"


@pytest.mark.parametrize(
    ("repo_url", "api_url", "expected"),
    [
        ("https://github.com/acme/app", API, GithubRepo("acme", "app")),
        ("https://github.com/acme/app.git", API, GithubRepo("acme", "app")),
        ("https://GitHub.com/Acme/App.js.git", API, GithubRepo("Acme", "App.js")),
        ("https://www.github.com/acme/app/", API, GithubRepo("acme", "app")),
        (
            "https://ghe.corp.example/acme/app.git",
            "https://ghe.corp.example/api/v3",
            GithubRepo("acme", "app"),
        ),  # noqa: E501
        ("http://127.0.0.1:4321/acme/app.git", "http://127.0.0.1:9999", GithubRepo("acme", "app")),
        ("https://gitlab.com/acme/app.git", API, None),
        ("https://ghe.corp.example/acme/app.git", API, None),
        ("https://github.com/acme", API, None),
        ("https://github.com/acme/app/tree/main", API, None),
        ("https://github.com/../app", API, None),
        ("https://github.com/acme/a%2Fb", API, None),
        ("not a url", API, None),
    ],
)
def test_a_repository_is_githubs_when_its_host_is_github_or_the_api_urls_host(
    repo_url: str, api_url: str, expected: GithubRepo | None
) -> None:
    assert github_repo(repo_url, api_url) == expected


def test_the_status_goes_to_the_commit_of_the_repository_under_the_api_url() -> None:
    repo = GithubRepo("acme", "app")
    assert status_url(API, repo, "a" * 40) == f"{API}/repos/acme/app/statuses/{'a' * 40}"
    ghe = status_url("https://ghe.corp.example/api/v3/", repo, "b" * 40)
    assert ghe == f"https://ghe.corp.example/api/v3/repos/acme/app/statuses/{'b' * 40}"


@pytest.mark.parametrize(
    ("event", "exit_code", "state"),
    [
        ("queued", None, "pending"),
        ("running", None, "pending"),
        ("passed", 0, "success"),
        ("failed", 1, "failure"),
        ("failed", None, "error"),  # timed out, or an infrastructure failure
        ("canceled", None, "error"),
    ],
)
def test_each_event_has_its_github_state(event: str, exit_code: int | None, state: str) -> None:
    assert github_state(event, exit_code) == state
    body = json.loads(status_body(event, exit_code, "my-app", "https://kiln.example/builds/7"))
    assert body == {
        "state": state,
        "context": "kiln/my-app",
        "description": describe(event, exit_code),
        "target_url": "https://kiln.example/builds/7",
    }
    assert 0 < len(body["description"]) <= 140


def test_a_status_without_a_public_url_has_no_target_url_and_a_long_name_is_cut() -> None:
    body = json.loads(status_body("failed", 2, "x" * 300, None))
    assert "target_url" not in body
    assert body["description"] == "The build failed (exit code 2)"
    assert body["context"] == "kiln/" + "x" * 300


def test_a_hook_body_is_signed_with_the_hmac_of_its_exact_bytes() -> None:
    secret = "s" * 64
    text = hook_text("my-app", 7, describe("failed", 1), "https://kiln.example/builds/7")
    body = hook_body("failed", {"id": 7}, {"id": 3, "name": "my-app"}, None, text)

    assert json.loads(body) == {
        "event": "failed",
        "build": {"id": 7},
        "project": {"id": 3, "name": "my-app"},
        "url": None,
        "text": "my-app #7: The build failed (exit code 1) https://kiln.example/builds/7",
    }
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == f"sha256={expected}"
    assert sign(secret, body + b" ") != sign(secret, body)
    assert sign("other", body) != sign(secret, body)


def notifier(rows: Rows) -> Notifier:
    return Notifier(rows.sessions, Settings(secrets_key=generate_key()))


def test_an_older_notice_is_dropped_once_a_newer_one_was_handed_over(rows: Rows) -> None:
    build = rows.build(rows.project())
    guard = notifier(rows)
    queued, running, final = (Notice(build.id, e).seq for e in ("queued", "running", "passed"))

    assert guard.claim(build.id, GITHUB_TARGET, queued)
    assert guard.claim(build.id, GITHUB_TARGET, final)
    # The `running` notice, retried late: GitHub must not go back to pending.
    assert not guard.claim(build.id, GITHUB_TARGET, running)
    # The same notice again (its own retry) may go.
    assert guard.claim(build.id, GITHUB_TARGET, final)
    # Each target keeps its own order; a build that is gone gets nothing.
    assert guard.claim(build.id, hook_target(1), running)
    assert not guard.claim(build.id + 1000, GITHUB_TARGET, queued)


def test_the_plan_names_github_only_with_a_token_and_a_github_repository(rows: Rows) -> None:
    owner = rows.user()
    project = rows.project(owner)  # on example.com: not GitHub's
    build = rows.build(project)
    settings = Settings(secrets_key=generate_key())
    box = SecretBox(settings.secrets_key)
    plans = Notifier(rows.sessions, settings)

    assert not plans.plan(build.id).any
    GithubTokens(rows.sessions, box).set(owner.id, project.id, "ghp_token")
    assert not plans.plan(build.id).github

    on_ghe = Notifier(
        rows.sessions, settings.model_copy(update={"github_api_url": "https://example.com/api"})
    )
    assert on_ghe.plan(build.id).github

    hooks = HookService(rows.sessions, box, allow_local=True)
    hook, _secret = hooks.create(owner.id, project.id, "http://127.0.0.1:9/x", ["failed"])
    plan = plans.plan(build.id)
    assert [(h.hook_id, h.events) for h in plan.hooks] == [(hook["id"], ["failed"])]
    assert plan.any and not plans.plan(build.id + 1000).any


async def test_a_pinned_post_goes_to_the_checked_address_keeping_the_host_name() -> None:
    with Receiver(status=204) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        url = f"http://hooks.example.test:{port}/notify?x=1"

        answer = await post_json(
            url, b"{}", {"X-Test": "yes"}, pin=f"hooks.example.test:{port}:127.0.0.1"
        )

        assert answer.status == 204 and answer.ok
        (request,) = receiver.requests
        assert request.path == "/notify?x=1"
        assert request.headers["host"] == f"hooks.example.test:{port}"
        assert request.headers["x-test"] == "yes"
        assert request.headers["content-type"] == "application/json"


async def test_a_post_to_a_dead_or_slow_address_fails_as_retryable_within_its_timeout() -> None:
    with Receiver() as receiver:
        dead = receiver.url
    with pytest.raises(OutboundFailed):
        await post_json(dead, b"{}", {})
    with Receiver(delay=2) as slow:
        with pytest.raises(OutboundFailed) as caught:
            await post_json(slow.url, b"{}", {}, timeout=0.5)
    assert "0.5" in str(caught.value)


async def test_a_redirect_is_an_answer_not_followed() -> None:
    with Receiver(status=307) as receiver:
        answer = await post_json(receiver.url + "/hook", b"{}", {})
    assert (answer.status, answer.ok) == (307, False)
    assert len(receiver.requests) == 1


async def test_a_hook_whose_address_is_local_is_given_up_on_at_send_time(rows: Rows) -> None:
    """Checked again at every send: a hook stored while local addresses were allowed (or whose
    host's DNS answer changed to a private one since) gets nothing."""
    owner = rows.user()
    build = rows.build(rows.project(owner), BuildStatus.PASSED)
    key = generate_key()
    with Receiver() as receiver:
        hooks = HookService(rows.sessions, SecretBox(key), allow_local=True)
        hook, secret = hooks.create(owner.id, build.project_id, receiver.url, ["passed"])
        notice = Notice(build.id, "passed", 0, hook_id=hook["id"])

        strict = Notifier(rows.sessions, Settings(secrets_key=key, allow_local_repos=False))
        assert await strict.send_hook(notice) == Delivery.GAVE_UP
        assert receiver.requests == []

        lenient = Notifier(rows.sessions, Settings(secrets_key=key, allow_local_repos=True))
        assert await lenient.send_hook(notice) == Delivery.SENT
        # A notice for an event the hook did not choose is not sent.
        running = Notice(build.id, "running", hook_id=hook["id"])
        assert await lenient.send_hook(running) == Delivery.SKIPPED
        # An older notice retried after a newer one went is dropped, never sent.
        every, _ = hooks.create(owner.id, build.project_id, receiver.url, ["passed", "running"])
        assert await lenient.send_hook(Notice(build.id, "passed", 0, hook_id=every["id"])) == (
            Delivery.SENT
        )
        assert await lenient.send_hook(Notice(build.id, "running", hook_id=every["id"])) == (
            Delivery.DROPPED
        )
        (first, second) = receiver.requests
    assert first.headers["x-kiln-signature-256"] == sign(secret, first.body)
    assert [first.json()["event"], second.json()["event"]] == ["passed", "passed"]


def test_rotating_the_key_reseals_github_tokens_and_hook_secrets(rows: Rows) -> None:
    owner = rows.user()
    project = rows.project(owner)
    old, new = generate_key(), generate_key()
    GithubTokens(rows.sessions, SecretBox(old)).set(owner.id, project.id, "ghp_rotate_me")
    hook, secret = HookService(rows.sessions, SecretBox(old), allow_local=True).create(
        owner.id, project.id, "http://127.0.0.1:9/x", ["failed"]
    )
    both = SecretBox(f"{new},{old}")

    assert GithubTokens(rows.sessions, both).rotate() == 1
    assert HookService(rows.sessions, both, allow_local=True).rotate() == 1

    with rows.sessions() as session:
        stored = session.get(ProjectHook, hook["id"])
        sealed = session.scalar(select(Project.github_token).where(Project.id == project.id))
        assert stored is not None and sealed is not None
        assert GithubTokens(rows.sessions, SecretBox(new)).open(project.id, sealed) == (
            "ghp_rotate_me"
        )
        assert (
            HookService(rows.sessions, SecretBox(new), allow_local=True).open_secret(stored)
            == secret
        )
