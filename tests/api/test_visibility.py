"""What the API tells Temporal and the dashboard about a build's workflow: each record names its
workflow (`workflowId`, with the deployment's KILN_WORKFLOW_ID_PREFIX) in answers and lists,
and each start says what queued the build (project creation, a push, a rebuild of which
build), which labels it in Temporal's UI."""

from __future__ import annotations

import uuid

from kiln.contracts import Trigger
from tests.api.support import (
    PROJECTS,
    WEBHOOK,
    WORKFLOW_ID_PREFIX,
    Api,
    FakeWorkflows,
    push_payload,
    sign,
)


async def test_every_build_record_names_its_workflow_with_the_deployments_prefix(
    api: Api,
) -> None:
    owner = await api.register()
    created = await api.create_project(owner)
    build_id = created["build"]["id"]
    expected = f"{WORKFLOW_ID_PREFIX}build-{build_id}"

    listed = await api.http.get(PROJECTS, headers=owner.headers)

    assert created["build"]["workflowId"] == expected
    assert (await api.build(owner, build_id))["workflowId"] == expected
    [project] = listed.json()["projects"]
    assert [b["workflowId"] for b in project["builds"]] == [expected]


async def test_a_new_projects_build_starts_labelled_as_queued_by_the_project(
    api: Api, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(await api.register())

    assert workflows.triggers == {created["build"]["id"]: (Trigger.PROJECT, None)}


async def test_a_rebuild_starts_labelled_as_a_rebuild_of_the_original(
    api: Api, workflows: FakeWorkflows
) -> None:
    owner = await api.register()
    original = (await api.create_project(owner))["build"]["id"]
    workflows.reset()

    response = await api.http.post(f"/api/build/rebuild/{original}", headers=owner.headers)

    assert response.status_code == 201, response.text
    again = response.json()["build"]["id"]
    assert workflows.triggers == {again: (Trigger.REBUILD, original)}


async def test_a_push_starts_its_build_labelled_as_a_push(
    api: Api, workflows: FakeWorkflows
) -> None:
    repo = api.repo()
    project = (await api.create_project(await api.register(), repo))["project"]
    workflows.reset()
    sha = repo.commit({"feature.txt": "on\n"}, "feat: add feature")
    body = push_payload(repo.url, ref="refs/heads/main", after=sha)
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(project["webhookSecret"], body),
    }

    response = await api.http.post(WEBHOOK, content=body, headers=headers)

    assert response.status_code == 202, response.text
    [build] = response.json()["builds"]
    assert workflows.triggers == {build["id"]: (Trigger.PUSH, None)}
