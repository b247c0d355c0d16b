"""The secrets API and the project's `env`: create or replace, list by name, delete; the name,
value and count rules (a 400 with a clear message that changes nothing); owner only; values
never in an answer; secrets deleted with their project."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from kiln.crypto import generate_key
from kiln.secret_models import ProjectSecret
from testbed.stack import Stack, User
from tests.support.helpers import PROJECTS, assert_error, new_repo

VALUE = "s3cr3t value, with spaces "
# A 64 KiB value and its JSON body fit under this request cap.
BODY_CAP = 128 * 1024


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    return {"secrets_key": generate_key(), "json_max_bytes": BODY_CAP}


async def new_project(stack: Stack, user: User, **fields: Any) -> dict[str, Any]:
    repo = new_repo(stack.git, "secrets-api")
    project: dict[str, Any] = (await stack.create_project(user, repo.url, "true", **fields))[
        "project"
    ]
    return project


def secrets_path(project_id: int, name: str | None = None) -> str:
    base = f"{PROJECTS}/{project_id}/secrets"
    return base if name is None else f"{base}/{name}"


async def put(stack: Stack, user: User, project_id: int, name: str, value: Any) -> Any:
    return await stack.http.put(
        secrets_path(project_id, name), json={"value": value}, headers=user.headers
    )


async def names(stack: Stack, user: User, project_id: int) -> list[str]:
    response = await stack.http.get(secrets_path(project_id), headers=user.headers)
    assert response.status_code == 200, response.text
    return [secret["name"] for secret in response.json()["secrets"]]


def stored_count(stack: Stack, project_id: int) -> int:
    with stack.sessions() as session:
        query = select(func.count()).where(ProjectSecret.project_id == project_id)
        return int(session.scalar(query) or 0)


async def test_a_secret_is_created_replaced_listed_by_name_and_deleted(stack: Stack) -> None:
    user = await stack.register()
    project_id = (await new_project(stack, user))["id"]

    created = await put(stack, user, project_id, "NPM_TOKEN", VALUE)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["message"] == "Secret saved"
    assert body["secret"]["name"] == "NPM_TOKEN"
    assert set(body["secret"]) == {"name", "createdAt", "updatedAt"}
    assert body["secret"]["createdAt"] == body["secret"]["updatedAt"]

    replaced = (await put(stack, user, project_id, "NPM_TOKEN", "another value")).json()
    assert replaced["secret"]["createdAt"] == body["secret"]["createdAt"]
    assert replaced["secret"]["updatedAt"] >= body["secret"]["updatedAt"]
    assert (await put(stack, user, project_id, "A_FIRST", "x")).status_code == 200

    listed = await stack.http.get(secrets_path(project_id), headers=user.headers)
    assert listed.json()["message"] == "Secrets fetched"
    assert [s["name"] for s in listed.json()["secrets"]] == ["A_FIRST", "NPM_TOKEN"]
    for answer in (created.text, listed.text):
        assert VALUE not in answer and "another value" not in answer

    deleted = await stack.http.delete(secrets_path(project_id, "NPM_TOKEN"), headers=user.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"message": "Secret deleted", "name": "NPM_TOKEN"}
    again = await stack.http.delete(secrets_path(project_id, "NPM_TOKEN"), headers=user.headers)
    assert assert_error(again, 404) == "Secret not found"
    assert await names(stack, user, project_id) == ["A_FIRST"]


def test_values_are_stored_sealed(stack: Stack) -> None:
    """Nothing in the database holds a value in clear."""
    with stack.sessions() as session:
        sealed = list(session.scalars(select(ProjectSecret.sealed)))
    assert sealed
    assert all(VALUE not in text and "another value" not in text for text in sealed)


@pytest.mark.parametrize(
    "name",
    ["lower", "1ABC", "A-B", "A.B", "ÄB", "HOME", "PATH", "KILN_TOKEN", "KILN_", "A" * 129, "A B"],
)
async def test_a_bad_or_reserved_name_is_a_400_that_stores_nothing(stack: Stack, name: str) -> None:
    user = await stack.register()
    project_id = (await new_project(stack, user))["id"]
    message = assert_error(await put(stack, user, project_id, name, VALUE), 400, name)
    assert "name" in message or "reserved" in message, message
    assert_error(
        await stack.http.delete(secrets_path(project_id, name), headers=user.headers), 400, name
    )
    assert stored_count(stack, project_id) == 0


@pytest.mark.parametrize("name", ["_X", "CI", "NPM_TOKEN", "A" * 128, "A1_B2", "KILNX"])
async def test_names_within_the_rules_are_taken(stack: Stack, name: str) -> None:
    user = await stack.register()
    project_id = (await new_project(stack, user))["id"]
    assert (await put(stack, user, project_id, name, VALUE)).status_code == 200
    assert await names(stack, user, project_id) == [name]


async def test_a_value_is_at_most_64_kib_with_no_nul_and_must_be_a_string(stack: Stack) -> None:
    user = await stack.register()
    project_id = (await new_project(stack, user))["id"]
    largest = "é" * (32 * 1024)  # 64 KiB in UTF-8

    assert (await put(stack, user, project_id, "BIG", largest)).status_code == 200
    too_big = assert_error(await put(stack, user, project_id, "BIGGER", largest + "x"), 400)
    assert "65536 bytes" in too_big
    assert "x" * 20 not in too_big
    assert "NUL" in assert_error(await put(stack, user, project_id, "NUL", "a\0b"), 400)
    for bad in (None, 12, ["x"], {"v": "x"}):
        assert_error(await put(stack, user, project_id, "WRONG", bad), 400, repr(bad))
    for body in ({}, {"value": "x", "extra": 1}):
        response = await stack.http.put(
            secrets_path(project_id, "BODY"), json=body, headers=user.headers
        )
        assert_error(response, 400, repr(body))
    assert await names(stack, user, project_id) == ["BIG"]


async def test_a_project_has_at_most_100_secrets(stack: Stack) -> None:
    user = await stack.register()
    project_id = (await new_project(stack, user))["id"]
    for index in range(100):
        assert (await put(stack, user, project_id, f"S_{index}", "v")).status_code == 200

    message = assert_error(await put(stack, user, project_id, "ONE_MORE", "v"), 400)
    assert "100" in message
    # Replacing one of the hundred is still fine.
    assert (await put(stack, user, project_id, "S_7", "new value")).status_code == 200
    assert stored_count(stack, project_id) == 100


async def test_only_the_owner_may_see_or_change_a_projects_secrets(stack: Stack) -> None:
    owner, other = await stack.register(), await stack.register()
    project_id = (await new_project(stack, owner))["id"]
    assert (await put(stack, owner, project_id, "MINE", VALUE)).status_code == 200

    requests: list[tuple[str, str]] = [
        ("PUT", secrets_path(project_id, "MINE")),
        ("GET", secrets_path(project_id)),
        ("DELETE", secrets_path(project_id, "MINE")),
    ]
    for method, path in requests:
        body = {"value": "stolen"} if method == "PUT" else None
        forbidden = await stack.http.request(method, path, json=body, headers=other.headers)
        assert_error(forbidden, 403, method)
        assert_error(await stack.http.request(method, path, json=body), 401, method)
        missing = path.replace(f"/{project_id}/", "/999999/")
        assert_error(
            await stack.http.request(method, missing, json=body, headers=owner.headers),
            404,
            method,
        )
        malformed = path.replace(f"/{project_id}/", "/abc/")
        assert_error(
            await stack.http.request(method, malformed, json=body, headers=owner.headers),
            400,
            method,
        )
    assert await names(stack, owner, project_id) == ["MINE"]


async def test_a_deleted_project_takes_its_secrets_with_it(stack: Stack) -> None:
    user = await stack.register()
    created = await stack.create_project(user, new_repo(stack.git, "secrets-api").url, "true")
    project_id = created["project"]["id"]
    # The build ends first: this test is about the secrets, not deleting a running build.
    await stack.wait_final(user, created["build"]["id"])
    assert (await put(stack, user, project_id, "GONE_SOON", VALUE)).status_code == 200

    response = await stack.http.delete(f"{PROJECTS}/{project_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    assert stored_count(stack, project_id) == 0


# --- the project's env ------------------------------------------------------------------------


async def test_env_is_set_at_creation_shown_in_the_record_and_replaced_by_patch(
    stack: Stack,
) -> None:
    user = await stack.register()
    project = await new_project(stack, user, env={"NODE_ENV": "production", "LEVEL": " 2 "})
    assert project["env"] == {"NODE_ENV": "production", "LEVEL": " 2 "}
    assert project["hasCredentials"] is False

    path = f"{PROJECTS}/{project['id']}"
    patched = await stack.http.patch(path, json={"env": {"DEBUG": "1"}}, headers=user.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["project"]["env"] == {"DEBUG": "1"}
    fetched = (await stack.http.get(path, headers=user.headers)).json()["project"]
    assert fetched["env"] == {"DEBUG": "1"}
    listed = (await stack.http.get(PROJECTS, headers=user.headers)).json()["projects"]
    assert [p["env"] for p in listed] == [{"DEBUG": "1"}]
    cleared = await stack.http.patch(path, json={"env": {}}, headers=user.headers)
    assert cleared.json()["project"]["env"] == {}
    assert_error(await stack.http.patch(path, json={"env": None}, headers=user.headers), 400)


@pytest.mark.parametrize(
    "env",
    [
        {"lower": "x"},
        {"HOME": "/root"},
        {"PATH": "/evil"},
        {"KILN_BUILD_ID": "1"},
        {"A": 1},
        {"A": None},
        {"A": "a\0b"},
        {"A": "x" * (64 * 1024 + 1)},
        {f"V_{index}": "x" for index in range(101)},
        ["A=B"],
    ],
    ids=lambda env: str(env)[:30],
)
async def test_a_bad_env_is_a_400_at_creation_and_patch_that_changes_nothing(
    stack: Stack, env: Any
) -> None:
    user = await stack.register()
    repo = new_repo(stack.git, "secrets-api")
    body = {"name": "app", "repoUrl": repo.url, "image": stack.image, "env": env}
    assert_error(await stack.http.post(PROJECTS, json=body, headers=user.headers), 400)
    assert (await stack.http.get(PROJECTS, headers=user.headers)).json()["projects"] == []

    project = await new_project(stack, user, env={"KEEP": "me"})
    path = f"{PROJECTS}/{project['id']}"
    assert_error(await stack.http.patch(path, json={"env": env}, headers=user.headers), 400)
    fetched = (await stack.http.get(path, headers=user.headers)).json()["project"]
    assert fetched["env"] == {"KEEP": "me"}
