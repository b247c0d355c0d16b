"""The API contract (docs/api.md) for projects and builds.

Every error answers `{"message": "..."}`; a non-numeric id is a 400 (never a 422); a build or
project of another user is a 403 on every endpoint, one that does not exist a 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from kiln.repos import RepoRefused, check_repo_url
from testbed.git_server import GitRepo
from testbed.stack import Stack, User, running_api
from tests.support.helpers import PROJECTS, assert_error, count_builds, new_repo, rebuild, repo_name
from tests.support.records import BUILD_KEYS, TIMESTAMP

# The project fields the published page names (records carry more: tests/support/records.py).
SEED_PROJECT_KEYS = {"id", "name", "repoUrl", "branch", "image", "buildCommand", "createdAt"}


def assert_build_record(build: Any) -> None:
    """The contract's build record, with its timestamps in the contract's format. (That it has
    no other keys is checked once, by `test_every_build_record_has_exactly_the_contract_keys`.)"""
    assert BUILD_KEYS <= set(build), build
    assert isinstance(build["id"], int) and isinstance(build["projectId"], int)
    assert build["status"] in ("queued", "running", "passed", "failed", "canceled")
    assert TIMESTAMP.match(build["startedAt"]), build["startedAt"]
    assert build["finishedAt"] is None or TIMESTAMP.match(build["finishedAt"]), build


def assert_project_record(project: Any, *, with_builds: bool) -> None:
    assert SEED_PROJECT_KEYS <= set(project), project
    assert ("builds" in project) == with_builds, project
    assert TIMESTAMP.match(project["createdAt"]), project["createdAt"]
    for build in project.get("builds", []):
        assert_build_record(build)
        assert build["projectId"] == project["id"]


async def list_projects(stack: Stack, user: User) -> list[dict[str, Any]]:
    response = await stack.http.get(PROJECTS, headers=user.headers)
    assert response.status_code == 200, response.text
    projects: list[dict[str, Any]] = response.json()["projects"]
    return projects


@dataclass
class Finished:
    """One user's project whose first build has finished, and a second user who is not them."""

    owner: User
    intruder: User
    repo: GitRepo
    sha: str
    create_status: int
    created: dict[str, Any]
    build: dict[str, Any]

    @property
    def build_id(self) -> int:
        build_id: int = self.build["id"]
        return build_id

    @property
    def project_id(self) -> int:
        project_id: int = self.created["project"]["id"]
        return project_id


