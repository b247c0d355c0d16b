"""How invalid input is described to the caller (api.errors): always a 400 with a message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Query

from api.deps import BuildId
from api.errors import _describe, install
from api.schemas import ProjectIn
from kiln.errors import Conflict, Forbidden, NotFound


def test_a_path_id_error_names_the_id() -> None:
    error = {"type": "int_parsing", "loc": ("path", "buildId"), "msg": "Input should be ..."}
    assert _describe(error) == "buildId must be a positive integer"


def test_a_body_that_is_not_json_is_described_as_such() -> None:
    error = {"type": "json_invalid", "loc": ("body", 12), "msg": "JSON decode error"}
    assert _describe(error) == "Request body is not valid JSON"


def test_a_body_field_error_is_shown_with_its_dotted_field_name() -> None:
    error = {"type": "missing", "loc": ("body", "steps", 2, "name"), "msg": "Field required"}
    assert _describe(error) == "steps.2.name: Field required"


def test_a_query_parameter_error_is_shown_with_its_name() -> None:
    error = {"type": "int_parsing", "loc": ("query", "offset"), "msg": "Input should be int"}
    assert _describe(error) == "offset: Input should be int"


def test_an_error_about_the_whole_body_is_just_its_message() -> None:
    assert _describe({"type": "missing", "loc": ("body",), "msg": "Field required"}) == (
        "Field required"
    )
    assert _describe({"loc": ("body",)}) == "invalid value"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install(app)

    @app.get("/builds/{buildId}")
    def get_build(build_id: BuildId, offset: int = Query(0, ge=0)) -> dict[str, Any]:
        return {"id": build_id, "offset": offset}

    @app.post("/projects")
    def create(body: ProjectIn) -> dict[str, Any]:
        return {"name": body.name}

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("Build not found")

    @app.get("/forbidden")
    def forbidden() -> None:
        raise Forbidden("You do not have access to this build")

    @app.get("/conflict")
    def conflict() -> None:
        raise Conflict("Build already finished (passed)")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln.test") as test_client:
        yield test_client


@pytest.mark.parametrize("build_id", ["abc", "0", "-1", "1.5", "٣", "1e3"])
async def test_a_bad_path_id_is_a_400_naming_the_id(
    client: httpx.AsyncClient, build_id: str
) -> None:
    answer = await client.get(f"/builds/{build_id}")
    assert answer.status_code == 400
    assert answer.json() == {"message": "buildId must be a positive integer"}


async def test_a_good_path_id_goes_through(client: httpx.AsyncClient) -> None:
    assert (await client.get("/builds/7?offset=3")).json() == {"id": 7, "offset": 3}


async def test_a_bad_query_parameter_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    answer = await client.get("/builds/7?offset=-1")
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("offset: ")


async def test_a_body_that_is_not_json_is_a_400_saying_so(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/projects", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json() == {"message": "Request body is not valid JSON"}


async def test_a_bad_body_field_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/projects", json={"name": "app", "repoUrl": "https://x/y", "branch": "-x"}
    )
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("branch: ")
    assert "is not a valid branch name" in answer.json()["message"]


async def test_a_missing_body_field_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    answer = await client.post("/projects", json={"name": "app"})
    assert answer.status_code == 400
    assert answer.json() == {"message": "repoUrl: Field required"}


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/missing", 404, "Build not found"),
        ("/forbidden", 403, "You do not have access to this build"),
        ("/conflict", 409, "Build already finished (passed)"),
    ],
)
async def test_request_errors_from_the_core_keep_their_status_and_message(
    client: httpx.AsyncClient, path: str, status: int, text: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == status
    assert answer.json() == {"message": text}


async def test_an_unknown_route_answers_with_a_message_too(client: httpx.AsyncClient) -> None:
    answer = await client.get("/nowhere")
    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found"}
