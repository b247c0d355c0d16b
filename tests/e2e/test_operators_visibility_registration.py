"""Kiln's search attributes get registered for the operator: `kiln dev`'s Temporal starts with
them (also on a history made before they existed), `kiln migrate` registers those missing in an
external namespace and says which, a worker refuses to start without them naming `kiln
migrate`, and the API fails a build it cannot start there ("could not be queued").

Each test starts its own Temporal dev server without the attributes (the session's has them),
and runs `kiln` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from cli.temporal_server import start_dev_server
from kiln.migrate import upgrade
from testbed.git_server import GitServer
from testbed.stack import free_port, running_api, stack_settings
from tests.support.helpers import PROJECTS, assert_error, new_repo
from workflows.client import TemporalWorkflows, WorkflowsUnavailable
from workflows.visibility import (
    SEARCH_ATTRIBUTES,
    SearchAttributesError,
    require_search_attributes,
)

ROOT = Path(__file__).resolve().parents[2]
NAMES = [key.name for key in SEARCH_ATTRIBUTES]
INT, KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_INT, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
EXPECTED = {key.name: int(key.indexed_value_type) for key in SEARCH_ATTRIBUTES}


@dataclass
class Bare:
    """A Temporal dev server started without Kiln's search attributes."""

    address: str
    db_file: Path
    process: subprocess.Popen[bytes]

    async def client(self) -> Client:
        return await Client.connect(self.address)

    async def registered(self) -> dict[str, int]:
        client = await self.client()
        answer = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        return {name: kind for name, kind in answer.custom_attributes.items()}

    async def add(self, **kinds: IndexedValueType.ValueType) -> None:
        client = await self.client()
        request = AddSearchAttributesRequest(namespace="default", search_attributes=kinds)
        await client.operator_service.add_search_attributes(request)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_bare(db_file: Path, *, search_attributes: bool = False) -> Bare:
    port = free_port()
    process = start_dev_server(
        db_file, port=port, ui_port=None, log_file=db_file.with_suffix(".log"),
        search_attributes=search_attributes,
    )  # fmt: skip
    return Bare(f"127.0.0.1:{port}", db_file, process)


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Bare]:
    server = start_bare(tmp_path / "temporal.db")
    yield server
    server.stop()


def kiln(command: str, bare: Bare, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`kiln <command>` against `bare`, with a SQLite database of its own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KILN_")}
    env |= {
        "KILN_TEMPORAL_ADDRESS": bare.address,
        "KILN_DATABASE_URL": f"sqlite:///{tmp_path / 'kiln.db'}",
        "KILN_BUILD_NETWORK": "none",
        "KILN_WORKSPACE_DIR": str(tmp_path / "workspaces"),
        "KILN_WORKER_ID": f"vis-{uuid.uuid4().hex[:6]}",
        "KILN_TASK_QUEUE": f"kiln-vis-{uuid.uuid4().hex[:8]}",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_kiln_migrate_registers_only_the_missing_attributes_and_says_which(
    bare: Bare, tmp_path: Path
) -> None:
    await bare.add(KilnBuildId=INT)  # an earlier, partial registration

    first = kiln("migrate", bare, tmp_path)

    assert first.returncode == 0, first.stderr
    missing = ", ".join(name for name in NAMES if name != "KilnBuildId")
    assert f"registered search attributes {missing} in namespace default" in first.stderr
    assert {name: kind for name, kind in (await bare.registered()).items() if name in EXPECTED} == (
        EXPECTED
    )
    again = kiln("migrate", bare, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "search attributes are already registered in namespace default" in again.stderr


async def test_kiln_migrate_refuses_an_attribute_registered_with_another_type(
    bare: Bare, tmp_path: Path
) -> None:
    await bare.add(KilnBuildId=KEYWORD)

    result = kiln("migrate", bare, tmp_path)

    assert result.returncode == 1
    assert "KilnBuildId is registered as Keyword, Kiln needs Int" in result.stderr
    assert "the database schema is up to date" in result.stderr


async def test_a_worker_refuses_to_start_without_them_naming_kiln_migrate(
    bare: Bare, tmp_path: Path
) -> None:
    with pytest.raises(SearchAttributesError) as refused:
        await require_search_attributes(await bare.client(), "default")
    assert "run `kiln migrate`" in str(refused.value)
    assert f"missing {', '.join(NAMES)}" in str(refused.value)
    upgrade(f"sqlite:///{tmp_path / 'kiln.db'}")

    worker = kiln("worker", bare, tmp_path)

    assert worker.returncode != 0
    assert "kiln worker: cannot start" in worker.stderr and "`kiln migrate`" in worker.stderr
    assert kiln("migrate", bare, tmp_path).returncode == 0
    await require_search_attributes(await bare.client(), "default")  # now it starts


async def test_a_dev_server_history_made_before_the_attributes_has_them_after_a_restart(
    tmp_path: Path,
) -> None:
    old = start_bare(tmp_path / "temporal.db")
    old.stop()

    restarted = start_bare(tmp_path / "temporal.db", search_attributes=True)
    try:
        await require_search_attributes(await restarted.client(), "default")
    finally:
        restarted.stop()


@pytest.fixture
async def api_on_bare(
    bare: Bare, git_server: GitServer, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The API (no worker) against the server without the attributes."""
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    settings = stack_settings(url, bare.address, tmp_path / "workspaces")
    async with running_api(settings) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


async def test_without_them_a_start_fails_saying_so_and_the_build_is_not_left_queued(
    bare: Bare, api_on_bare: httpx.AsyncClient, git_server: GitServer, tmp_path: Path
) -> None:
    settings = stack_settings(f"sqlite:///{tmp_path / 'kiln.db'}", bare.address, tmp_path)
    facade = TemporalWorkflows(await bare.client(), settings)
    with pytest.raises(WorkflowsUnavailable) as refused:
        await facade.start(999)
    assert "no mapping defined for search attribute Kiln" in str(refused.value)
    assert "run `kiln migrate`" in str(refused.value)

    http = api_on_bare
    body = {"email": f"u-{uuid.uuid4().hex[:6]}@example.com", "password": "a long password"}
    registered = await http.post("/api/auth/register", json=body | {"name": "Jane"})
    headers = {"Authorization": f"Bearer {registered.json()['token']}"}
    repo = new_repo(git_server, "vis-bare")
    project = {"name": "app", "repoUrl": repo.url, "image": "busybox", "buildCommand": "true"}

    created = await http.post(PROJECTS, json=project, headers=headers)

    message = assert_error(created, 503)
    assert message == "Build could not be queued: the workflow service is unavailable"
    [listed] = (await http.get(PROJECTS, headers=headers)).json()["projects"]
    [build] = listed["builds"]
    assert build["status"] == "failed"
    logs = (await http.get(f"/api/build/{build['id']}/logs", headers=headers)).json()["logs"]
    assert "the build could not be queued" in logs