@pytest.fixture(scope="module")
async def finished(stack: Stack) -> Finished:
    """Shared by the read-only checks of this module, which must leave it as they found it."""
    owner = await stack.register()
    intruder = await stack.register()
    repo = stack.git.create_repo(repo_name("contract"))
    sha = repo.commit({"hello.txt": "hello contract\n"}, "first commit", author="Ada Lovelace")
    body = {
        "name": "contract-app",
        "repoUrl": repo.url,
        "image": stack.image,
        "buildCommand": "cat hello.txt && echo contract-build-done",
    }
    response = await stack.http.post(PROJECTS, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    build = await stack.wait_final(owner, created["build"]["id"])
    return Finished(owner, intruder, repo, sha, response.status_code, created, build)


# --- POST /api/project/projects -------------------------------------------------------------


async def test_create_project_answers_201_with_the_project_and_its_queued_build(
    stack: Stack, finished: Finished
) -> None:
    created = finished.created

    assert finished.create_status == 201
    assert set(created) == {"message", "project", "build"}
    assert created["message"] == "Project created"
    project, build = created["project"], created["build"]
    assert_project_record(project, with_builds=False)
    assert project["name"] == "contract-app"
    assert project["repoUrl"] == finished.repo.url
    assert project["branch"] == "main"  # the default when the request names none
    assert project["image"] == stack.image
    assert project["buildCommand"] == "cat hello.txt && echo contract-build-done"
    assert_build_record(build)
    assert build["status"] == "queued"
    assert build["projectId"] == project["id"]
    assert build["branch"] == "main"
    assert build["commitHash"] == finished.sha
    assert build["exitCode"] is None and build["finishedAt"] is None


async def test_create_project_builds_the_head_of_the_requested_branch(stack: Stack) -> None:
    user = await stack.register()
    repo = stack.git.create_repo(repo_name("contract"))
    repo.commit({"a.txt": "main\n"}, "on main")
    release_sha = repo.commit({"a.txt": "release\n"}, "on release", branch="release")

    created = await stack.create_project(user, repo.url, "cat a.txt", branch="release")

    assert created["project"]["branch"] == "release"
    assert created["build"]["branch"] == "release"
    assert created["build"]["commitHash"] == release_sha
    final = await stack.wait_final(user, created["build"]["id"])
    assert final["status"] == "passed", final


async def test_create_project_with_an_unknown_repository_is_a_bad_request(stack: Stack) -> None:
    user = await stack.register()
    body = {
        "name": "ghost",
        "repoUrl": f"{stack.git.base_url}/{repo_name('contract')}-does-not-exist.git",
        "image": stack.image,
        "buildCommand": "true",
    }

    response = await stack.http.post(PROJECTS, json=body, headers=user.headers)

    message = assert_error(response, 400)
    assert "not found" in message.lower(), message
    assert await list_projects(stack, user) == []


async def test_create_project_with_an_unknown_branch_is_a_bad_request_naming_it(
    stack: Stack,
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "contract")
    body = {"name": "x", "repoUrl": repo.url, "branch": "no-such-branch", "buildCommand": "true"}

    response = await stack.http.post(PROJECTS, json=body, headers=user.headers)

    message = assert_error(response, 400)
    assert "no-such-branch" in message and "not found" in message, message
    assert await list_projects(stack, user) == []


@pytest.mark.parametrize(
    "repo_url", ["http://127.0.0.1:notaport/app.git", "http://[::1/app.git", "https://h:99999/a"]
)
async def test_create_project_with_a_url_that_does_not_parse_is_a_bad_request(
    stack: Stack, repo_url: str
) -> None:
    user = await stack.register()
    body = {"name": "x", "repoUrl": repo_url, "buildCommand": "true"}

    response = await stack.http.post(PROJECTS, json=body, headers=user.headers)

    assert "not a valid URL" in assert_error(response, 400)
    assert await list_projects(stack, user) == []


@pytest.mark.parametrize(
    "repo_url",
    [
        "file:///srv/git/app.git",
        "ftp://example.com/app.git",
        "ssh://git@example.com/app.git",
        "git@example.com:acme/app.git",
        "git://example.com/app.git",
        "ext::sh -c touch% /tmp/kiln-pwned",
        "--upload-pack=touch /tmp/kiln-pwned",
        "/srv/git/app.git",
    ],
)
async def test_create_project_with_a_non_http_repo_url_is_a_bad_request(
    stack: Stack, repo_url: str
) -> None:
    user = await stack.register()
    body = {"name": "x", "repoUrl": repo_url, "buildCommand": "true"}

    response = await stack.http.post(PROJECTS, json=body, headers=user.headers)

    message = assert_error(response, 400)
    assert "http" in message, message
    assert await list_projects(stack, user) == []


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"repoUrl": "https://example.com/a.git"}},
        {"json": {"name": "x"}},
        {"json": {"name": "", "repoUrl": "https://example.com/a.git"}},
        {"json": {"name": "x", "repoUrl": "https://example.com/a.git", "branch": "a b"}},
        {"json": {"name": "x", "repoUrl": "https://example.com/a.git", "branch": "--force"}},
        {"json": {"name": "x", "repoUrl": 42}},
        {"json": ["x"]},
        {"content": b'{"name": "x", ', "headers": {"Content-Type": "application/json"}},
    ],
    ids=[
        "missing-name",
        "missing-repo-url",
        "empty-name",
        "branch-with-space",
        "branch-like-an-option",
        "repo-url-not-a-string",
        "json-array",
        "malformed-json",
    ],
)
async def test_create_project_with_invalid_input_is_a_bad_request(
    stack: Stack, request_kwargs: dict[str, Any]
) -> None:
    user = await stack.register()
    headers = request_kwargs.pop("headers", {}) | user.headers

    response = await stack.http.post(PROJECTS, headers=headers, **request_kwargs)

    assert_error(response, 400)


