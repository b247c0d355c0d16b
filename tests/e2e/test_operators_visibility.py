"""An operator finds and follows builds in Temporal's UI, on a real stack (each database): the
search attributes queried through the client's list API as `temporal workflow list --query`
does, each workflow's summary and details, what it is doing now, and each step's summary.

All test stacks share one Temporal namespace and number their projects and builds from 1, so
every query here also names the stack's task queue (a Kiln has a namespace, or an id prefix,
of its own)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter

from testbed.stack import Stack, eventually
from tests.support import github
from tests.support.helpers import holds, new_repo, repo_name, requeue, wait_for_build
from workflows import visibility

PUBLIC_URL = "https://kiln.example.com"
BLOCK_UNTIL_TERM = "echo started; trap 'exit 0' TERM; sleep 300 & wait"


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    """KILN_PUBLIC_URL set (the details link to the dashboard) and a secrets key (credentials
    in a repository URL go to the encrypted store)."""
    return {"public_url": PUBLIC_URL, "secrets_key": Fernet.generate_key().decode()}


@pytest.fixture(scope="module")
async def temporal(stack: Stack) -> Client:
    return await Client.connect(stack.settings.temporal_address)


async def listed(temporal: Client, stack: Stack, query: str, count: int) -> list[str]:
    """The workflow ids `query` finds among this stack's, once there are `count` of them
    (visibility trails the workflow a little)."""

    async def found() -> list[str] | None:
        scoped = f'TaskQueue="{stack.settings.task_queue}" AND {query}'
        ids = sorted([w.id async for w in temporal.list_workflows(scoped)])
        return ids if len(ids) >= count else None

    ids = await eventually(found, timeout=30)
    assert len(ids) == count, ids
    return ids


async def attributes(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    found = (await handle.describe()).typed_search_attributes
    keys = visibility.SEARCH_ATTRIBUTES
    return {key.name: found.get(key) for key in keys if found.get(key) is not None}


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details: str = metadata.current_details
    return details


async def run_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    converter = DataConverter.default.payload_converter
    return [
        converter.from_payload(event.user_metadata.summary, str)
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "execute_build"
    ]


def project_name() -> str:
    return f"my-vite-app-{uuid.uuid4().hex[:6]}"


async def test_an_operator_finds_a_projects_failed_builds_and_each_carries_its_labels(
    stack: Stack, temporal: Client
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "vis-failed")
    sha = repo.head()
    name = project_name()
    created = await stack.create_project(user, repo.url, "echo building; exit 3", name=name)
    first = created["build"]
    assert (await stack.wait_final(user, first["id"]))["exitCode"] == 3
    second = await requeue(stack, user, first["id"])
    assert (await stack.wait_final(user, second["id"]))["status"] == "failed"
    passing = await stack.create_project(user, repo.url, "true", name=project_name())
    await stack.wait_final(user, passing["build"]["id"])
    project_id = created["project"]["id"]

    failed = await listed(
        temporal, stack, f'KilnProjectId={project_id} AND KilnBuildStatus="failed"', 2
    )
    rebuilt = await listed(
        temporal, stack, f'KilnProjectId={project_id} AND KilnTrigger="rebuild"', 1
    )
    by_commit = await listed(temporal, stack, f'KilnCommit="{sha}" AND KilnExitCode=3', 2)

    assert failed == sorted([first["workflowId"], second["workflowId"]]) == by_commit
    assert rebuilt == [second["workflowId"]]
    assert (
        await listed(temporal, stack, f'KilnProjectId={project_id} AND KilnBuildStatus="passed"', 0)
        == []
    )
    for build, trigger in ((first, "project"), (second, "rebuild")):
        assert await attributes(temporal.get_workflow_handle(build["workflowId"])) == {
            "KilnProjectId": project_id,
            "KilnBuildId": build["id"],
            "KilnExitCode": 3,
            "KilnProject": name,
            "KilnBranch": "main",
            "KilnCommit": sha,
            "KilnBuildStatus": "failed",
            "KilnHost": stack.settings.worker_id,
            "KilnTrigger": trigger,
        }


async def test_a_rebuild_has_a_summary_details_with_its_commit_and_link_and_step_summaries(
    stack: Stack, temporal: Client
) -> None:
    user = await stack.register()
    repo = stack.git.create_repo(repo_name("vis-summary"))
    sha = repo.commit({"README": "hi\n"}, "Render the *dashboard*\n\nwith a body", author="Ada")
    name = project_name()
    created = await stack.create_project(
        user, repo.url, "npm ci && npm run build || true", name=name
    )
    original = created["build"]["id"]
    await stack.wait_final(user, original)  # the checkout fills in the message and author
    again = await requeue(stack, user, original)
    await stack.wait_final(user, again["id"])
    handle = temporal.get_workflow_handle(again["workflowId"])

    description = await handle.describe()

    assert (
        await description.static_summary() == f"{name} · main · {sha[:7]} · rebuild of #{original}"
    )
    details = await description.static_details()
    assert details is not None
    assert f"Commit {sha} on main by Ada" in details
    assert "```\nRender the *dashboard*\n\nwith a body\n```" in details
    assert f"({PUBLIC_URL}/builds/{again['id']})" in details
    assert await current_details(handle) == "passed (exit code 0)"
    assert await run_summaries(handle) == [
        f"clone {sha[:7]}, run `npm ci && npm run build || true`"
    ]
    first = await temporal.get_workflow_handle(created["build"]["workflowId"]).describe()
    assert await first.static_summary() == f"{name} · main · {sha[:7]} · new project"


async def test_a_pushed_build_is_labelled_a_push_with_the_pushed_commits_message(
    stack: Stack, temporal: Client
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "vis-push")
    created = await stack.create_project(user, repo.url, "true", name=project_name())
    await stack.wait_final(user, created["build"]["id"])
    before = repo.head()
    sha = repo.commit({"app.txt": "two\n"}, "Ship it", author="Grace Hopper")
    html_url = github.html_url_of(repo.url)
    payload = github.payload(
        "push", html_url, ref="refs/heads/main", before=before, after=sha,
        message="Ship it", author="Grace Hopper",
    )  # fmt: skip
    body = github.encode(payload)
    secret = created["project"]["webhookSecret"]
    response = await stack.http.post(
        "/api/webhook/github", content=body, headers=github.headers("push", body, secret)
    )
    assert response.status_code == 202, response.text
    [build] = response.json()["builds"]
    await stack.wait_final(user, build["id"])

    [found] = await listed(
        temporal, stack, f'KilnTrigger="push" AND KilnProjectId={created["project"]["id"]}', 1
    )

    assert found == build["workflowId"]
    description = await temporal.get_workflow_handle(found).describe()
    assert (await description.static_summary() or "").endswith(f"· {sha[:7]} · push")
    details = await description.static_details()
    assert details is not None and "by Grace Hopper" in details and "Ship it" in details


async def test_waiting_builds_say_how_many_are_ahead_and_a_running_one_where_it_runs(
    stack: Stack, temporal: Client
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "vis-wait")
    created = await stack.create_project(user, repo.url, BLOCK_UNTIL_TERM, name=project_name())
    running = created["build"]
    await wait_for_build(stack.http, user.headers, running["id"], ("running",))
    second = await requeue(stack, user, running["id"])
    third = await requeue(stack, user, running["id"])
    handles = [temporal.get_workflow_handle(b["workflowId"]) for b in (running, second, third)]

    async def details_are(handle: WorkflowHandle[Any, Any], text: str) -> bool | None:
        return await holds(await current_details(handle) == text)

    await eventually(lambda: details_are(handles[2], "waiting for a slot: 2 builds ahead"))
    await eventually(lambda: details_are(handles[1], "waiting for a slot: 1 build ahead"))
    assert await current_details(handles[0]) == f"running on {stack.settings.worker_id}"
    project_id = created["project"]["id"]
    assert await listed(
        temporal, stack, f'KilnProjectId={project_id} AND KilnBuildStatus="running"', 1
    ) == [running["workflowId"]]
    assert len(await listed(
        temporal, stack, f'KilnProjectId={project_id} AND KilnBuildStatus="queued"', 2
    )) == 2  # fmt: skip

    for build in (third, second, running):
        response = await stack.http.post(f"/api/build/{build['id']}/cancel", headers=user.headers)
        assert response.status_code == 202, response.text
    for build in (running, second, third):
        await wait_for_build(stack.http, user.headers, build["id"], ("canceled",))
    await listed(temporal, stack, f'KilnProjectId={project_id} AND KilnBuildStatus="canceled"', 3)


async def test_no_attribute_summary_or_detail_holds_the_repository_url_or_a_secret(
    stack: Stack, temporal: Client
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "vis-secret")
    # A repository URL carrying credentials, as a private repository's might.
    url = repo.url.replace("http://", "http://kiln-user:s3cret-token@")
    created = await stack.create_project(user, url, "true", name=project_name())
    build = created["build"]
    await stack.wait_final(user, build["id"])
    handle = temporal.get_workflow_handle(build["workflowId"])
    description = await handle.describe()

    shown = [
        *map(str, (await attributes(handle)).values()),
        await description.static_summary() or "",
        await description.static_details() or "",
        await current_details(handle),
        *await run_summaries(handle),
    ]

    for text in shown:
        for secret in ("s3cret-token", "kiln-user", repo.url, created["project"]["webhookSecret"]):
            assert secret not in text, text
