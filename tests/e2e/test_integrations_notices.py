"""Commit statuses and notification hooks on the whole system, against stand-ins on loopback: a
GitHub API (KILN_GITHUB_API_URL) and hook receivers that record what they got and can fail.

What a user notices: GitHub shows `pending` (queued), `pending` (running), then `success`,
`failure` or `error` for the build's commit under `kiln/<project>`, linked to the build's page;
a hook gets each event it chose, signed with its secret; receivers that fail are retried; one
that refuses, or is dead, never changes the build's result; the GitHub token appears nowhere —
not in the build's log or environment, its events, an API answer, a server log line, or the
Temporal history.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from kiln.crypto import generate_key
from testbed.stack import Stack, User, eventually
from tests.e2e.test_secrets_builds import assert_nowhere, history_texts
from tests.support.helpers import PROJECTS, connected, holds, new_repo, requeue, wait_for_build
from tests.support.receiver import Received, Receiver
from workflows.ids import workflow_id

TOKEN = "ghp_e2eTOKEN0123456789abcdefSECRET"
PUBLIC_URL = "https://kiln.example.test"
OWNER = "kiln-it"
NOTICE_ACTIVITIES = {"send_github_status", "send_hook"}


@pytest.fixture(scope="module")
def github() -> Iterator[Receiver]:
    """The stand-in GitHub API: answers 201 to every status unless a test says otherwise."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack_changes(github: Receiver) -> dict[str, Any]:
    """A Kiln with a secrets key, posting statuses to the stand-in, linking to PUBLIC_URL."""
    return {"secrets_key": generate_key(), "github_api_url": github.url, "public_url": PUBLIC_URL}


@pytest.fixture(autouse=True)
def github_answers_201(github: Receiver) -> Iterator[None]:
    yield
    github.status, github.delay = 201, 0.0


async def ready_project(stack: Stack, user: User, repo_url: str, command: str) -> dict[str, Any]:
    """A project whose first build (which runs `true`) has ended, its command now `command`."""
    created: dict[str, Any] = await stack.create_project(user, repo_url, "true")
    await wait_for_build(stack.http, user.headers, created["build"]["id"])
    path = f"{PROJECTS}/{created['project']['id']}"
    response = await stack.http.patch(path, json={"buildCommand": command}, headers=user.headers)
    assert response.status_code == 200, response.text
    return created


