"""Structured logs of real `kiln api` and `kiln worker` processes with `KILN_LOG_FORMAT=json`:
every line is one JSON object (time, level, logger, message, and the ids that apply), and no
password, token, JWT or credential reaches a line — driven through registration, logins, tokens
sent where they should not be (a query string), repository URLs with credentials in them, and
builds that pass and fail."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from kiln.db import make_engine, make_session_factory
from testbed.git_server import GitServer
from testbed.processes import KilnProcess, kiln_env, worker_process
from testbed.stack import Stack, eventually, free_port, stack_settings
from tests.support.helpers import new_repo

PASSWORD = f"pw-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"wrong-{uuid.uuid4().hex}"
URL_TOKEN = f"ghp_{uuid.uuid4().hex}"
REQUEST_ID = f"probe-{uuid.uuid4().hex[:12]}"


@dataclass
class Processes:
    stack: Stack
    api: KilnProcess
    worker: KilnProcess

    def lines(self, process: KilnProcess) -> list[str]:
        return [line for line in process.log_path.read_text().splitlines() if line.strip()]

    def entries(self, process: KilnProcess) -> list[dict[str, Any]]:
        entries = []
        for line in self.lines(process):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{process.role}: not a JSON line: {line!r}") from None
            assert isinstance(entry, dict), line
            entries.append(entry)
        return entries


@pytest.fixture(scope="module")
async def processes(
    db_url: str,
    temporal_address: str,
    git_server: GitServer,
    busybox: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Processes]:
    root = tmp_path_factory.mktemp("json-logs")
    # A secrets key: credentials in a repository URL move to the encrypted store.
    settings = stack_settings(db_url, temporal_address, root / "unused").model_copy(
        update={"log_format": "json", "secrets_key": Fernet.generate_key().decode()}
    )
    port = free_port()
    api = KilnProcess("api", kiln_env(settings, KILN_PORT=str(port)), root / "api.log")
    worker = worker_process(settings, "logs-host", root, KILN_WORKER_METRICS_PORT=str(free_port()))
    engine = make_engine(db_url)
    try:
        worker.start()
        api.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            stack = Stack(settings, make_session_factory(engine), str(http.base_url), http,
                          git_server, busybox)  # fmt: skip
            yield Processes(stack, api, worker)
    finally:
        api.stop()
        worker.stop()
        engine.dispose()


async def test_no_secret_reaches_a_log_line_and_every_line_is_json(
    processes: Processes, tmp_path: Path
) -> None:
    stack = processes.stack
    http = stack.http
    email = f"jane-{uuid.uuid4().hex[:6]}@example.com"
    body = {"email": email, "password": PASSWORD, "name": "Jane Doe"}
    registered = await http.post("/api/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    wrong = await http.post("/api/auth/login", json={"email": email, "password": WRONG_PASSWORD})
    assert wrong.status_code == 401
    login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    token: str = login.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}

    # Tokens where a careless client puts them: query strings end up in access logs.
    await http.get(f"/api/project/projects?access_token={token}", headers=auth)
    await http.get(f"/socket.io/?EIO=4&transport=polling&token={token}")
    await http.get("/api/project/projects", headers={"Authorization": f"Bearer {token}x"})

    # Credentials in repository URLs: one nothing answers on, one the git server serves.
    refused_url = f"http://jane:{URL_TOKEN}@127.0.0.1:{free_port()}/nothing.git"
    refused = await http.post(
        "/api/project/projects",
        json={
            "name": "refused",
            "repoUrl": refused_url,
            "image": stack.image,
            "buildCommand": "true",
        },  # fmt: skip
        headers=auth,
    )
    assert refused.status_code == 400, refused.text
    repo = new_repo(stack.git, "json-logs")
    served_url = repo.url.replace("http://", f"http://jane:{URL_TOKEN}@")
    created = await http.post(
        "/api/project/projects",
        json={
            "name": "with-credentials",
            "repoUrl": served_url,
            "image": stack.image,
            "buildCommand": "echo built",
        },  # fmt: skip
        headers=auth | {"X-Request-ID": REQUEST_ID},
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"] == REQUEST_ID
    passed_id = created.json()["build"]["id"]
    # A build that fails on the host (its image is not there: never pulled in tests).
    missing = await http.post(
        "/api/project/projects",
        json={
            "name": "no-image",
            "repoUrl": repo.url,
            "image": "kiln-test/missing:never",
            "buildCommand": "true",
        },  # fmt: skip
        headers=auth,
    )
    assert missing.status_code == 201, missing.text
    failed_id = missing.json()["build"]["id"]
    user_headers = auth

    async def final(build_id: int) -> dict[str, Any] | None:
        response = await http.get(f"/api/build/{build_id}", headers=user_headers)
        build: dict[str, Any] = response.json()["build"]
        return build if build["status"] in ("passed", "failed") else None

    assert (await eventually(lambda: final(passed_id), timeout=90))["status"] == "passed"
    assert (await eventually(lambda: final(failed_id), timeout=90))["status"] == "failed"

    # The worker wrote about the failed build in its activity: those lines carry its ids.
    async def worker_wrote_about_it() -> list[dict[str, Any]] | None:
        about = [e for e in processes.entries(processes.worker) if e.get("buildId") == failed_id]
        return about or None

    about = await eventually(worker_wrote_about_it, timeout=30, interval=0.2)
    assert all(entry["workflowId"].endswith(f"build-{failed_id}") for entry in about)

    secrets = [PASSWORD, WRONG_PASSWORD, URL_TOKEN, token, token.split(".")[2]]
    for process in (processes.api, processes.worker):
        entries = processes.entries(process)
        assert entries, f"{process.role} logged nothing"
        for entry in entries:
            assert {"time", "level", "logger", "message"} <= set(entry), entry
        text = process.log_path.read_text()
        for secret in secrets:
            assert secret not in text, f"{process.role} logged a secret"
        assert "eyJ" not in text, f"{process.role} logged a JWT"

    api_entries = processes.entries(processes.api)
    # uvicorn's own lines came through the same redacting JSON handler.
    assert any(e["logger"] == "uvicorn.access" and "access_token=" in e["message"]
               for e in api_entries)  # fmt: skip
    created_line = [e for e in api_entries if e.get("requestId") == REQUEST_ID]
    assert any("created from" in e["message"] for e in created_line), created_line
