"""Ids in paths and who may use them (docs/api.md, Ids and Ownership): a malformed id is a 400
naming it, a well-formed id that names nothing a 404, another user's build or project a 403;
unknown routes and methods answer `{message}` too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.support import PROJECTS, Api, FakeWorkflows, User, assert_error

BUILD_ENDPOINTS = [
    ("GET", "/api/build/{}"),
    ("GET", "/api/build/{}/logs"),
    ("POST", "/api/build/rebuild/{}"),
    ("POST", "/api/build/{}/cancel"),
]
PROJECT_ENDPOINTS = [
    ("GET", PROJECTS + "/{}"),
    ("PATCH", PROJECTS + "/{}"),
    ("DELETE", PROJECTS + "/{}"),
]
ENDPOINTS = [
    pytest.param(method, template, id=f"{method} {template}")
    for method, template in BUILD_ENDPOINTS + PROJECT_ENDPOINTS
]


def id_name(template: str) -> str:
    return "buildId" if template.startswith("/api/build/") else "projectId"


def body_for(method: str) -> dict[str, Any] | None:
    return {"name": "renamed"} if method == "PATCH" else None


@dataclass(frozen=True)
class Owned:
    owner: User
    intruder: User
    project: dict[str, Any]
    build: dict[str, Any]

    def id_for(self, template: str) -> int:
        item = self.build if id_name(template) == "buildId" else self.project
        value: int = item["id"]
        return value


@pytest.fixture(scope="module")
async def owned(api: Api) -> Owned:
    owner, intruder = await api.register(), await api.register()
    created = await api.create_project(owner)
    api.workflows.reset()  # whichever test comes first sees only what it did
    return Owned(owner, intruder, created["project"], created["build"])


MALFORMED = [
    "abc",
    "0",
    "-1",
    "1.5",
    "+1",
    "1e3",
    "0x1",
    "%D9%A3",  # Arabic-Indic digit three
    "%C2%B2",  # superscript two
    "1" * 31,
]


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
@pytest.mark.parametrize("raw_id", MALFORMED)
async def test_a_malformed_id_is_a_400_naming_the_id(
    api: Api, owned: Owned, method: str, template: str, raw_id: str
) -> None:
    response = await api.http.request(
        method, template.format(raw_id), headers=owned.owner.headers, json=body_for(method)
    )

    assert assert_error(response, 400) == f"{id_name(template)} must be a positive integer"


@pytest.mark.parametrize("template", ["/api/build/{}", PROJECTS + "/{}"])
async def test_an_id_of_31_digits_is_malformed_even_at_ten_to_the_thirtieth(
    api: Api, owned: Owned, template: str
) -> None:
    response = await api.http.get(template.format(10**30), headers=owned.owner.headers)

    assert assert_error(response, 400) == f"{id_name(template)} must be a positive integer"


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
@pytest.mark.parametrize("missing_id", ["2147483647", "2147483648", "9" * 30])
async def test_a_well_formed_id_that_names_nothing_is_a_404(
    api: Api, owned: Owned, method: str, template: str, missing_id: str
) -> None:
    response = await api.http.request(
        method, template.format(missing_id), headers=owned.owner.headers, json=body_for(method)
    )

    expected = "Build not found" if id_name(template) == "buildId" else "Project not found"
    assert assert_error(response, 404) == expected


async def test_an_id_with_leading_zeros_names_the_same_build(api: Api, owned: Owned) -> None:
    response = await api.http.get(f"/api/build/000{owned.build['id']}", headers=owned.owner.headers)

    assert response.status_code == 200, response.text
    assert response.json()["build"]["id"] == owned.build["id"]


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
async def test_another_users_build_or_project_is_a_403(
    api: Api, owned: Owned, workflows: FakeWorkflows, method: str, template: str
) -> None:
    response = await api.http.request(
        method,
        template.format(owned.id_for(template)),
        headers=owned.intruder.headers,
        json=body_for(method),
    )

    expected = (
        "You do not have access to this build"
        if id_name(template) == "buildId"
        else "You do not have access to this project"
    )
    assert assert_error(response, 403) == expected
    # Nothing was done on the intruder's behalf.
    assert (workflows.started, workflows.canceled, workflows.woken) == ([], [], [])
    project = await api.project(owned.owner, owned.project["id"])
    assert project["name"] == owned.project["name"]
    assert [build["id"] for build in project["builds"]] == [owned.build["id"]]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_build_endpoint_without_an_id_is_a_400_after_the_token(
    api: Api, owned: Owned, method: str
) -> None:
    path = "/api/build/" if method == "GET" else "/api/build/rebuild/"

    with_token = await api.http.request(method, path, headers=owned.owner.headers)
    without_token = await api.http.request(method, path)

    assert assert_error(with_token, 400) == "buildId is missing"
    assert assert_error(without_token, 401) == "Authorization token is missing"


async def test_an_unknown_route_is_a_404_with_a_message(api: Api, owned: Owned) -> None:
    response = await api.http.get("/api/no-such-thing", headers=owned.owner.headers)

    assert assert_error(response, 404) == "Not Found"


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/build/1"), ("DELETE", "/api/build/1"), ("GET", "/api/auth/login")],
)
async def test_a_wrong_method_is_a_405_with_a_message(
    api: Api, owned: Owned, method: str, path: str
) -> None:
    response = await api.http.request(method, path, headers=owned.owner.headers)

    assert assert_error(response, 405) == "Method Not Allowed"
