"""Schemathesis against a real `kiln api` process: `python -m testbed.fuzz_api [schemathesis
run options]`, e.g. `--checks all --max-examples 100`; the exit code is schemathesis's.

It starts a Temporal dev server and the API (SQLite, local repositories allowed, so that no
image check or repository check needs DNS), registers a user whose token every request carries,
and gives that user projects and builds to find (ids 1 to SEEDED), then runs schemathesis with
`schemathesis.toml` from the repository root.

Run it in a network namespace of its own, where only loopback exists, so that nothing the
fuzzer makes up (repository URLs, registries) can reach another machine:

    unshare --user --map-root-user --net sh -c \\
        'ip link set lo up && .venv/bin/python -m testbed.fuzz_api --checks all'
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from cli.temporal_server import start_dev_server
from kiln.db import make_engine, make_session_factory
from kiln.migrate import upgrade
from kiln.projects import NewProject, ProjectService
from kiln.settings import Settings
from testbed.processes import api_process
from testbed.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "schemathesis.toml"
SEEDED = 20


def seed(settings: Settings, owner_id: int) -> None:
    """Projects (each with one queued build) straight in the database: no workflow, no git."""
    projects = ProjectService(make_session_factory(make_engine(settings.database_url)))
    for number in range(SEEDED):
        new = NewProject(
            name=f"seeded-{number}",
            repo_url=f"https://git.example.com/owner/app-{number}.git",
            branch="main",
            image="busybox",
            build_command="true",
            timeout_seconds=60,
            max_concurrent_builds=1,
        )
        projects.create(owner_id, new, "a" * 40)


def main(arguments: list[str]) -> int:
    state = Path(tempfile.mkdtemp(prefix="kiln-fuzz-"))
    temporal_port = free_port()
    temporal = start_dev_server(
        state / "temporal.db", port=temporal_port, ui_port=None, log_file=state / "temporal.log"
    )
    settings = Settings(
        database_url=f"sqlite:///{state / 'kiln.db'}",
        temporal_address=f"127.0.0.1:{temporal_port}",
        task_queue=f"fuzz-{uuid.uuid4().hex[:8]}",
        jwt_secret=secrets.token_hex(32),
        workspace_dir=state / "workspaces",
        build_network="none",
        allow_local_repos=True,
        secrets_key=Fernet.generate_key().decode(),
    )
    upgrade(settings.database_url)
    port = free_port()
    api = api_process(settings, port, state).start()
    try:
        base_url = f"http://127.0.0.1:{port}"
        user = {"email": "fuzz@example.com", "password": "correct horse battery", "name": "Fuzz"}
        answer = httpx.post(f"{base_url}/api/auth/register", json=user, timeout=30)
        answer.raise_for_status()
        seed(settings, answer.json()["user"]["id"])
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {answer.json()['token']}",
            *arguments,
        ]
        return subprocess.run(command, check=False).returncode
    finally:
        api.stop()
        temporal.terminate()
        temporal.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
