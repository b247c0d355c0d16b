"""Projects (docs/api.md, Project endpoints): create queues a first build pinned to the branch
head and starts its workflow; list, fetch, change and delete answer the documented shapes and
messages; raising the concurrency wakes waiting builds, deleting cancels the unfinished ones."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kiln.models import BuildStatus
from tests.api.support import (
    PROJECTS,
    Api,
    FakeWorkflows,
    User,
    assert_error,
)
from tests.support.records import BUILD_KEYS, PROJECT_KEYS, TIMESTAMP

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
async def owner(api: Api) -> User:
    return await api.register()


async def rebuild(api: Api, user: User, build_id: int) -> dict[str, Any]:
    response = await api.http.post(f"/api/build/rebuild/{build_id}", headers=user.headers)
    assert response.status_code == 201, response.text
    build: dict[str, Any] = response.json()["build"]
    return build


# --- create ---------------------------------------------------------------------------------


async def test_create_answers_201_with_the_project_and_a_queued_build_at_the_branch_head(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    repo = api.repo()
    head = repo.commit({"app.txt": "v2\n"}, "second")

    response = await api.http.post(
        PROJECTS,
        json={"name": " my-app ", "repoUrl": repo.url, "image": "busybox", "buildCommand": "true"},
        headers=owner.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"message", "project", "build"}
    assert body["message"] == "Project created"
    project, build = body["project"], body["build"]
    assert set(project) == PROJECT_KEYS
    assert project["name"] == "my-app"
    assert project["repoUrl"] == repo.url
    assert project["branch"] == "main"
    assert (project["image"], project["buildCommand"]) == ("busybox", "true")
    assert (project["timeoutSeconds"], project["maxConcurrentBuilds"]) == (3600, 1)
    assert HEX64.match(project["webhookSecret"])
    assert TIMESTAMP.match(project["createdAt"])
    assert set(build) == BUILD_KEYS
    assert build["status"] == "queued"
    assert build["commitHash"] == head
    assert build["branch"] == "main"
    assert build["projectId"] == project["id"]
    assert (build["commit"], build["commitAuthor"]) == ("", "")
    assert (build["exitCode"], build["finishedAt"], build["queuePosition"]) == (None, None, 1)
    assert TIMESTAMP.match(build["startedAt"])
    assert workflows.started == [build["id"]]


async def test_create_without_optional_fields_uses_the_documented_defaults(
    api: Api, owner: User
) -> None:
    response = await api.http.post(
        PROJECTS, json={"name": "app", "repoUrl": api.shared_repo().url}, headers=owner.headers
    )

    assert response.status_code == 201, response.text
    project = response.json()["project"]
    assert project["branch"] == "main"
    assert project["image"] == "node:20-alpine"
    assert project["buildCommand"] == "npm ci && npm run build"
    assert (project["timeoutSeconds"], project["maxConcurrentBuilds"]) == (3600, 1)


async def test_create_on_another_branch_pins_that_branchs_head(api: Api, owner: User) -> None:
    repo = api.repo()
    release_head = repo.commit({"release.txt": "1.0\n"}, "release", branch="release")
    repo.commit({"main.txt": "newer\n"}, "main moves on")

    created = await api.create_project(owner, repo, branch="release")

    assert created["project"]["branch"] == "release"
    assert created["build"]["branch"] == "release"
    assert created["build"]["commitHash"] == release_head


async def project_ids(api: Api, user: User) -> list[int]:
    response = await api.http.get(PROJECTS, headers=user.headers)
    assert response.status_code == 200, response.text
    return [project["id"] for project in response.json()["projects"]]


async def test_create_with_an_unknown_branch_is_a_400_naming_it_and_creates_nothing(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    before = await project_ids(api, owner)

    response = await api.http.post(
        PROJECTS,
        json={"name": "app", "repoUrl": api.shared_repo().url, "branch": "no-such-branch"},
        headers=owner.headers,
    )

    assert assert_error(response, 400) == (
        "Could not resolve branch 'no-such-branch': "
        "branch 'no-such-branch' not found in the repository"
    )
    assert workflows.started == []
    assert await project_ids(api, owner) == before


async def test_create_on_a_repository_that_does_not_exist_is_a_400(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    url = f"{api.git.base_url}/no-such-repo.git"

    response = await api.http.post(
        PROJECTS, json={"name": "app", "repoUrl": url}, headers=owner.headers
    )

    assert assert_error(response, 400).startswith(
        "Could not resolve branch 'main': git ls-remote failed: "
    )
    assert workflows.started == []


@pytest.mark.parametrize(
    ("repo_url", "message"),
    [
        ("ftp://example.com/app.git", "repoUrl must be an http:// or https:// URL"),
        ("http:///app.git", "repoUrl has no host"),
        ("http://[::1/app.git", "repoUrl is not a valid URL"),
        ("http://example.com:99999/app.git", "repoUrl is not a valid URL"),
    ],
    ids=["ftp", "no-host", "unclosed-bracket", "bad-port"],
)
async def test_create_with_a_refused_repo_url_is_a_400(
    api: Api, owner: User, repo_url: str, message: str
) -> None:
    response = await api.http.post(
        PROJECTS, json={"name": "app", "repoUrl": repo_url}, headers=owner.headers
    )

    assert assert_error(response, 400) == message


INVALID_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "timeout-too-long": (
        {"timeoutSeconds": 86401},
        "timeoutSeconds: Input should be less than or equal to 86400",
    ),
    "no-concurrency": (
        {"maxConcurrentBuilds": 0},
        "maxConcurrentBuilds: Input should be greater than or equal to 1",
    ),
    "branch-with-dots": ({"branch": "a..b"}, "branch: Value error, is not a valid branch name"),
    "image-option": (
        {"image": "--privileged"},
        "image: Value error, is not a valid image reference",
    ),
    "empty-name": ({"name": ""}, "name: String should have at least 1 character"),
    "unknown-field": ({"owner": 1}, "owner: Extra inputs are not permitted"),
}


@pytest.mark.parametrize(("fields", "message"), INVALID_FIELDS.values(), ids=INVALID_FIELDS)
async def test_create_with_an_invalid_field_is_a_400_naming_it(
    api: Api, owner: User, workflows: FakeWorkflows, fields: dict[str, Any], message: str
) -> None:
    body = {"name": "app", "repoUrl": f"{api.git.base_url}/unused.git"} | fields

    response = await api.http.post(PROJECTS, json=body, headers=owner.headers)

    assert assert_error(response, 400) == message
    assert workflows.started == []


async def test_a_body_over_the_json_cap_is_a_413_before_anything_is_read(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    before = await project_ids(api, owner)
    padding = "x" * api.settings.json_max_bytes
    body = {"name": padding, "repoUrl": api.shared_repo().url}

    with_token = await api.http.post(PROJECTS, json=body, headers=owner.headers)
    without_token = await api.http.post(PROJECTS, json=body)

    assert_error(with_token, 413)
    assert_error(without_token, 413)
    assert workflows.started == []
    assert await project_ids(api, owner) == before


# --- list and fetch -------------------------------------------------------------------------


async def test_the_list_has_only_the_callers_projects_in_order_with_builds_newest_first(
    api: Api, owner: User
) -> None:
    user = await api.register()
    first = await api.create_project(user)
    await api.create_project(owner)
    second = await api.create_project(user)
    again = await rebuild(api, user, first["build"]["id"])

    response = await api.http.get(PROJECTS, headers=user.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "projects"}
    assert body["message"] == "Projects fetched"
    projects = body["projects"]
    assert [p["id"] for p in projects] == [first["project"]["id"], second["project"]["id"]]
    for project in projects:
        assert set(project) == PROJECT_KEYS | {"builds"}
        for build in project["builds"]:
            assert set(build) == BUILD_KEYS
    assert [b["id"] for b in projects[0]["builds"]] == [again["id"], first["build"]["id"]]
    # Both wait for the project's one slot: the older starts next.
    assert [b["queuePosition"] for b in projects[0]["builds"]] == [2, 1]


async def test_fetch_answers_the_project_record_with_its_builds(api: Api, owner: User) -> None:
    created = await api.create_project(owner)

    response = await api.http.get(f"{PROJECTS}/{created['project']['id']}", headers=owner.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Project fetched"
    assert body["project"] == created["project"] | {"builds": [created["build"]]}


# --- change ---------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(owner)
    project_id = created["project"]["id"]

    response = await api.http.patch(
        f"{PROJECTS}/{project_id}",
        json={"name": "renamed", "buildCommand": "make", "timeoutSeconds": 60},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Project updated"
    expected = created["project"] | {"name": "renamed", "buildCommand": "make"}
    assert body["project"] == expected | {"timeoutSeconds": 60, "builds": [created["build"]]}
    assert await api.project(owner, project_id) == body["project"]
    assert workflows.woken == []  # the slots did not change


async def test_an_empty_patch_changes_nothing_and_answers_200(api: Api, owner: User) -> None:
    created = await api.create_project(owner)
    project_id = created["project"]["id"]

    response = await api.http.patch(f"{PROJECTS}/{project_id}", json={}, headers=owner.headers)

    assert response.status_code == 200, response.text
    assert response.json()["project"] == created["project"] | {"builds": [created["build"]]}


async def test_raising_max_concurrent_builds_wakes_the_waiting_builds(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(owner)
    first = created["build"]["id"]
    second = (await rebuild(api, owner, first))["id"]
    finished = (await rebuild(api, owner, first))["id"]
    api.finish(finished, BuildStatus.PASSED, 0)
    workflows.reset()

    response = await api.http.patch(
        f"{PROJECTS}/{created['project']['id']}",
        json={"maxConcurrentBuilds": 3},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["project"]["maxConcurrentBuilds"] == 3
    assert sorted(workflows.woken) == [first, second]
    assert workflows.started == []


@pytest.mark.parametrize(
    "field", ["name", "image", "buildCommand", "timeoutSeconds", "maxConcurrentBuilds"]
)
async def test_patching_a_field_to_null_is_a_400_naming_it(
    api: Api, owner: User, field: str
) -> None:
    created = await api.create_project(owner)
    project_id = created["project"]["id"]

    response = await api.http.patch(
        f"{PROJECTS}/{project_id}", json={"name": "ignored", field: None}, headers=owner.headers
    )

    assert assert_error(response, 400) == f"{field} may not be null"
    assert (await api.project(owner, project_id))["name"] == "app"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"repoUrl": "https://example.com/other.git"}, "repoUrl: Extra inputs are not permitted"),
        ({"branch": "other"}, "branch: Extra inputs are not permitted"),
        ({"timeoutSeconds": 0}, "timeoutSeconds: Input should be greater than or equal to 1"),
        ({"image": "two words"}, "image: Value error, is not a valid image reference"),
    ],
    ids=["repoUrl", "branch", "timeout-zero", "image-with-space"],
)
async def test_patching_what_may_not_change_or_an_invalid_value_is_a_400(
    api: Api, owner: User, fields: dict[str, Any], message: str
) -> None:
    created = await api.create_project(owner)
    project_id = created["project"]["id"]

    response = await api.http.patch(f"{PROJECTS}/{project_id}", json=fields, headers=owner.headers)

    assert assert_error(response, 400) == message
    assert (await api.project(owner, project_id)) == created["project"] | {
        "builds": [created["build"]]
    }


# --- delete ---------------------------------------------------------------------------------


async def test_delete_answers_the_id_cancels_the_unfinished_builds_and_removes_all(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(owner)
    project_id, first = created["project"]["id"], created["build"]["id"]
    passed = (await rebuild(api, owner, first))["id"]
    api.finish(passed, BuildStatus.PASSED, 0)
    queued = (await rebuild(api, owner, first))["id"]
    workflows.reset()

    response = await api.http.delete(f"{PROJECTS}/{project_id}", headers=owner.headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Project deleted", "projectId": project_id}
    assert sorted(workflows.canceled) == [first, queued]
    again = await api.http.get(f"{PROJECTS}/{project_id}", headers=owner.headers)
    assert assert_error(again, 404) == "Project not found"
    for build_id in (first, passed, queued):
        gone = await api.http.get(f"/api/build/{build_id}", headers=owner.headers)
        assert assert_error(gone, 404) == "Build not found"
    assert api.build_ids(project_id) == []


async def test_delete_answers_200_even_when_temporal_is_away(
    api: Api, owner: User, workflows: FakeWorkflows
) -> None:
    created = await api.create_project(owner)
    workflows.cancel_fails = True

    response = await api.http.delete(
        f"{PROJECTS}/{created['project']['id']}", headers=owner.headers
    )

    assert response.status_code == 200, response.text
    assert api.build_ids(created["project"]["id"]) == []


@pytest.mark.parametrize("field", ["repoUrl", "branch"])
async def test_a_nul_byte_in_the_repository_or_branch_is_a_400(
    api: Api, owner: User, workflows: FakeWorkflows, field: str
) -> None:
    body = {"name": "app", "repoUrl": api.shared_repo().url, "branch": "main"}
    body[field] += "\x00x"

    response = await api.http.post(PROJECTS, json=body, headers=owner.headers)

    assert_error(response, 400)
    assert workflows.started == []
