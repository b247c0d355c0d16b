"""Settings read from the environment (``KILN_*``), one cached instance per process."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where `kiln dev` keeps its SQLite file, Temporal history and generated secret.
STATE_DIR = Path(".kiln")


class Settings(BaseSettings):
    """Every setting Kiln reads; the README lists them with their meaning."""

    model_config = SettingsConfigDict(env_prefix="KILN_", extra="ignore")

    database_url: str = f"sqlite:///{STATE_DIR / 'kiln.db'}"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "kiln"
    # Kilns sharing one Temporal namespace need distinct workflow ids: `<prefix>build-<id>`.
    workflow_id_prefix: str = ""
    jwt_secret: str = ""
    jwt_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Processes `kiln api` serves from (one socket, shared); default: one per core.
    api_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    workspace_dir: Path = STATE_DIR / "workspaces"
    # Docker network of build containers. Empty: a Kiln-managed bridge network that reaches the
    # public internet only (the worker refuses to start if it cannot set that up); `none` cuts
    # builds off; any other value is used as it is.
    build_network: str = ""
    allow_local_repos: bool = False
    # A stable id names this worker's host queue, so a restarted worker takes its own work back.
    worker_id: str = Field(default_factory=socket.gethostname)
    max_builds_per_host: int = Field(default=4, gt=0)
    # How long a running build's host may go silent before Temporal counts it lost and retries
    # the build (on the same host if it comes back, else elsewhere). Hosts heartbeat once a
    # second, so 5 s rides out a few missed beats of a busy machine.
    heartbeat_timeout_seconds: float = Field(default=5, ge=2)
    # How long a chosen host may take to pick a build up before another host is chosen. With
    # the heartbeat timeout this bounds how soon a build of a host gone for good runs
    # elsewhere (about 5 + 1 + this); a host that polls picks work up in milliseconds.
    host_pickup_seconds: float = Field(default=6, gt=0)
    # How often each worker sweeps its leftovers and settles builds whose workflow is gone.
    reconcile_seconds: float = Field(default=30, gt=0)
    # Records younger than this are left alone: the API inserts a row just before it starts
    # the workflow.
    reconcile_min_age_seconds: float = Field(default=60, ge=0)
    image_pull: Literal["missing", "never"] = "missing"
    build_memory_mb: int = Field(default=2048, gt=0)
    build_cpus: float = Field(default=1.0, gt=0)
    build_pids_limit: int = Field(default=512, gt=0)
    log_max_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    git_timeout_seconds: float = Field(default=120, gt=0)
    # GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
    webhook_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    cors_origins: list[str] = []
    # Host names the API answers to (DNS rebinding): empty means the listening address,
    # localhost and KILN_PUBLIC_URL's host.
    allowed_hosts: list[str] = []
    # Where users reach this Kiln (links in statuses and notifications; an allowed host).
    public_url: str = ""
    # GitHub's REST API, where commit statuses go; a GitHub Enterprise server's
    # (`https://ghe.example.com/api/v3`) makes repositories on its host count as GitHub's too.
    github_api_url: str = "https://api.github.com"

    # --- Operators ---
    # The Temporal UI (e.g. http://127.0.0.1:8233): the dashboard links each build's workflow.
    temporal_ui_url: str = ""
    # `json`: one JSON object a line (time, level, logger, message, ids); `text`: readable.
    log_format: Literal["text", "json"] = "text"
    # Each worker serves Prometheus metrics here (on KILN_HOST); 0 turns it off.
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)

    # --- Sandbox of build containers ---
    # uid:gid builds run as; the workspace is owned by it.
    build_user: str = "1000:1000"
    # A build whose workspace grows past this is stopped and fails saying why.
    build_disk_mb: int = Field(default=10 * 1024, gt=0)
    # Registries build images may come from (host[:port]); empty: any public registry.
    allowed_registries: list[str] = []

    # --- Secrets ---
    # Fernet key(s) for project secrets and git credentials: a comma-separated list, newest
    # first (older keys still decrypt, so a key can be rotated). `kiln dev` generates one.
    secrets_key: str = ""

    # --- Limits per user ---
    # git network work (resolving a branch) runs in its own pool, a few per user.
    git_pool_size: int = Field(default=8, gt=0)
    git_per_user: int = Field(default=2, gt=0)
    # A git server sending less than 1 KiB/s for this long is dropped.
    git_stall_seconds: int = Field(default=15, gt=0)
    # JSON bodies larger than this are refused with 413 (the webhook has its own limit).
    json_max_bytes: int = Field(default=128 * 1024, gt=0)
    # Failed logins: after this many within the window, per account or per client address,
    # further attempts answer 429 until the window has passed.
    login_max_failures: int = Field(default=10, gt=0)
    login_window_seconds: int = Field(default=300, gt=0)
    max_projects_per_user: int = Field(default=100, gt=0)
    max_queued_builds_per_user: int = Field(default=100, gt=0)
    max_running_builds_per_user: int = Field(default=20, gt=0)

    @field_validator("jwt_secret")
    @classmethod
    def _no_placeholder_secret(cls, value: str) -> str:
        if value and (len(value) < 16 or value.lower() in {"changeme", "secret", "changethis"}):
            raise ValueError("KILN_JWT_SECRET must be a random string of at least 16 characters")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def host_queue(self) -> str:
        """The task queue only this worker host polls: clone, run and cleanup stay on one host."""
        return f"{self.task_queue}-host-{self.worker_id}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