REFUSED_LOCAL_URLS = [
    "http://127.0.0.1/x.git",
    "http://127.1/x.git",
    "http://localhost:8080/x.git",
    "https://[::1]/x.git",
    "http://[::ffff:127.0.0.1]/x.git",
    "http://0.0.0.0/x.git",
    "http://10.1.2.3/x.git",
    "http://172.16.0.1/x.git",
    "http://192.168.0.10/x.git",
    "http://169.254.169.254/latest/meta-data",
    "http://user:secret@127.0.0.1/x.git",
]


@pytest.mark.parametrize("url", REFUSED_LOCAL_URLS)
def test_a_local_or_private_repo_url_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(RepoRefused, match="local or private"):
        check_repo_url(url, allow_local=False)

    check_repo_url(url, allow_local=True)  # a test or dev setup may opt in


def test_a_public_repo_url_is_accepted_and_non_http_refused_even_when_local_is_allowed() -> None:
    check_repo_url("https://93.184.216.34/acme/app.git", allow_local=False)
    with pytest.raises(RepoRefused, match="http"):
        check_repo_url("file:///tmp/app.git", allow_local=True)
    with pytest.raises(RepoRefused, match="no host"):
        check_repo_url("http:///app.git", allow_local=True)


async def test_an_api_without_local_repos_refuses_a_loopback_repo_url(stack: Stack) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "contract")  # served on 127.0.0.1
    strict = stack.settings.model_copy(update={"allow_local_repos": False})
    body = {"name": "x", "repoUrl": repo.url, "image": stack.image, "buildCommand": "true"}

    async with running_api(strict) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.post(PROJECTS, json=body, headers=user.headers)

    message = assert_error(response, 400)
    assert "local or private" in message, message
    assert await list_projects(stack, user) == []


# --- GET /api/project/projects --------------------------------------------------------------


async def test_project_list_has_only_the_callers_projects_with_builds_newest_first(
    stack: Stack,
) -> None:
    owner = await stack.register()
    other = await stack.register()
    repo = new_repo(stack.git, "contract")
    mine = await stack.create_project(owner, repo.url, "true", name="mine")
    theirs = await stack.create_project(other, repo.url, "true", name="theirs")
    first_id = mine["build"]["id"]
    await stack.wait_final(owner, first_id)
    again = await rebuild(stack, owner, first_id)
    assert again.status_code == 201, again.text
    second_id = again.json()["build"]["id"]

    response = await stack.http.get(PROJECTS, headers=owner.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "projects"}
    assert body["message"] == "Projects fetched"
    [project] = body["projects"]
    assert_project_record(project, with_builds=True)
    assert project == mine["project"] | {"builds": project["builds"]}
    assert [build["id"] for build in project["builds"]] == [second_id, first_id]
    assert [p["id"] for p in await list_projects(stack, other)] == [theirs["project"]["id"]]
    await stack.wait_final(owner, second_id)
    await stack.wait_final(other, theirs["build"]["id"])


async def test_every_build_record_has_exactly_the_contract_keys(
    stack: Stack, finished: Finished
) -> None:
    owner = finished.owner
    again = await rebuild(stack, owner, finished.build_id)
    assert again.status_code == 201, again.text
    requeued = again.json()["build"]
    fetched = await stack.build(owner, finished.build_id)
    [project] = [p for p in await list_projects(stack, owner) if p["id"] == finished.project_id]
    await stack.wait_final(owner, requeued["id"])

    records = {
        "create-project": finished.created["build"],
        "rebuild": requeued,
        "get-build": {key: value for key, value in fetched.items() if key != "project"},
    } | {f"project-list-build-{b['id']}": b for b in project["builds"]}
    differences = {
        where: {
            "extra": sorted(set(record) - BUILD_KEYS),
            "missing": sorted(BUILD_KEYS - set(record)),
        }
        for where, record in records.items()
        if set(record) != BUILD_KEYS
    }
    assert differences == {}


