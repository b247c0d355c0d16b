"""Project secrets reach the build as environment variables and nowhere else: a build that
prints them (whole, split across two chunks of output, in `env | sort`) shows only `***` in its
stored log and in every live `buildLog` event, and the values appear in no Temporal history
(inputs, results, heartbeats, memo, search attributes, failures), no server log line and no
API answer. The project's non-secret `env` reaches the build too, under its secrets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import pytest
from temporalio.client import Client

from kiln.crypto import SecretBox, SecretsUnavailable, UnreadableSecret, generate_key
from kiln.sealed import require_secrets_key
from kiln.secrets import SecretsKeyError, SecretStore
from testbed.stack import SocketRecorder, Stack, User, eventually
from tests.support.helpers import PROJECTS, connected, last_line, new_repo
from workflows.ids import workflow_id

NPM_TOKEN = "npm_9f8e7d6c5b4a-SECRET-value"
DB_PASSWORD = "pässwörd with spaces ✓ and $dollar"
SHORT = "abc"  # under 4 characters: given to the build, but not masked


@pytest.fixture(scope="module")
def stack_changes() -> dict[str, Any]:
    """A running Kiln with a KILN_SECRETS_KEY."""
    return {"secrets_key": generate_key()}


async def put_secret(stack: Stack, user: User, project_id: int, name: str, value: str) -> None:
    response = await stack.http.put(
        f"{PROJECTS}/{project_id}/secrets/{name}", json={"value": value}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert value not in response.text


async def project_with_secrets(
    stack: Stack, user: User, command: str, secrets: dict[str, str], **fields: Any
) -> int:
    """A project whose first build (which runs `true`) has passed, with `secrets` set and its
    build command changed to `command`: the next build runs it with the secrets."""
    repo = new_repo(stack.git, "secrets")
    created = await stack.create_project(user, repo.url, "true", **fields)
    project_id: int = created["project"]["id"]
    await stack.wait_final(user, created["build"]["id"])
    for name, value in secrets.items():
        await put_secret(stack, user, project_id, name, value)
    response = await stack.http.patch(
        f"{PROJECTS}/{project_id}", json={"buildCommand": command}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return project_id


async def run_build(stack: Stack, user: User, project_id: int) -> dict[str, Any]:
    """A new build of the project's head commit (a rebuild of its first build), to its end."""
    first = (await stack.http.get(f"{PROJECTS}/{project_id}", headers=user.headers)).json()
    oldest = first["project"]["builds"][-1]["id"]
    response = await stack.http.post(f"/api/build/rebuild/{oldest}", headers=user.headers)
    assert response.status_code == 201, response.text
    build: dict[str, Any] = await stack.wait_final(user, response.json()["build"]["id"])
    return build


def log_events(recorder: SocketRecorder, build_id: int) -> list[dict[str, Any]]:
    return [
        data
        for event, data in recorder.events
        if event == "buildLog" and data["buildId"] == build_id
    ]


async def all_events(recorder: SocketRecorder, build_id: int, log: str) -> list[dict[str, Any]]:
    """The build's live log events, once they add up to the stored log."""

    async def complete() -> list[dict[str, Any]] | None:
        events = log_events(recorder, build_id)
        return events if "".join(e["chunk"] for e in events) == log else None

    return await eventually(complete, timeout=15)


async def history_texts(stack: Stack, build_id: int) -> list[str]:
    """The build's whole Temporal history as JSON, and every payload in it decoded."""
    client = await Client.connect(stack.settings.temporal_address)
    handle = client.get_workflow_handle(workflow_id(build_id, stack.settings.workflow_id_prefix))
    history = await handle.fetch_history()
    text = history.to_json()
    texts = [text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    try:
                        texts.append(base64.b64decode(value).decode(errors="replace"))
                    except ValueError:
                        pass
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(text))
    description = await handle.describe()
    texts.append(repr(description.raw_description))
    return texts


def assert_nowhere(value: str, places: dict[str, list[str]]) -> None:
    for where, texts in places.items():
        for text in texts:
            assert value not in text, f"{value!r} found in {where}"


