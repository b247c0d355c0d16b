"""The integration routes: a project's GitHub token (write-only; `hasGithubToken` in its record)
and its notification hooks (created with a secret shown once, listed without it, deleted). Bad
input is a 400 with a clear message that changes nothing; only the owner may see or change them;
without KILN_SECRETS_KEY nothing can be stored (503)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from kiln.crypto import generate_key
from kiln.integration_models import ProjectHook
from kiln.models import Project
from testbed.git_server import GitServer
from tests.api.conftest import serving
from tests.api.support import PROJECTS, Api, User
from tests.support.helpers import assert_error

TOKEN = "ghp_0123456789abcdefTOKENvalue"
# A global address given as an IP (no DNS look-up needed here).
HOOK_URL = "https://93.184.216.34/kiln-hook"
HOOK_KEYS = {"id", "url", "events", "createdAt"}


@pytest.fixture(scope="module")
async def api(
    migrated_database: Path, git_server: GitServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """The app with a secrets key, and the address rules of a real deployment (no local hook
    URLs: projects are added to the database directly, their repository is never fetched)."""
    directory = tmp_path_factory.mktemp("integrations")
    overrides = {"secrets_key": generate_key(), "allow_local_repos": False}
    async with serving(migrated_database, git_server, directory, **overrides) as api:
        yield api


async def new_project(api: Api) -> tuple[User, int]:
    user = await api.register()
    with api.sessions.begin() as session:
        project = Project(
            owner_id=user.id,
            name="app",
            repo_url="https://github.com/acme/app.git",
            branch="main",
            image="busybox",
            build_command="true",
        )
        session.add(project)
        session.flush()
        return user, project.id


def token_path(project_id: int | str) -> str:
    return f"{PROJECTS}/{project_id}/github-token"


def hooks_path(project_id: int | str, hook_id: int | str | None = None) -> str:
    base = f"{PROJECTS}/{project_id}/hooks"
    return base if hook_id is None else f"{base}/{hook_id}"


async def create_hook(api: Api, user: User, project_id: int, body: Any) -> Any:
    return await api.http.post(hooks_path(project_id), json=body, headers=user.headers)


def stored_hooks(api: Api, project_id: int) -> int:
    with api.sessions() as session:
        query = select(func.count()).where(ProjectHook.project_id == project_id)
        return int(session.scalar(query) or 0)


# --- the GitHub token ---------------------------------------------------------------------------


async def test_a_github_token_is_set_shown_only_as_a_flag_and_removed(api: Api) -> None:
    user, project_id = await new_project(api)
    assert (await api.project(user, project_id))["hasGithubToken"] is False

    saved = await api.http.put(token_path(project_id), json={"token": TOKEN}, headers=user.headers)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {
        "message": "GitHub token saved",
        "projectId": project_id,
        "hasGithubToken": True,
    }
    record = await api.project(user, project_id)
    assert record["hasGithubToken"] is True
    listed = await api.http.get(PROJECTS, headers=user.headers)
    assert [p["hasGithubToken"] for p in listed.json()["projects"]] == [True]
    for answer in (saved.text, listed.text, str(record)):
        assert TOKEN not in answer
    with api.sessions() as session:
        sealed = session.scalar(select(Project.github_token).where(Project.id == project_id))
    assert sealed and TOKEN not in sealed  # stored sealed, never in clear

    removed = await api.http.delete(token_path(project_id), headers=user.headers)
    assert removed.status_code == 200, removed.text
    assert removed.json()["hasGithubToken"] is False
    assert (await api.project(user, project_id))["hasGithubToken"] is False
    again = await api.http.delete(token_path(project_id), headers=user.headers)
    assert assert_error(again, 404) == "Project has no GitHub token"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "token"),
        ({"token": ""}, "token"),
        ({"token": "with space"}, "spaces or control characters"),
        ({"token": "tab\there"}, "spaces or control characters"),
        ({"token": "nul\u0000here"}, "spaces or control characters"),
        ({"token": "x" * 4097}, "token"),
        ({"token": 12}, "token"),
        ({"token": TOKEN, "extra": 1}, "Extra inputs"),
    ],
    ids=["missing", "empty", "space", "tab", "nul", "too-long", "not-a-string", "extra-field"],
)
async def test_a_bad_github_token_is_a_400_that_changes_nothing(
    api: Api, body: dict[str, Any], says: str
) -> None:
    user, project_id = await new_project(api)
    response = await api.http.put(token_path(project_id), json=body, headers=user.headers)
    assert says in assert_error(response, 400)
    assert (await api.project(user, project_id))["hasGithubToken"] is False


# --- hooks --------------------------------------------------------------------------------------


async def test_a_hook_is_created_with_its_secret_shown_once_listed_without_it_and_deleted(
    api: Api,
) -> None:
    user, project_id = await new_project(api)
    body = {"url": HOOK_URL, "events": ["failed", "passed"]}

    created = await create_hook(api, user, project_id, body)

    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["message"] == "Hook created"
    assert set(answer["hook"]) == HOOK_KEYS
    assert (answer["hook"]["url"], answer["hook"]["events"]) == (HOOK_URL, ["failed", "passed"])
    secret = answer["secret"]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    with api.sessions() as session:
        sealed = session.scalar(select(ProjectHook.sealed_secret))
    assert sealed and secret not in sealed

    listed = await api.http.get(hooks_path(project_id), headers=user.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"message": "Hooks fetched", "hooks": [answer["hook"]]}
    assert secret not in listed.text
    assert secret not in (await api.http.get(PROJECTS, headers=user.headers)).text

    hook_id = answer["hook"]["id"]
    deleted = await api.http.delete(hooks_path(project_id, hook_id), headers=user.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"message": "Hook deleted", "hookId": hook_id}
    again = await api.http.delete(hooks_path(project_id, hook_id), headers=user.headers)
    assert assert_error(again, 404) == "Hook not found"
    assert stored_hooks(api, project_id) == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"url": HOOK_URL, "events": []}, "events"),
        ({"url": HOOK_URL, "events": ["pushed"]}, "unknown event 'pushed'"),
        ({"url": HOOK_URL, "events": ["failed", "failed"]}, "may not repeat"),
        ({"url": HOOK_URL, "events": "failed"}, "events"),
        ({"url": HOOK_URL}, "events"),
        ({"events": ["failed"]}, "url"),
        ({"url": "ftp://93.184.216.34/x", "events": ["failed"]}, "http:// or https://"),
        ({"url": "not a url", "events": ["failed"]}, "url"),
        ({"url": "http://127.0.0.1:9/hook", "events": ["failed"]}, "local or private"),
        ({"url": "http://10.1.2.3/hook", "events": ["failed"]}, "local or private"),
        ({"url": "http://169.254.169.254/latest", "events": ["failed"]}, "local or private"),
        ({"url": "http://[::1]/hook", "events": ["failed"]}, "local or private"),
        ({"url": "http://localhost/hook", "events": ["failed"]}, "local or private"),
        ({"url": HOOK_URL + "x" * 2000, "events": ["failed"]}, "url"),
        ({"url": "https://93.184.216.34/a\u0000b", "events": ["failed"]}, "control characters"),
        ({"url": "https://93.184.216.34/a b", "events": ["failed"]}, "spaces"),
        ({"url": "https://exa\u0000mple.com/", "events": ["failed"]}, "control characters"),
        ({"url": "https://[::1/", "events": ["failed"]}, "url"),
        ({"url": "https://93.184.216.34:99999/", "events": ["failed"]}, "url"),
        ({"url": HOOK_URL, "events": ["failed", 3]}, "events"),
        ({"url": HOOK_URL, "events": ["failed", "passed", "canceled", "running", "x"]}, "events"),
        ({"url": HOOK_URL, "events": ["failed"], "secret": "mine"}, "Extra inputs"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else "",
)
async def test_a_bad_hook_is_a_400_with_a_clear_message_that_stores_nothing(
    api: Api, body: dict[str, Any], says: str
) -> None:
    user, project_id = await new_project(api)
    message = assert_error(await create_hook(api, user, project_id, body), 400)
    assert says in message, message
    assert stored_hooks(api, project_id) == 0


async def test_a_project_has_at_most_20_hooks(api: Api) -> None:
    user, project_id = await new_project(api)
    for index in range(20):
        body = {"url": f"{HOOK_URL}/{index}", "events": ["failed"]}
        assert (await create_hook(api, user, project_id, body)).status_code == 201

    one_more = await create_hook(api, user, project_id, {"url": HOOK_URL, "events": ["failed"]})

    assert "at most 20 hooks" in assert_error(one_more, 400)
    assert stored_hooks(api, project_id) == 20


async def test_only_the_owner_may_see_or_change_a_projects_token_and_hooks(api: Api) -> None:
    owner, project_id = await new_project(api)
    other, other_project = await new_project(api)
    hook = (
        await create_hook(api, owner, project_id, {"url": HOOK_URL, "events": ["failed"]})
    ).json()["hook"]
    assert (
        await api.http.put(token_path(project_id), json={"token": TOKEN}, headers=owner.headers)
    ).status_code == 200

    requests: list[tuple[str, str, Any]] = [
        ("PUT", token_path(project_id), {"token": "stolen-token"}),
        ("DELETE", token_path(project_id), None),
        ("POST", hooks_path(project_id), {"url": HOOK_URL, "events": ["failed"]}),
        ("GET", hooks_path(project_id), None),
        ("DELETE", hooks_path(project_id, hook["id"]), None),
    ]
    for method, path, body in requests:
        forbidden = await api.http.request(method, path, json=body, headers=other.headers)
        assert assert_error(forbidden, 403, method) == "You do not have access to this project"
        assert_error(await api.http.request(method, path, json=body), 401, method)
        missing = path.replace(f"/{project_id}/", "/999999/")
        got = await api.http.request(method, missing, json=body, headers=owner.headers)
        assert assert_error(got, 404, method) == "Project not found"
        malformed = path.replace(f"/{project_id}/", "/abc/")
        got = await api.http.request(method, malformed, json=body, headers=owner.headers)
        assert assert_error(got, 400, method) == "projectId must be a positive integer"

    # A hook id of another project is not found; a malformed one is a 400.
    elsewhere = await api.http.delete(hooks_path(other_project, hook["id"]), headers=other.headers)
    assert assert_error(elsewhere, 404) == "Hook not found"
    for bad in ("abc", "0", "-1", "1.5"):
        got = await api.http.delete(hooks_path(project_id, bad), headers=owner.headers)
        assert assert_error(got, 400, bad) == "hookId must be a positive integer"
    huge = await api.http.delete(hooks_path(project_id, 10**20), headers=owner.headers)
    assert assert_error(huge, 404) == "Hook not found"
    assert stored_hooks(api, project_id) == 1
    assert (await api.project(owner, project_id))["hasGithubToken"] is True


async def test_a_deleted_project_takes_its_hooks_with_it(api: Api) -> None:
    user, project_id = await new_project(api)
    assert (
        await create_hook(api, user, project_id, {"url": HOOK_URL, "events": ["passed"]})
    ).status_code == 201

    response = await api.http.delete(f"{PROJECTS}/{project_id}", headers=user.headers)

    assert response.status_code == 200, response.text
    assert stored_hooks(api, project_id) == 0


async def test_without_a_secrets_key_neither_a_token_nor_a_hook_is_stored(
    migrated_database: Path, git_server: GitServer, tmp_path: Path
) -> None:
    async with serving(migrated_database, git_server, tmp_path, allow_local_repos=False) as keyless:
        user, project_id = await new_project(keyless)
        token = await keyless.http.put(
            token_path(project_id), json={"token": TOKEN}, headers=user.headers
        )
        assert "KILN_SECRETS_KEY" in assert_error(token, 503)
        hook = await create_hook(keyless, user, project_id, {"url": HOOK_URL, "events": ["failed"]})
        assert "KILN_SECRETS_KEY" in assert_error(hook, 503)
        assert stored_hooks(keyless, project_id) == 0
        assert (await keyless.project(user, project_id))["hasGithubToken"] is False
