"""Tools for fault-injection tests: a Temporal server that can be restarted on its history,
and ways to read what really happened — Docker's own event log and Temporal's histories."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from temporalio.client import Client

from cli.temporal_server import start_dev_server, wait_for_port
from kiln.containers import build_labels
from workflows.ids import workflow_id


@dataclass
class RestartableTemporal:
    """A Temporal dev server whose history (a SQLite file) outlives its process."""

    db_file: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_dev_server(
            self.db_file, port=self.port, ui_port=None, log_file=self.db_file.with_suffix(".log")
        )

    def stop(self, *, kill: bool = False) -> None:
        """Stopped as a service manager stops it, or with `kill` -9 (nothing is flushed)."""
        if self.process is not None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=30)


def container_events(
    client: docker.DockerClient, labels: list[str], actions: list[str], since: int
) -> list[dict[str, Any]]:
    """Docker's own record of what happened to matching containers since `since` (s)."""
    filters = {"type": "container", "event": actions, "label": labels}
    until = int(time.time()) + 1
    return list(client.events(since=since, until=until, decode=True, filters=filters))


def container_starts(
    client: docker.DockerClient, deployment: str, build_id: int, since: int
) -> int:
    """How many times Docker started a container for this build: a build's command may run in
    exactly one container, once."""
    return len(container_events(client, build_labels(deployment, build_id), ["start"], since))


def container_lifetimes(
    client: docker.DockerClient, deployment: str, since: int
) -> dict[str, list[int]]:
    """Start and end times (ns) of every container of a deployment, by container id."""
    labels = [f"kiln.deployment={deployment}"]
    lifetimes: dict[str, list[int]] = {}
    for event in container_events(client, labels, ["start", "die"], since):
        lifetimes.setdefault(event["id"], []).append(int(event["timeNano"]))
    return lifetimes


def running_container(client: docker.DockerClient, deployment: str, build_id: int) -> Any | None:
    found = client.containers.list(
        ignore_removed=True, filters={"label": build_labels(deployment, build_id)}
    )
    return found[0] if found else None


async def activity_queues(client: Client, prefix: str, build_id: int) -> list[tuple[str, str]]:
    """(activity type, task queue) of every activity the build's workflow scheduled."""
    history = await client.get_workflow_handle(workflow_id(build_id, prefix)).fetch_history()
    scheduled = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            scheduled.append((attributes.activity_type.name, attributes.task_queue.name))
    return scheduled


def restart_dockerd(timeout: float = 60) -> None:
    """Stop the Docker engine (SIGTERM) and start it again, as an operator's restart would."""
    pid = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    assert pid, "dockerd is not running"
    subprocess.run(["kill", "-TERM", pid[0]], check=True)
    deadline = time.monotonic() + timeout
    while subprocess.run(["pidof", "dockerd"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not stop"
        time.sleep(0.2)
    subprocess.Popen(
        ["dockerd"],
        stdout=open("/var/log/kiln-dockerd.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    while True:
        try:
            docker.from_env().ping()
            return
        except docker.errors.DockerException:
            assert time.monotonic() < deadline, "dockerd did not come back"
            time.sleep(0.2)


def restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
    )
    wait_for_port("127.0.0.1", 5432, timeout=60)
