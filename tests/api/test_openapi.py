"""/openapi.json describes what the API answers (docs/api.md): the records with exactly their
fields, the error body, every route's status codes, and integer path ids. A client generated
from it must expect what the API sends."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import Api
from tests.support.records import BUILD_KEYS, PROJECT_KEYS

SCHEMAS = "#/components/schemas/"

# Per route, the status codes docs/api.md gives it (success first). Routes that take a JSON
# body may also answer 413 (the body cap, KILN_JSON_MAX_BYTES).
ROUTES: dict[tuple[str, str], set[str]] = {
    ("post", "/api/auth/register"): {"201", "400", "409", "413"},
    ("post", "/api/auth/login"): {"200", "400", "401", "413", "429"},
    ("post", "/api/project/projects"): {"201", "400", "401", "413", "500", "503", "429"},
    ("get", "/api/project/projects"): {"200", "401"},
    ("get", "/api/project/projects/{projectId}"): {"200", "400", "401", "403", "404"},
    ("patch", "/api/project/projects/{projectId}"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "413",
        "429",
    },
    ("delete", "/api/project/projects/{projectId}"): {"200", "400", "401", "403", "404"},
    ("get", "/api/build/{buildId}"): {"200", "400", "401", "403", "404"},
    ("post", "/api/build/rebuild/{buildId}"): {
        "201",
        "400",
        "401",
        "403",
        "404",
        "500",
        "503",
        "429",
    },
    ("get", "/api/build/{buildId}/logs"): {"200", "400", "401", "403", "404"},
    ("post", "/api/build/{buildId}/cancel"): {"202", "400", "401", "403", "404", "409", "503"},
    ("post", "/api/webhook/github"): {"200", "202", "400", "401", "413", "429", "500", "503"},
    ("put", "/api/project/projects/{projectId}/secrets/{name}"): {
        *("200", "400", "401", "403", "404", "413", "503"),
    },
    ("get", "/api/project/projects/{projectId}/secrets"): {"200", "400", "401", "403", "404"},
    ("delete", "/api/project/projects/{projectId}/secrets/{name}"): {
        *("200", "400", "401", "403", "404"),
    },
    ("put", "/api/project/projects/{projectId}/credentials"): {
        *("200", "400", "401", "403", "404", "413", "429", "503"),
    },
    ("delete", "/api/project/projects/{projectId}/credentials"): {
        *("200", "400", "401", "403", "404"),
    },
    ("put", "/api/project/projects/{projectId}/github-token"): {
        *("200", "400", "401", "403", "404", "413", "503"),
    },
    ("delete", "/api/project/projects/{projectId}/github-token"): {
        *("200", "400", "401", "403", "404"),
    },
    ("post", "/api/project/projects/{projectId}/hooks"): {
        *("201", "400", "401", "403", "404", "413", "503"),
    },
    ("get", "/api/project/projects/{projectId}/hooks"): {"200", "400", "401", "403", "404"},
    ("delete", "/api/project/projects/{projectId}/hooks/{hookId}"): {
        *("200", "400", "401", "403", "404"),
    },
}


def route_params() -> list[Any]:
    params = []
    for (method, path), codes in ROUTES.items():
        params.append(pytest.param(method, path, codes, id=f"{method} {path}"))
    return params


@pytest.fixture(scope="module")
async def openapi(api: Api) -> dict[str, Any]:
    response = await api.http.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def component(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi["components"]["schemas"][name]
    return schema


def answer_schema(openapi: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    """The component a route's answer with `status` refers to."""
    content = openapi["paths"][path][method]["responses"][status]["content"]
    ref: str = content["application/json"]["schema"]["$ref"]
    assert ref.startswith(SCHEMAS), ref
    return component(openapi, ref.removeprefix(SCHEMAS))


def assert_exact_fields(schema: dict[str, Any], fields: set[str]) -> None:
    """The object has exactly `fields`, all of them required (the API always sends them)."""
    assert schema["type"] == "object"
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields


def nullable(prop: dict[str, Any], kind: str) -> bool:
    return {option.get("type") for option in prop.get("anyOf", [])} == {kind, "null"}


