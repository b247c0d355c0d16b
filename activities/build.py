"""The host-bound activities: check out the pinned commit, run the build container, clean up.

They run as plain functions in a thread pool because git and the Docker SDK block.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from docker.errors import DockerException
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.containers import Containers, ContainerSpec, ImageUnavailable, seconds_running
from activities.logwriter import LogWriter
from activities.types import PERMANENT_ERROR, BuildJob, RunResult
from kiln.db import SessionFactory
from kiln.git import CommitInfo, GitError, checkout
from kiln.models import Build, Project
from kiln.repos import RepoRefused, RepoUnresolvable, check_repo_url
from kiln.settings import Settings

T = TypeVar("T")

# How often the run loop stores output and looks for a cancel request (heartbeats are
# throttled by the worker to one a second).
TICK_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
# SIGTERM first; SIGKILL if the build has not stopped this long after.
STOP_GRACE_SECONDS = 10


@dataclass(frozen=True)
class _Spec:
    repo_url: str
    commit_hash: str
    image: str
    command: str
    owner_id: int
    timeout_seconds: int


def heartbeating(work: Callable[[], T]) -> T:
    """Run blocking work (a clone, an image pull) in a thread while this one heartbeats: a
    slow step must not look like a lost worker, or a second attempt would start beside it."""
    results: list[T] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # re-raised in the activity's thread
            failures.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    while not done.wait(HEARTBEAT_SECONDS):
        activity.heartbeat()
    if failures:
        raise failures[0]
    return results[0]


def _cancel_requested() -> bool:
    """Whether the build itself was canceled. Other cancels of an attempt (worker shutdown, a
    heartbeat timeout after which a retry took over) must leave its container alone."""
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested and not details.worker_shutdown


def permanent(message: str) -> ApplicationError:
    return ApplicationError(message, type=PERMANENT_ERROR, non_retryable=True)


class BuildActivities:
    def __init__(self, sessions: SessionFactory, containers: Containers, settings: Settings):
        self._sessions = sessions
        self._containers = containers
        self._settings = settings
        # The host's cap on builds running at once. A build waiting here heartbeats, so its
        # host is known alive; it is not moved elsewhere.
        self._slots = threading.BoundedSemaphore(settings.max_builds_per_host)

    def workspace(self, build_id: int) -> Path:
        return (self._settings.workspace_dir / f"build-{build_id}").resolve()

    @activity.defn(name="execute_build")
    def execute_build(self, job: BuildJob) -> RunResult:
        """Clone, run and clean up; a non-zero exit is a result, not an error."""
        # Cancellation is looked for at known points (see _follow) rather than raised into the
        # thread wherever it happens to be, e.g. half-way through a database write.
        with activity.shield_thread_cancel_exception():
            while not self._slots.acquire(timeout=1):
                activity.heartbeat("waiting for a free slot on this host")
                self._stop_if_cancelled(job.build_id)
            try:
                return self._execute(job)
            finally:
                self._slots.release()

    def _execute(self, job: BuildJob) -> RunResult:
        spec = self._load(job.build_id)
        workspace = self.workspace(job.build_id)
        # A container from an earlier attempt already has its checkout: follow it. Otherwise
        # check out afresh (never reuse a workspace a build may have written to).
        if self._containers.find(job.build_id) is None:
            heartbeating(lambda: self._checkout(job.build_id, spec, workspace))
            self._stop_if_cancelled(job.build_id)
        container_spec = ContainerSpec(job.build_id, spec.image, spec.command, workspace)
        try:
            # Pulling an image can take minutes.
            container = heartbeating(lambda: self._containers.start(container_spec))
        except ImageUnavailable as exc:
            raise permanent(str(exc)) from None
        writer = LogWriter(
            self._sessions, job.build_id, spec.owner_id, self._settings.log_max_bytes
        )
        # The container stays until the workflow has recorded this result and runs
        # cleanup_build: a retry of this activity re-attaches to it rather than running again.
        return self._follow(job.build_id, container, writer, spec.timeout_seconds)

    def _checkout(self, build_id: int, spec: _Spec, workspace: Path) -> None:
        timeout = self._settings.git_timeout_seconds
        try:
            # Checked again at every clone: the host's address may have changed since.
            pin = check_repo_url(spec.repo_url, allow_local=self._settings.allow_local_repos)
            info = checkout(spec.repo_url, spec.commit_hash, workspace, timeout=timeout, pin=pin)
        except RepoUnresolvable as exc:
            raise ApplicationError(str(exc), type="GitError") from None
        except RepoRefused as exc:
            raise permanent(str(exc)) from None
        except GitError as exc:
            if exc.permanent:
                raise permanent(str(exc)) from None
            raise ApplicationError(str(exc), type="GitError") from None
        self._fill_commit_info(build_id, info)

    @activity.defn(name="cleanup_build")
    def cleanup_build(self, job: BuildJob) -> None:
        """Remove the build's container and workspace; safe to call any number of times.
        (Removing a big workspace can take a while: heartbeat meanwhile.)"""
        self._containers.remove(job.build_id)
        heartbeating(lambda: shutil.rmtree(self.workspace(job.build_id), ignore_errors=True))

    def _stop_if_cancelled(self, build_id: int) -> None:
        """Before the container exists: on a cancel, clean up and stop here."""
        if not activity.is_cancelled():
            return
        if not _cancel_requested():
            raise CancelledError("this attempt is no longer current")
        self.cleanup_build(BuildJob(build_id))
        raise CancelledError("build canceled")

    def _follow(self, build_id: int, container: Any, writer: LogWriter, timeout: int) -> RunResult:
        """Stream output until the container exits, heartbeating; returns its exit code.

        A cancel or the project's timeout stops the container: SIGTERM, then SIGKILL after the
        grace period. The loop goes on heartbeating meanwhile, so the stop never looks like a
        lost worker."""
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
        # Measured from the container's own start, so a re-attached run keeps its deadline.
        deadline = time.monotonic() + timeout - seconds_running(container)
        if container.status == "exited":  # finished while no worker watched: its result stands
            deadline = float("inf")
        stopping: str | None = None  # why: "cancel" or "timeout"
        kill_at: float | None = None
        while not done.wait(TICK_SECONDS):
            writer.flush()
            activity.heartbeat()
            if stopping is None:
                if activity.is_cancelled():
                    if not _cancel_requested():
                        # This worker is stopping, or this attempt timed out and a retry
                        # took over: the container runs on for the current attempt.
                        raise CancelledError("this attempt is no longer current")
                    stopping = "cancel"
                elif time.monotonic() > deadline:
                    stopping = "timeout"
                if stopping is not None:
                    self._containers.signal(container, "SIGTERM")
                    kill_at = time.monotonic() + STOP_GRACE_SECONDS
            elif kill_at is not None and time.monotonic() > kill_at:
                self._containers.signal(container, "SIGKILL")
                kill_at = None
        if failures:
            raise failures[0]
        try:
            exit_code = self._containers.wait(container)
            if not writer.full:
                # Docker's follow stream can end before the last output (moby#43860): read
                # the stored log again and add what the stream missed.
                writer.resume(self._containers.stored_output(container))
        except DockerException as exc:
            raise ApplicationError(f"lost the build container: {exc}", type="DockerError") from exc
        writer.flush(final=True)
        if stopping == "cancel":
            self.cleanup_build(BuildJob(build_id))
            raise CancelledError("build canceled")
        return RunResult(exit_code=exit_code, timed_out=stopping == "timeout")

    def _load(self, build_id: int) -> _Spec:
        with self._sessions() as session:
            row = session.execute(
                select(Build.commit_hash, Project.repo_url, Project.image, Project.build_command)
                .add_columns(Project.owner_id, Project.timeout_seconds)
                .join(Project, Build.project_id == Project.id)
                .where(Build.id == build_id)
            ).one_or_none()
        if row is None:
            raise permanent(f"build {build_id} no longer exists")
        commit_hash, repo_url, image, command, owner_id, timeout_seconds = row
        return _Spec(repo_url, commit_hash, image, command, owner_id, timeout_seconds)

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