async def github_project(stack: Stack, user: User, command: str) -> dict[str, Any]:
    """A project on a GitHub-shaped repository (`<host>/kiln-it/<name>.git`) whose first build
    (queued before it had a token, so it sent nothing) has ended, now with a GitHub token."""
    repo = new_repo(stack.git, f"{OWNER}/notices")
    created = await ready_project(stack, user, repo.url, command)
    response = await stack.http.put(
        f"{PROJECTS}/{created['project']['id']}/github-token",
        json={"token": TOKEN},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    assert TOKEN not in response.text
    name = repo.name.split("/")[1]
    project: dict[str, Any] = created["project"] | {"repo": name, "first": created["build"]}
    return project


def statuses(github: Receiver, project: dict[str, Any], commit: str) -> list[Received]:
    path = f"/repos/{OWNER}/{project['repo']}/statuses/{commit}"
    return [request for request in github.requests if request.path == path]


def states(requests: list[Received]) -> list[str]:
    return [request.json()["state"] for request in requests if request.ok]


async def until_states(
    github: Receiver, project: dict[str, Any], commit: str, count: int
) -> list[Received]:
    async def enough() -> list[Received] | None:
        got = statuses(github, project, commit)
        return got if len([r for r in got if r.ok]) >= count else None

    return await eventually(enough, timeout=60)


async def build_with_statuses(
    stack: Stack, user: User, github: Receiver, project: dict[str, Any]
) -> tuple[dict[str, Any], list[Received]]:
    """A new build of the project's commit, to its end and its three statuses: its final record
    and every status request GitHub got for the commit (failed tries too)."""
    build = await requeue(stack, user, project["first"]["id"])
    final = await wait_for_build(stack.http, user.headers, build["id"])
    return final, await until_states(github, project, project["first"]["commitHash"], 3)


async def workflow_closed(stack: Stack, build_id: int, timeout: float = 60) -> list[str]:
    """Wait until the build's workflow has ended: the activities its history scheduled."""
    client = await Client.connect(stack.settings.temporal_address)
    handle = client.get_workflow_handle(workflow_id(build_id, stack.settings.workflow_id_prefix))

    async def closed() -> bool | None:
        return await holds((await handle.describe()).status != WorkflowExecutionStatus.RUNNING)

    await eventually(closed, timeout=timeout)
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


# --- GitHub commit statuses ---------------------------------------------------------------------


async def test_github_gets_pending_pending_then_success_for_the_builds_commit(
    stack: Stack, github: Receiver
) -> None:
    user = await stack.register()
    project = await github_project(stack, user, "echo built")
    commit = project["first"]["commitHash"]
    # The first build was queued before the project had a token: no status, no notice step.
    assert NOTICE_ACTIVITIES.isdisjoint(await workflow_closed(stack, project["first"]["id"]))
    assert statuses(github, project, commit) == []

    build, sent = await build_with_statuses(stack, user, github, project)

    assert (build["status"], build["exitCode"]) == ("passed", 0)
    assert states(sent) == ["pending", "pending", "success"]
    for request in sent:
        body = request.json()
        assert body["context"] == f"kiln/{project['name']}"
        assert body["target_url"] == f"{PUBLIC_URL}/builds/{build['id']}"
        assert body["description"]
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/vnd.github+json"
    assert [r.json()["description"] for r in sent] == [
        "The build is queued",
        "The build is running",
        "The build passed",
    ]
    assert NOTICE_ACTIVITIES & set(await workflow_closed(stack, build["id"]))


async def test_a_failing_build_is_a_failure_and_github_failing_at_first_is_retried(
    stack: Stack, github: Receiver
) -> None:
    user = await stack.register()
    project = await github_project(stack, user, "exit 3")
    github.fail_next(2)  # the first two tries of `queued` get a 500

    build, sent = await build_with_statuses(stack, user, github, project)

    assert (build["status"], build["exitCode"]) == ("failed", 3)
    assert [r.status for r in sent] == [500, 500, 201, 201, 201]
    assert [r.json()["state"] for r in sent] == ["pending"] * 4 + ["failure"]
    assert states(sent) == ["pending", "pending", "failure"]


async def test_a_canceled_build_is_an_error_on_github(stack: Stack, github: Receiver) -> None:
    user = await stack.register()
    # Ends at once on the cancel's SIGTERM.
    project = await github_project(stack, user, "trap 'exit 143' TERM; sleep 60 & wait")
    commit = project["first"]["commitHash"]

    build = await requeue(stack, user, project["first"]["id"])
    await wait_for_build(stack.http, user.headers, build["id"], ("running",))
    await until_states(github, project, commit, 2)
    response = await stack.http.post(f"/api/build/{build['id']}/cancel", headers=user.headers)
    assert response.status_code == 202, response.text
    final = await wait_for_build(stack.http, user.headers, build["id"])
    sent = await until_states(github, project, commit, 3)

    assert final["status"] == "canceled"
    assert states(sent) == ["pending", "pending", "error"]
    assert sent[-1].json()["description"] == "The build was canceled"


async def test_github_refusing_the_token_changes_nothing_and_is_not_retried(
    stack: Stack, github: Receiver
) -> None:
    user = await stack.register()
    project = await github_project(stack, user, "echo fine")
    commit = project["first"]["commitHash"]
    github.status = 401

    build = await requeue(stack, user, project["first"]["id"])
    final = await wait_for_build(stack.http, user.headers, build["id"])
    await workflow_closed(stack, build["id"])

    assert (final["status"], final["exitCode"]) == ("passed", 0)
    # One try per notice: a 401 cannot get better.
    assert [r.status for r in statuses(github, project, commit)] == [401, 401, 401]
    assert await stack.logs(user, build["id"]) == "fine\n"


async def test_a_slow_github_never_holds_the_build_up(stack: Stack, github: Receiver) -> None:
    user = await stack.register()
    project = await github_project(stack, user, "echo quick")
    github.delay = 2.0  # each status takes 2 s to be answered

    build = await requeue(stack, user, project["first"]["id"])
    final = await wait_for_build(stack.http, user.headers, build["id"])
    answered_by_then = len(statuses(github, project, project["first"]["commitHash"]))
    sent = await until_states(github, project, project["first"]["commitHash"], 3)

    # The build was over while its statuses were still on their way, in order.
    assert final["status"] == "passed"
    assert answered_by_then < 3
    assert states(sent) == ["pending", "pending", "success"]


async def test_the_github_token_is_nowhere_but_the_authorization_header(
    stack: Stack, github: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await stack.register()
    project = await github_project(stack, user, "env | sort; echo done")
    async with connected(stack, user) as recorder:
        build, _sent = await build_with_statuses(stack, user, github, project)
        await workflow_closed(stack, build["id"])
        log = await stack.logs(user, build["id"])
        await eventually(lambda: holds(any(e == "buildLog" for e, _ in recorder.events)))
        events = list(recorder.events)

    assert log.endswith("done\n") and "CI=true" in log.splitlines()
    answers = []
    for path in (PROJECTS, f"{PROJECTS}/{project['id']}", f"/api/build/{build['id']}"):
        response = await stack.http.get(path, headers=user.headers)
        assert response.status_code == 200, response.text
        answers.append(response.text)
    places = {
        "the build's log and environment": [log],
        "the live events": [json.dumps(events)],
        "the Temporal history": await history_texts(stack, build["id"]),
        "the server logs": [record.getMessage() for record in caplog.records] + [caplog.text],
        "the API answers": answers,
    }
    for piece in (TOKEN, TOKEN[: len(TOKEN) // 2 + 1], TOKEN[len(TOKEN) // 2 :]):
        assert_nowhere(piece, places)
    assert caplog.records, "the server logged nothing: the capture did not work"


# --- notification hooks -------------------------------------------------------------------------


async def add_hook(stack: Stack, user: User, project_id: int, url: str, events: list[str]) -> str:
    """A hook on `url` for `events`: its secret."""
    response = await stack.http.post(
        f"{PROJECTS}/{project_id}/hooks", json={"url": url, "events": events}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


async def hooked_project(
    stack: Stack, user: User, command: str, hooks: list[tuple[str, list[str]]]
) -> tuple[dict[str, Any], list[str]]:
    """A project (not on GitHub) whose first build has ended, then given `hooks`."""
    created = await ready_project(stack, user, new_repo(stack.git, "hooks").url, command)
    project_id = created["project"]["id"]
    secrets = [await add_hook(stack, user, project_id, url, events) for url, events in hooks]
    return created, secrets


async def test_a_hook_gets_its_events_signed_in_order_retried_when_it_fails(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await stack.register()
    # Like a Slack or Discord incoming webhook, the URL's path is a secret of its own.
    path = "/services/T0SECRET/B0SECRET/XyZsecretPathPart"
    with Receiver(status=200, fail_first=2) as receiver:
        created, (secret,) = await hooked_project(
            stack, user, "echo ok", [(receiver.url + path, ["running", "passed"])]
        )
        build = await requeue(stack, user, created["build"]["id"])
        final = await wait_for_build(stack.http, user.headers, build["id"])
        await eventually(lambda: holds(len(receiver.delivered()) >= 2), timeout=60)
        got = receiver.requests

    assert (final["status"], final["exitCode"]) == ("passed", 0)
    assert [r.status for r in got] == [500, 500, 200, 200]  # `running`, twice refused
    delivered = [r for r in got if r.ok]
    assert [r.json()["event"] for r in delivered] == ["running", "passed"]
    for request in got:
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-kiln-signature-256"] == expected
        assert request.path == path
    passed = delivered[-1].json()
    assert set(passed) == {"event", "build", "project", "url", "text"}
    assert passed["build"]["id"] == build["id"]
    assert passed["build"]["status"] == "passed"
    assert passed["project"]["id"] == created["project"]["id"]
    assert passed["url"] == f"{PUBLIC_URL}/builds/{build['id']}"
    assert passed["text"] == f"app #{build['id']}: The build passed {passed['url']}"
    assert "XyZsecretPathPart" not in caplog.text, "the hook's URL is in the server's log"
    assert secret not in caplog.text


async def test_dead_and_refusing_hooks_never_change_the_build_and_others_still_get_theirs(
    stack: Stack,
) -> None:
    user = await stack.register()
    with Receiver() as dead:
        dead_url = dead.url + "/gone"  # nothing listens there any more
    with Receiver(status=410) as refusing, Receiver() as healthy:
        created, _secrets = await hooked_project(
            stack,
            user,
            "exit 1",
            [
                (dead_url, ["running", "failed"]),
                (refusing.url, ["failed"]),
                (healthy.url, ["failed", "canceled"]),
            ],
        )
        build = await requeue(stack, user, created["build"]["id"])
        final = await wait_for_build(stack.http, user.headers, build["id"])
        assert (final["status"], final["exitCode"]) == ("failed", 1)
        await eventually(lambda: holds(bool(healthy.delivered())), timeout=60)
        # The dead hook's tries (5 of them) end, and with them the workflow.
        await workflow_closed(stack, build["id"], timeout=90)

        assert [r.json()["event"] for r in healthy.requests] == ["failed"]
        assert [r.status for r in refusing.requests] == [410]  # given up on, not retried
    assert (await stack.build(user, build["id"]))["status"] == "failed"
    assert await stack.logs(user, build["id"]) == ""
