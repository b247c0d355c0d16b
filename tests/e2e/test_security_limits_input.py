"""Hostile input is a clear 4xx, never a 500, and a build image cannot point the Docker daemon at
the machine or its private network.

- A NUL character in any text field (PostgreSQL refuses NUL in text: it was a 500) or a control
  character in a branch is a 400.
- A genuine token whose `sub` is a number beyond any user id (25 digits: it overflowed the
  database's integer) is a 401.
- An image whose registry is loopback, private or link-local is a 400 at creation and at PATCH.
  The test stack allows local repositories, which lifts that rule; the image tests therefore
  also run a second API on the same database with `allow_local_repos=False`: projects are
  created through the first (its git server is on 127.0.0.1) and changed through the second.
  No test sends anything to the refused registries: the check only resolves their names.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jose import jwt

from testbed.stack import Stack, running_api
from tests.support.helpers import PROJECTS, assert_error, new_repo

PASSWORD = "correct horse battery"
NUL = "\x00"
LOCAL_IMAGES = [
    "127.0.0.1:18392/x:latest",
    "localhost:5000/x",
    "10.0.0.5:5000/team/app:1",
    "169.254.169.254/latest",
    "[::1]:5000/x",
]


def fresh_email() -> str:
    return f"input-{uuid.uuid4().hex[:10]}@example.com"


def project_body(stack: Stack, **fields: Any) -> dict[str, Any]:
    repo = new_repo(stack.git, "input")
    body = {"name": "app", "repoUrl": repo.url, "image": stack.image, "buildCommand": "true"}
    return body | fields


@pytest.fixture(scope="module")
async def strict_api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the stack's database that refuses local addresses."""
    settings = stack.settings.model_copy(update={"allow_local_repos": False})
    async with running_api(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield client


# --- NUL and control characters -------------------------------------------------------------


NUL_FIELDS = {
    "register-email": ("/api/auth/register", "email"),
    "register-password": ("/api/auth/register", "password"),
    "register-name": ("/api/auth/register", "name"),
    "login-email": ("/api/auth/login", "email"),
    "login-password": ("/api/auth/login", "password"),
}


@pytest.mark.parametrize("case", list(NUL_FIELDS), ids=list(NUL_FIELDS))
async def test_a_nul_in_a_text_field_of_register_or_login_is_a_400(stack: Stack, case: str) -> None:
    path, field = NUL_FIELDS[case]
    body = {"email": fresh_email(), "password": PASSWORD, "name": "Jane Doe"}
    if path.endswith("login"):
        del body["name"]
    body[field] = f"a{NUL}{body[field]}" if field != "email" else f"a{NUL}b@example.com"

    response = await stack.http.post(path, json=body)

    message = assert_error(response, 400, case)
    assert "NUL" in message or "U+0000" in message, message


PROJECT_FIELDS = ["name", "repoUrl", "branch", "image", "buildCommand"]


@pytest.mark.parametrize("field", PROJECT_FIELDS)
async def test_a_nul_in_a_text_field_of_a_new_project_is_a_400(stack: Stack, field: str) -> None:
    user = await stack.register()
    body = project_body(stack)
    body[field] = f"{body.get(field, 'main')}{NUL}x"

    response = await stack.http.post(PROJECTS, json=body, headers=user.headers)

    assert_error(response, 400, field)
    listing = await stack.http.get(PROJECTS, headers=user.headers)
    assert listing.json()["projects"] == []


@pytest.mark.parametrize("field", ["name", "image", "buildCommand"])
async def test_a_nul_in_a_changed_setting_is_a_400_and_changes_nothing(
    stack: Stack, field: str
) -> None:
    user = await stack.register()
    created = await stack.create_project(user, project_body(stack)["repoUrl"], "true")
    project = created["project"]

    response = await stack.http.patch(
        f"{PROJECTS}/{project['id']}", json={field: f"a{NUL}b"}, headers=user.headers
    )

    assert "NUL" in assert_error(response, 400, field)
    fetched = await stack.http.get(f"{PROJECTS}/{project['id']}", headers=user.headers)
    assert {key: fetched.json()["project"][key] for key in project} == project
    await stack.wait_final(user, created["build"]["id"])


@pytest.mark.parametrize("branch", ["a\x00b", "a\x01b", "a\x1bb", "a\x7fb"])
async def test_a_branch_with_a_control_character_is_a_400(stack: Stack, branch: str) -> None:
    user = await stack.register()

    response = await stack.http.post(
        PROJECTS, json=project_body(stack, branch=branch), headers=user.headers
    )

    assert "branch" in assert_error(response, 400, repr(branch))


async def test_a_nul_in_a_path_id_is_a_400(stack: Stack) -> None:
    user = await stack.register()

    response = await stack.http.get("/api/build/1%00", headers=user.headers)

    assert "buildId" in assert_error(response, 400)


# --- token subjects -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["1" * 25, str(2**31), str(2**63), "0", "00000000000000000000000001"],
    ids=["25-digits", "past-int32", "past-int64", "zero", "padded"],
)
async def test_a_genuine_token_whose_subject_names_no_possible_user_is_a_401(
    stack: Stack, subject: str
) -> None:
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, stack.settings.jwt_secret, algorithm="HS256")

    for method, path in [("GET", PROJECTS), ("GET", "/api/build/1"), ("POST", PROJECTS)]:
        response = await stack.http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, json={}
        )
        assert_error(response, 401, f"{method} {path}")


# --- build images ---------------------------------------------------------------------------


@pytest.mark.parametrize("image", LOCAL_IMAGES)
async def test_a_new_project_whose_image_is_on_a_local_registry_is_a_400(
    stack: Stack, strict_api: httpx.AsyncClient, image: str
) -> None:
    user = await stack.register()

    response = await strict_api.post(
        PROJECTS, json=project_body(stack, image=image), headers=user.headers
    )

    message = assert_error(response, 400, image)
    assert "image registry" in message and "local or private" in message, message
    listing = await stack.http.get(PROJECTS, headers=user.headers)
    assert listing.json()["projects"] == []


@pytest.mark.parametrize("image", LOCAL_IMAGES)
async def test_changing_a_projects_image_to_a_local_registry_is_a_400(
    stack: Stack, strict_api: httpx.AsyncClient, image: str
) -> None:
    user = await stack.register()
    created = await stack.create_project(user, project_body(stack)["repoUrl"], "true")
    project_id = created["project"]["id"]

    response = await strict_api.patch(
        f"{PROJECTS}/{project_id}", json={"image": image}, headers=user.headers
    )

    message = assert_error(response, 400, image)
    assert "image registry" in message and "local or private" in message, message
    fetched = await stack.http.get(f"{PROJECTS}/{project_id}", headers=user.headers)
    assert fetched.json()["project"]["image"] == stack.image
    await stack.wait_final(user, created["build"]["id"])


async def test_an_image_from_a_public_registry_is_still_accepted(
    stack: Stack, strict_api: httpx.AsyncClient
) -> None:
    user = await stack.register()
    created = await stack.create_project(user, project_body(stack)["repoUrl"], "true")
    project_id = created["project"]["id"]

    # Docker Hub needs no look-up; the build never runs this image (PATCH applies to new builds).
    response = await strict_api.patch(
        f"{PROJECTS}/{project_id}", json={"image": "node:20-alpine"}, headers=user.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["project"]["image"] == "node:20-alpine"
    await stack.wait_final(user, created["build"]["id"])
