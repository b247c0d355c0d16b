"""The host-bound activities: check out the pinned commit, run the build container, clean up.

They run as plain functions in a thread pool because git and the Docker SDK block.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.containers import Containers, ContainerSpec, ImageUnavailable
from activities.logwriter import LogWriter
from activities.types import PERMANENT_ERROR, BuildJob, RunResult
from kiln.db import SessionFactory
from kiln.git import CommitInfo, GitError, checkout
from kiln.models import Build, Project
from kiln.settings import Settings

# How often the run loop stores output, heartbeats and looks for a cancel request.
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class _Spec:
    repo_url: str
    commit_hash: str
    image: str
    command: str
    owner_id: int


def permanent(message: str) -> ApplicationError:
    return ApplicationError(message, type=PERMANENT_ERROR, non_retryable=True)


class BuildActivities:
    def __init__(self, sessions: SessionFactory, containers: Containers, settings: Settings):
        self._sessions = sessions
        self._containers = containers
        self._settings = settings

    def workspace(self, build_id: int) -> Path:
        return (self._settings.workspace_dir / f"build-{build_id}").resolve()

    @activity.defn(name="execute_build")
    def execute_build(self, job: BuildJob) -> RunResult:
        """Clone, run and clean up; a non-zero exit is a result, not an error."""
        spec = self._load(job.build_id)
        workspace = self.workspace(job.build_id)
        try:
            info = checkout(
                spec.repo_url,
                spec.commit_hash,
                workspace,
                timeout=self._settings.git_timeout_seconds,
            )
        except GitError as exc:
            if exc.permanent:
                raise permanent(str(exc)) from None
            raise ApplicationError(str(exc), type="GitError") from None
        self._fill_commit_info(job.build_id, info)
        container_spec = ContainerSpec(job.build_id, spec.image, spec.command, workspace)
        try:
            container = self._containers.start(container_spec)
        except ImageUnavailable as exc:
            raise permanent(str(exc)) from None
        writer = LogWriter(
            self._sessions, job.build_id, spec.owner_id, self._settings.log_max_bytes
        )
        exit_code = self._follow(job.build_id, container, writer)
        self.cleanup_build(job)
        return RunResult(exit_code=exit_code)

    @activity.defn(name="cleanup_build")
    def cleanup_build(self, job: BuildJob) -> None:
        """Remove the build's container and workspace; safe to call any number of times."""
        self._containers.remove(job.build_id)
        shutil.rmtree(self.workspace(job.build_id), ignore_errors=True)

    def _follow(self, build_id: int, container: Any, writer: LogWriter) -> int:
        """Stream output until the container exits, heartbeating; returns its exit code."""
        done = threading.Event()
        failures: list[Exception] = []

        def pump() -> None:
            try:
                self._containers.stream_output(container, writer.write)
            except Exception as exc:  # surfaced below, in the activity's thread
                failures.append(exc)
            finally:
                done.set()

        threading.Thread(target=pump, name=f"logs-{build_id}", daemon=True).start()
        while not done.wait(TICK_SECONDS):
            writer.flush()
            activity.heartbeat()
            if activity.is_cancelled():
                self._containers.stop(container)
                writer.flush(final=True)
                self.cleanup_build(BuildJob(build_id))
                raise CancelledError("build canceled")
        writer.flush(final=True)
        if failures:
            raise failures[0]
        try:
            return self._containers.wait(container)
        except DockerException as exc:
            raise ApplicationError(f"lost the build container: {exc}", type="DockerError") from exc

    def _load(self, build_id: int) -> _Spec:
        with self._sessions() as session:
            row = session.execute(
                select(Build.commit_hash, Project.repo_url, Project.image, Project.build_command)
                .add_columns(Project.owner_id)
                .join(Project, Build.project_id == Project.id)
                .where(Build.id == build_id)
            ).one_or_none()
        if row is None:
            raise permanent(f"build {build_id} no longer exists")
        commit_hash, repo_url, image, command, owner_id = row
        return _Spec(repo_url, commit_hash, image, command, owner_id)

    def _fill_commit_info(self, build_id: int, info: CommitInfo) -> None:
        """Builds queued without a push payload learn their message and author from the checkout."""
        with self._sessions.begin() as session:
            build = session.get(Build, build_id)
            if build is None:
                return
            if not build.commit:
                build.commit = info.message
            if not build.commit_author:
                build.commit_author = info.author