# --- GET / DELETE /api/project/projects/{projectId} -----------------------------------------


async def test_owner_gets_their_project_with_its_builds(stack: Stack, finished: Finished) -> None:
    response = await stack.http.get(
        f"{PROJECTS}/{finished.project_id}", headers=finished.owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "project"}
    assert isinstance(body["message"], str) and body["message"]
    project = body["project"]
    assert_project_record(project, with_builds=True)
    assert project["id"] == finished.project_id
    assert project["name"] == "contract-app" and project["repoUrl"] == finished.repo.url
    [build] = [build for build in project["builds"] if build["id"] == finished.build_id]
    assert build | {"project": finished.build["project"]} == finished.build


async def test_owner_deletes_their_project_and_its_builds_go_with_it(stack: Stack) -> None:
    owner = await stack.register()
    repo = new_repo(stack.git, "contract")
    created = await stack.create_project(owner, repo.url, "true")
    project_id, build_id = created["project"]["id"], created["build"]["id"]
    await stack.wait_final(owner, build_id)

    response = await stack.http.delete(f"{PROJECTS}/{project_id}", headers=owner.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "projectId"}
    assert isinstance(body["message"], str) and body["message"]
    assert body["projectId"] == project_id
    assert await list_projects(stack, owner) == []
    for method, path in [
        ("GET", f"{PROJECTS}/{project_id}"),
        ("DELETE", f"{PROJECTS}/{project_id}"),
        ("GET", f"/api/build/{build_id}"),
        ("GET", f"/api/build/{build_id}/logs"),
        ("POST", f"/api/build/rebuild/{build_id}"),
    ]:
        after = await stack.http.request(method, path, headers=owner.headers)
        assert_error(after, 404)


# --- GET /api/build/{buildId} and /logs -----------------------------------------------------


async def test_get_build_answers_the_record_with_its_nested_project(
    stack: Stack, finished: Finished
) -> None:
    response = await stack.http.get(
        f"/api/build/{finished.build_id}", headers=finished.owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "build"}
    assert body["message"] == "Build fetched"
    build = body["build"]
    project = build.pop("project")
    assert_build_record(build)
    assert build["id"] == finished.build_id
    assert build["status"] == "passed" and build["exitCode"] == 0
    assert TIMESTAMP.match(build["finishedAt"])
    assert build["commitHash"] == finished.sha
    assert build["commit"] == "first commit"
    assert build["commitAuthor"] == "Ada Lovelace"
    assert build["branch"] == "main"
    assert build["projectId"] == finished.project_id
    assert project == {
        "id": finished.project_id,
        "name": "contract-app",
        "repoUrl": finished.repo.url,
        "branch": "main",
    }


