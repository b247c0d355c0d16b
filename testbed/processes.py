"""Kiln's processes as a deployment runs them (`kiln worker`, `kiln api`), for fault injection:
real processes that tests kill with real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cli.temporal_server import wait_for_port
from kiln.settings import Settings


def kiln_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that makes a `kiln` process read exactly `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    for name, value in settings.model_dump().items():
        if isinstance(value, list):
            env[f"KILN_{name.upper()}"] = json.dumps(value)  # pydantic-settings reads JSON
        elif isinstance(value, bool):
            env[f"KILN_{name.upper()}"] = str(value).lower()
        else:
            env[f"KILN_{name.upper()}"] = str(value)
    # Test workers serve no metrics unless asked: they would all want the same port.
    env["KILN_WORKER_METRICS_PORT"] = "0"
    return env | overrides


@dataclass
class KilnProcess:
    role: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> KilnProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", self.role], env=self.env, stdout=log, stderr=log
        )
        log.close()
        if self.role == "api":
            wait_for_port("127.0.0.1", int(self.env["KILN_PORT"]), timeout=60)
        return self

    def kill(self) -> None:
        """kill -9: no clean-up, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_process(settings: Settings, worker_id: str, root: Path, **env: str) -> KilnProcess:
    workspace = root / worker_id
    env = kiln_env(settings, KILN_WORKER_ID=worker_id, KILN_WORKSPACE_DIR=str(workspace)) | env
    return KilnProcess("worker", env, root / f"{worker_id}.log")


def api_process(settings: Settings, port: int, root: Path) -> KilnProcess:
    return KilnProcess("api", kiln_env(settings, KILN_PORT=str(port)), root / f"api-{port}.log")