async def test_a_build_printing_its_secrets_shows_only_stars_in_logs_events_history_and_answers(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, SQLAlchemy's statements and rows included
    user = await stack.register()
    command = (
        'echo "token=$NPM_TOKEN"; echo "db=$DB_PASSWORD"; echo "short=$SHORT_ONE"; '
        'echo "node=$NODE_ENV"; env | sort; '
        # The same value again inside other text, twice on one line.
        'echo "x${NPM_TOKEN}y${NPM_TOKEN}z"; '
        # The value arrives exactly as it was given (spaces, non-ASCII, `$`).
        'printf %s "$DB_PASSWORD" | sha256sum'
    )
    async with connected(stack, user) as recorder:
        project_id = await project_with_secrets(
            stack,
            user,
            command,
            {"NPM_TOKEN": NPM_TOKEN, "DB_PASSWORD": DB_PASSWORD, "SHORT_ONE": SHORT},
            env={"NODE_ENV": "production"},
        )
        build = await run_build(stack, user, project_id)
        assert (build["status"], build["exitCode"]) == ("passed", 0)
        log = await stack.logs(user, build["id"])
        events = await all_events(recorder, build["id"], log)

    lines = log.splitlines()
    assert "token=***" in lines and "db=***" in lines
    assert "NPM_TOKEN=***" in lines and "DB_PASSWORD=***" in lines  # from `env | sort`
    assert "x***y***z" in lines
    assert f"short={SHORT}" in lines  # too short to mask, but the build has it
    assert "node=production" in lines and "NODE_ENV=production" in lines
    assert "CI=true" in lines and f"KILN_BUILD_ID={build['id']}" in lines
    assert f"{hashlib.sha256(DB_PASSWORD.encode()).hexdigest()}  -" in lines

    answers = []
    for path in (
        f"{PROJECTS}",
        f"{PROJECTS}/{project_id}",
        f"{PROJECTS}/{project_id}/secrets",
        f"/api/build/{build['id']}",
        f"/api/build/{build['id']}/logs",
    ):
        response = await stack.http.get(path, headers=user.headers)
        assert response.status_code == 200, response.text
        answers.append(response.text)
    listed = (await stack.http.get(f"{PROJECTS}/{project_id}/secrets", headers=user.headers)).json()
    assert [s["name"] for s in listed["secrets"]] == ["DB_PASSWORD", "NPM_TOKEN", "SHORT_ONE"]
    assert all(set(s) == {"name", "createdAt", "updatedAt"} for s in listed["secrets"])

    places = {
        "the stored log": [log],
        "the live events": [json.dumps(events, ensure_ascii=False)],
        "the Temporal history": await history_texts(stack, build["id"]),
        "the server logs": [record.getMessage() for record in caplog.records] + [caplog.text],
        "the API answers": answers,
    }
    for value in (NPM_TOKEN, DB_PASSWORD):
        assert_nowhere(value, places)
        # Nor in a piece big enough to matter (half of it).
        assert_nowhere(value[: len(value) // 2 + 1], places)
        assert_nowhere(value[len(value) // 2 :], places)
    assert caplog.records, "the server logged nothing: the capture did not work"


async def test_a_secret_printed_in_two_halves_across_two_chunks_is_masked(
    stack: Stack,
) -> None:
    """A two-line secret (a key file, say), printed a line at a time with a pause between:
    Docker hands over output a line at a time, so the first half arrives in a chunk of its own
    and is stored and sent before the second half exists. It must not go out as it is."""
    user = await stack.register()
    first, second = "first-half-Xy7Wq", "second-half-Qz9Rk"
    command = (
        'echo "start $(echo "$KEY_FILE" | head -n 1)"; sleep 1.5; '
        'echo "$(echo "$KEY_FILE" | tail -n 1) end"; echo done'
    )
    async with connected(stack, user) as recorder:
        project_id = await project_with_secrets(
            stack, user, command, {"KEY_FILE": f"{first}\n{second}"}
        )
        build = await run_build(stack, user, project_id)
        log = await stack.logs(user, build["id"])
        events = await all_events(recorder, build["id"], log)

    assert build["status"] == "passed"
    assert log == "start *** end\ndone\n"
    assert len(events) >= 2, events  # "start " went out while the build slept
    assert events[0]["chunk"] == "start "
    for event in events:
        assert first not in event["chunk"] and second not in event["chunk"], event
    offset = 0
    for event in events:  # offsets count the masked bytes that were stored
        assert event["offset"] == offset
        offset += len(event["chunk"].encode())


async def test_a_secret_wins_over_a_variable_of_the_same_name(stack: Stack) -> None:
    user = await stack.register()
    project_id = await project_with_secrets(
        stack,
        user,
        'echo "mode=$MODE"; echo "plain=$PLAIN"',
        {"MODE": "secret-mode-value"},
        env={"MODE": "visible-mode", "PLAIN": "just a variable"},
    )
    build = await run_build(stack, user, project_id)
    assert await stack.logs(user, build["id"]) == "mode=***\nplain=just a variable\n"


async def test_a_projects_secrets_reach_only_its_own_builds(stack: Stack) -> None:
    user = await stack.register()
    await project_with_secrets(stack, user, "true", {"NPM_TOKEN": NPM_TOKEN})
    other = await project_with_secrets(stack, user, 'echo "[${NPM_TOKEN:-none}]"; env', {})
    log = await stack.logs(user, (await run_build(stack, user, other))["id"])
    assert log.startswith("[none]\n")
    assert "NPM_TOKEN" not in log and NPM_TOKEN not in log


async def test_a_changed_or_deleted_secret_applies_to_the_next_build(stack: Stack) -> None:
    user = await stack.register()
    project_id = await project_with_secrets(
        stack, user, 'echo "[${API_KEY:-unset}]"', {"API_KEY": "first-value-1234"}
    )
    assert await stack.logs(user, (await run_build(stack, user, project_id))["id"]) == "[***]\n"

    await put_secret(stack, user, project_id, "API_KEY", "second-value-5678")
    build = await run_build(stack, user, project_id)
    assert await stack.logs(user, build["id"]) == "[***]\n"

    response = await stack.http.delete(
        f"{PROJECTS}/{project_id}/secrets/API_KEY", headers=user.headers
    )
    assert response.status_code == 200, response.text
    build = await run_build(stack, user, project_id)
    assert await stack.logs(user, build["id"]) == "[unset]\n"


async def test_a_worker_without_the_key_fails_the_build_with_a_reason_and_refuses_to_start(
    stack: Stack,
) -> None:
    """The worker reads the secrets itself: one without KILN_SECRETS_KEY cannot, says so, and
    a worker (or API) started without the key refuses to start while secrets exist."""
    user = await stack.register()
    project_id = await project_with_secrets(stack, user, "true", {"NPM_TOKEN": NPM_TOKEN})
    build = await run_build(stack, user, project_id)

    keyless = SecretStore(stack.sessions, SecretBox(""))
    with pytest.raises(SecretsUnavailable) as caught:
        keyless.for_build(build["id"])
    assert "KILN_SECRETS_KEY" in str(caught.value)
    wrong = SecretStore(stack.sessions, SecretBox(generate_key()))
    with pytest.raises(Exception) as unreadable:
        wrong.for_build(build["id"])
    assert "KILN_SECRETS_KEY" in str(unreadable.value)
    assert NPM_TOKEN not in str(unreadable.value)

    for key in ("", generate_key(), "not-a-key"):
        with pytest.raises(SecretsKeyError) as refused:
            require_secrets_key(
                stack.sessions, stack.settings.model_copy(update={"secrets_key": key})
            )
        assert "KILN_SECRETS_KEY" in str(refused.value)
    # The right key, or a rotated list that still holds it, starts.
    require_secrets_key(stack.sessions, stack.settings)
    rotated = f"{generate_key()},{stack.settings.secrets_key}"
    require_secrets_key(stack.sessions, stack.settings.model_copy(update={"secrets_key": rotated}))


async def test_a_build_whose_secrets_cannot_be_read_fails_saying_why(stack: Stack) -> None:
    """A secret stored under a key this Kiln no longer has: the build fails, not hangs, and
    its log says why."""
    user = await stack.register()
    project_id = await project_with_secrets(stack, user, "echo ran", {})
    stale = SecretStore(stack.sessions, SecretBox(generate_key()))
    stale.put(user.id, project_id, "OLD_SECRET", "sealed-with-a-lost-key")

    build = await run_build(stack, user, project_id)

    assert (build["status"], build["exitCode"]) == ("failed", None)
    log = await stack.logs(user, build["id"])
    assert "ran" not in log
    assert "KILN_SECRETS_KEY" in last_line(log)
    # Gone again: a Kiln refuses to start, or to rotate its key, while a value it cannot read
    # is stored.
    response = await stack.http.delete(
        f"{PROJECTS}/{project_id}/secrets/OLD_SECRET", headers=user.headers
    )
    assert response.status_code == 200, response.text


async def test_rotating_the_key_reseals_every_value_so_the_old_key_can_go(stack: Stack) -> None:
    user = await stack.register()
    project_id = await project_with_secrets(stack, user, "true", {"NPM_TOKEN": NPM_TOKEN})
    build = await run_build(stack, user, project_id)
    old, new = stack.settings.secrets_key, generate_key()

    resealed = SecretStore(stack.sessions, SecretBox(f"{new},{old}")).rotate()

    assert resealed >= 1
    got = SecretStore(stack.sessions, SecretBox(new)).for_build(build["id"])
    assert got.env["NPM_TOKEN"] == NPM_TOKEN
    with pytest.raises(UnreadableSecret):
        SecretStore(stack.sessions, SecretBox(old)).for_build(build["id"])
    # Back to the stack's own key, for the tests after this one.
    SecretStore(stack.sessions, SecretBox(f"{old},{new}")).rotate()
    assert SecretStore(stack.sessions, SecretBox(old)).for_build(build["id"]).masked


async def test_a_build_environment_too_large_to_start_fails_saying_why(stack: Stack) -> None:
    """Each value may be 64 KiB and a project may have 100, but the kernel starts no process
    whose environment passes ARG_MAX: such a build fails at once with a reason, not with a
    cryptic exec error after retries."""
    user = await stack.register()
    big = {f"BIG_{index}": f"{index:02d}" + "x" * 63_998 for index in range(17)}
    project_id = await project_with_secrets(stack, user, "echo never runs", big)

    build = await run_build(stack, user, project_id)

    assert (build["status"], build["exitCode"]) == ("failed", None)
    log = await stack.logs(user, build["id"])
    assert "never runs" not in log
    assert "KiB" in last_line(log) and "environment" in last_line(log)