async def test_get_build_logs_answers_the_build_output(stack: Stack, finished: Finished) -> None:
    response = await stack.http.get(
        f"/api/build/{finished.build_id}/logs", headers=finished.owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert {"message", "buildId", "logs"} <= set(body)
    assert body["message"] == "Build logs fetched"
    assert body["buildId"] == finished.build_id
    assert isinstance(body["logs"], str)
    assert "hello contract" in body["logs"] and "contract-build-done" in body["logs"]


@pytest.mark.parametrize("offset", ["-1", "abc", "1.5", "99999999999999999999"], ids=str)
async def test_get_build_logs_with_an_invalid_offset_is_a_bad_request(
    stack: Stack, finished: Finished, offset: str
) -> None:
    """Past 2**63 an offset names no byte any log can have: invalid input, not a crash."""
    response = await stack.http.get(
        f"/api/build/{finished.build_id}/logs",
        params={"offset": offset},
        headers=finished.owner.headers,
    )

    assert_error(response, 400)


# --- POST /api/build/rebuild/{buildId} ------------------------------------------------------


async def test_rebuild_queues_a_new_build_of_the_same_commit_and_leaves_the_original(
    stack: Stack,
) -> None:
    owner = await stack.register()
    repo = stack.git.create_repo(repo_name("contract"))
    sha = repo.commit({"v.txt": "version one\n"}, "release v1", author="Grace Hopper")
    created = await stack.create_project(owner, repo.url, "cat v.txt")
    original = await stack.wait_final(owner, created["build"]["id"])
    repo.commit({"v.txt": "version two\n"}, "release v2")  # the branch moves on

    response = await rebuild(stack, owner, original["id"])

    # The published page gives no status code; Kiln answers 201 Created, as for a new project.
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"message", "build"}
    assert body["message"] == "Build re-queued"
    queued = body["build"]
    assert_build_record(queued)
    assert queued["id"] != original["id"]
    assert queued["status"] == "queued"
    assert queued["exitCode"] is None and queued["finishedAt"] is None
    for key in ("commit", "branch", "commitAuthor", "commitHash", "projectId"):
        assert queued[key] == original[key], key
    assert queued["commitHash"] == sha
    assert (queued["commit"], queued["commitAuthor"]) == ("release v1", "Grace Hopper")
    assert await stack.build(owner, original["id"]) == original
    final = await stack.wait_final(owner, queued["id"])
    assert final["status"] == "passed" and final["commitHash"] == sha
    assert "version one" in await stack.logs(owner, queued["id"])
    assert await stack.build(owner, original["id"]) == original


