"""The command line as a new user meets it: `kiln dev` runs the whole system; `kiln api` refuses
to start without a JWT secret."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from testbed.git_server import GitServer
from testbed.stack import eventually, free_port
from tests.support.helpers import bearer, repo_name, wait_for_build

DEV_TEMPORAL_PORT = 7233


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    return env | extra


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_api_refuses_to_start_without_a_jwt_secret(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "api"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "KILN_JWT_SECRET" in done.stderr


@contextmanager
def kiln_dev(cwd: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = _env(
        KILN_PORT=str(port),
        KILN_ALLOW_LOCAL_REPOS="true",
        KILN_IMAGE_PULL="never",
        KILN_BUILD_NETWORK="none",
        KILN_TASK_QUEUE=f"kiln-dev-{uuid.uuid4().hex[:8]}",
    )
    process = subprocess.Popen([sys.executable, "-m", "cli", "dev"], cwd=cwd, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


async def _wait_api(base_url: str) -> None:
    async def up() -> bool | None:
        try:
            async with httpx.AsyncClient(base_url=base_url) as http:
                return (await http.get("/docs")).status_code == 200 or None
        except httpx.TransportError:
            return None

    await eventually(up, timeout=90, interval=0.2)


async def test_kiln_dev_builds_a_project_and_keeps_it_across_a_restart(
    tmp_path: Path, git_server: GitServer, busybox: str
) -> None:
    assert not _listening(DEV_TEMPORAL_PORT), "something else holds Temporal's dev port"
    repo = git_server.create_repo(repo_name("dev"))
    repo.commit({"index.html": "<h1>hi</h1>\n"}, "site")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    body = {"email": "dev@example.com", "password": "long enough pw", "name": "Dev"}

    with kiln_dev(tmp_path, port) as process:
        await _wait_api(base_url)
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            token = (await http.post("/api/auth/register", json=body)).json()["token"]
            headers = bearer(token)
            project = {"name": "site", "repoUrl": repo.url, "image": busybox,
                       "buildCommand": "ls index.html"}  # fmt: skip
            created = await http.post("/api/project/projects", json=project, headers=headers)
            assert created.status_code == 201, created.text
            build_id = created.json()["build"]["id"]
            assert (await wait_for_build(http, headers, build_id))["status"] == "passed"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    # Every child stopped with it.
    assert not _listening(port) and not _listening(DEV_TEMPORAL_PORT)
    assert (tmp_path / ".kiln" / "kiln.db").exists()
    assert (tmp_path / ".kiln" / "temporal.db").exists()

    with kiln_dev(tmp_path, port):
        await _wait_api(base_url)
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            # Same secret, same database: the old token and the old build are still good.
            rebuilt = await http.post(f"/api/build/rebuild/{build_id}", headers=headers)
            assert rebuilt.status_code == 201, rebuilt.text
            again = await wait_for_build(http, headers, rebuilt.json()["build"]["id"])
            assert again["status"] == "passed"