async def test_the_build_record_has_exactly_the_api_pages_fields_plus_queue_position_and_workflow(
    openapi: dict[str, Any],
) -> None:
    build = answer_schema(openapi, "post", "/api/build/rebuild/{buildId}", "201")
    record_ref = build["properties"]["build"]["$ref"]
    record = component(openapi, record_ref.removeprefix(SCHEMAS))

    assert_exact_fields(record, BUILD_KEYS)
    props = record["properties"]
    for name in ("id", "projectId"):
        assert props[name]["type"] == "integer", name
    for name in ("commit", "branch", "commitAuthor", "commitHash", "startedAt", "workflowId"):
        assert props[name]["type"] == "string", name
    assert nullable(props["exitCode"], "integer")
    assert nullable(props["queuePosition"], "integer")
    assert nullable(props["finishedAt"], "string")


async def test_the_build_status_is_an_enum_of_the_five_statuses(openapi: dict[str, Any]) -> None:
    record = component(openapi, "BuildRecord")
    status = component(openapi, record["properties"]["status"]["$ref"].removeprefix(SCHEMAS))

    assert status["type"] == "string"
    assert status["enum"] == ["queued", "running", "passed", "failed", "canceled"]


async def test_a_fetched_build_is_the_record_with_the_project_summary(
    openapi: dict[str, Any],
) -> None:
    fetched = answer_schema(openapi, "get", "/api/build/{buildId}", "200")
    build = component(openapi, fetched["properties"]["build"]["$ref"].removeprefix(SCHEMAS))
    summary = component(openapi, build["properties"]["project"]["$ref"].removeprefix(SCHEMAS))

    assert_exact_fields(build, BUILD_KEYS | {"project"})
    assert_exact_fields(summary, {"id", "name", "repoUrl", "branch"})


async def test_the_project_record_has_its_fields_and_builds_where_the_api_sends_them(
    openapi: dict[str, Any],
) -> None:
    fetched = answer_schema(openapi, "get", "/api/project/projects/{projectId}", "200")
    with_builds = component(openapi, fetched["properties"]["project"]["$ref"].removeprefix(SCHEMAS))
    created = answer_schema(openapi, "post", "/api/project/projects", "201")
    without_builds = component(
        openapi, created["properties"]["project"]["$ref"].removeprefix(SCHEMAS)
    )

    assert_exact_fields(with_builds, PROJECT_KEYS | {"builds"})
    builds = with_builds["properties"]["builds"]
    assert builds["type"] == "array"
    assert builds["items"] == {"$ref": SCHEMAS + "BuildRecord"}
    assert_exact_fields(without_builds, PROJECT_KEYS)
    assert set(created["properties"]) == {"message", "project", "build"}


async def test_the_error_body_is_exactly_a_message(openapi: dict[str, Any]) -> None:
    error = answer_schema(openapi, "get", "/api/build/{buildId}", "404")

    assert_exact_fields(error, {"message"})
    assert error["properties"]["message"]["type"] == "string"


@pytest.mark.parametrize(("method", "path", "codes"), route_params())
async def test_each_route_documents_the_status_codes_it_answers_with_the_error_body(
    openapi: dict[str, Any], method: str, path: str, codes: set[str]
) -> None:
    responses = openapi["paths"][path][method]["responses"]
    # FastAPI's own 422 is checked on its own below.
    documented = set(responses) - {"422"}

    assert documented == codes
    for code in documented:
        if code.startswith("4") or code.startswith("5"):
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": SCHEMAS + "ErrorBody"}, (code, schema)


async def test_no_route_documents_a_422_the_api_never_sends(openapi: dict[str, Any]) -> None:
    with_422 = [
        f"{method.upper()} {path}"
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if "422" in operation["responses"]
    ]

    assert with_422 == []


def id_parameters(openapi: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", parameter)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and parameter["name"] != "name"  # a secret's name
    ]


async def test_path_ids_are_documented_as_required_integers(openapi: dict[str, Any]) -> None:
    parameters = id_parameters(openapi)
    routes = {where for where, _parameter in parameters}

    assert {f"{method.upper()} {path}" for method, path in ROUTES if "{" in path} <= routes
    for where, parameter in parameters:
        assert parameter["name"] in ("buildId", "projectId", "tokenId", "hookId"), where
        assert parameter["name"] in where, where
        assert parameter["required"] is True, where
        assert parameter["schema"]["type"] == "integer", where


async def test_path_ids_are_documented_as_positive(openapi: dict[str, Any]) -> None:
    for where, parameter in id_parameters(openapi):
        assert parameter["schema"].get("minimum") == 1, (where, parameter["schema"])