@asynccontextmanager
async def builds_refuse_inserts(stack: Stack) -> AsyncIterator[None]:
    """A trigger that makes every INSERT into `builds` fail, dropped again on the way out."""
    if stack.settings.is_sqlite:
        create = [
            "CREATE TRIGGER kiln_test_refuse_builds BEFORE INSERT ON builds "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS kiln_test_refuse_builds"]
    else:
        create = [
            "CREATE OR REPLACE FUNCTION kiln_test_refuse_builds() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
            "CREATE TRIGGER kiln_test_refuse_builds BEFORE INSERT ON builds "
            "FOR EACH ROW EXECUTE FUNCTION kiln_test_refuse_builds()",
        ]
        drop = [
            "DROP TRIGGER IF EXISTS kiln_test_refuse_builds ON builds",
            "DROP FUNCTION IF EXISTS kiln_test_refuse_builds()",
        ]

    def run(statements: list[str]) -> None:
        with stack.sessions.begin() as session:
            for statement in statements:
                session.execute(text(statement))

    await asyncio.to_thread(run, create)
    try:
        yield
    finally:
        await asyncio.to_thread(run, drop)


async def test_rebuild_whose_insert_fails_answers_500_and_adds_no_build(
    stack: Stack, finished: Finished
) -> None:
    listing_before = await list_projects(stack, finished.owner)
    builds_before = await asyncio.to_thread(count_builds, stack)

    async with builds_refuse_inserts(stack):
        response = await rebuild(stack, finished.owner, finished.build_id)
        builds_after = await asyncio.to_thread(count_builds, stack)

    assert assert_error(response, 500) == "Failed to insert the new build record"
    assert builds_after == builds_before
    assert await list_projects(stack, finished.owner) == listing_before


# --- errors common to the build and project endpoints ----------------------------------------

BUILD_ENDPOINTS = [
    ("GET", "/api/build/{}"),
    ("POST", "/api/build/rebuild/{}"),
    ("GET", "/api/build/{}/logs"),
]
PROJECT_ENDPOINTS = [("GET", PROJECTS + "/{}"), ("DELETE", PROJECTS + "/{}")]
ID_ENDPOINTS = BUILD_ENDPOINTS + PROJECT_ENDPOINTS
ENDPOINT_IDS = ["get-build", "rebuild", "build-logs", "get-project", "delete-project"]


@pytest.mark.parametrize(("method", "template"), ID_ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize(
    "raw_id",
    ["abc", "12abc", "1.5", "0x1f", "1e3", "%C2%B2", "%E2%91%A0"],
    ids=[
        "letters",
        "digits-then-letters",
        "decimal",
        "hex",
        "exponent",
        "superscript-two",
        "circled-one",
    ],
)
async def test_a_non_numeric_id_is_a_bad_request(
    stack: Stack, finished: Finished, method: str, template: str, raw_id: str
) -> None:
    response = await stack.http.request(
        method, template.format(raw_id), headers=finished.owner.headers
    )

    assert_error(response, 400)


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_build_endpoint_without_a_build_id_is_a_bad_request(
    stack: Stack, finished: Finished, method: str
) -> None:
    path = "/api/build/rebuild/" if method == "POST" else "/api/build/"

    response = await stack.http.request(method, path, headers=finished.owner.headers)

    assert_error(response, 400)


@pytest.mark.parametrize(("method", "template"), ID_ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("missing_id", ["987654321", "2147483648", "999999999999"])
async def test_an_id_that_names_nothing_is_not_found(
    stack: Stack, finished: Finished, method: str, template: str, missing_id: str
) -> None:
    """Numbers past the 32-bit id column still name nothing: not found, never a server error."""
    response = await stack.http.request(
        method, template.format(missing_id), headers=finished.owner.headers
    )

    assert_error(response, 404)


PROTECTED = [
    ("GET", PROJECTS),
    ("POST", PROJECTS),
    ("GET", PROJECTS + "/1"),
    ("DELETE", PROJECTS + "/1"),
    ("GET", "/api/build/1"),
    ("POST", "/api/build/rebuild/1"),
    ("POST", "/api/build/rebuild/"),
    ("GET", "/api/build/1/logs"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt"], ids=["none", "garbage"])
async def test_every_protected_endpoint_needs_a_valid_token(
    stack: Stack, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    body = {"name": "x", "repoUrl": "https://example.com/a.git"} if method == "POST" else None

    response = await stack.http.request(method, path, headers=headers, json=body)

    assert_error(response, 401)


async def test_another_user_is_forbidden_on_every_build_and_project_endpoint(
    stack: Stack,
) -> None:
    owner = await stack.register()
    intruder = await stack.register()
    repo = new_repo(stack.git, "contract", {"a.txt": "secret output\n"})
    created = await stack.create_project(owner, repo.url, "cat a.txt")
    build_id, project_id = created["build"]["id"], created["project"]["id"]
    await stack.wait_final(owner, build_id)
    owner_view = await list_projects(stack, owner)
    builds_before = await asyncio.to_thread(count_builds, stack)

    for method, template in ID_ENDPOINTS:
        resource = build_id if "/api/build/" in template else project_id
        response = await stack.http.request(
            method, template.format(resource), headers=intruder.headers
        )
        message = assert_error(response, 403)
        assert "secret output" not in message

    assert await list_projects(stack, owner) == owner_view
    assert await stack.logs(owner, build_id) != ""
    assert await asyncio.to_thread(count_builds, stack) == builds_before
    assert await list_projects(stack, intruder) == []


async def test_rebuild_of_another_users_build_is_forbidden(
    stack: Stack, finished: Finished
) -> None:
    response = await rebuild(stack, finished.intruder, finished.build_id)

    assert_error(response, 403)
    assert await stack.build(finished.owner, finished.build_id) == finished.build


async def test_unknown_routes_and_methods_answer_with_a_message(
    stack: Stack, finished: Finished
) -> None:
    missing = await stack.http.get("/api/no-such-thing", headers=finished.owner.headers)
    wrong_method = await stack.http.put(
        f"/api/build/{finished.build_id}", headers=finished.owner.headers
    )

    assert_error(missing, 404)
    assert_error(wrong_method, 405)
