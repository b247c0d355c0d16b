"""Running one build on this host: check out its pinned commit, start its container, follow it
to its exit code, clean up. Blocking code, called by the host activities from a thread.

The caller hands in an `Attempt`: how to heartbeat, and whether this attempt has been asked to
stop. That keeps Temporal out of the core; `activities.build` adapts it.

The project's secrets, variables and git credentials are read here, on the host, from the
database (kiln.secrets): nothing the activity returns or raises carries them, and its output
is masked before it is stored or sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from kiln.builds import BuildService, JobSpec
from kiln.containers import Containers, ContainerSpec, seconds_running
from kiln.contracts import RunResult
from kiln.db import SessionFactory
from kiln.errors import (
    AttemptSuperseded,
    BuildCanceled,
    PermanentError,
    RetryableError,
    StopRequested,
)
from kiln.git import Credentials, GitAuthFailed, checkout
from kiln.heartbeat import run_beside
from kiln.logwriter import LogWriter
from kiln.masking import Masker
from kiln.repos import check_repo_url
from kiln.secrets import BuildSecrets, SecretStore
from kiln.settings import Settings
from kiln.workspaces import (
    BuildUser,
    defuse,
    disk_usage,
    hand_over,
    prepare_root,
    remove_workspace,
    workspace_path,
)

# How often a running build's output is stored and a stop looked for (heartbeats are
# throttled by the worker to one a second).
TICK_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
# SIGTERM first; SIGKILL if the build has not stopped this long after.
STOP_GRACE_SECONDS = 10
# A build past its disk limit may still be writing: it gets a short grace only.
DISK_STOP_GRACE_SECONDS = 2
# How often a running build's workspace is measured; a walk that takes long (a huge tree) waits
# this many times its own duration before the next, so measuring costs 5 % of a core at most
# (a 100,000-file tree takes about 0.35 s: measured every 7 s).
DISK_CHECK_SECONDS = 2.0
DISK_CHECK_COST_FACTOR = 20


class Stop(Enum):
    CANCEL = "cancel"  # the build was canceled: stop its container
    SUPERSEDED = "superseded"  # this attempt is no longer current: leave the container be


class Attempt(Protocol):
    """The running attempt, as the executor sees it."""

    def heartbeat(self, note: str | None = None) -> None: ...

    def stop_requested(self) -> Stop | None: ...


class _Why(Enum):
    CANCEL = "cancel"
    TIMEOUT = "timeout"
    DISK = "disk"


def disk_limit_reason(limit_mb: int) -> str:
    return f"the build used more than {limit_mb} MB of disk and was stopped"


@contextmanager
def scrubbed(masker: Masker) -> Iterator[None]:
    """An error whose message holds a secret (an adapter echoing what it was given) leaves as
    a plain Kiln error of the same kind with the secret masked, and without its cause: error
    messages end up in Temporal's history and in the build's log."""
    try:
        yield
    except StopRequested:
        raise
    except Exception as exc:
        text = str(exc)
        clean = masker.mask_text(text)
        if clean == text:
            raise
        kind = PermanentError if isinstance(exc, PermanentError) else RetryableError
        raise kind(clean) from None


class DiskWatch:
    """Measures a running build's workspace in a thread of its own, every DISK_CHECK_SECONDS
    at most (less often when the tree is big), so the watch's ticks never wait for a walk."""

    def __init__(self, workspace: Path, limit_bytes: int) -> None:
        self._workspace = workspace
        self._limit = limit_bytes
        self._next = time.monotonic() + DISK_CHECK_SECONDS
        self._running = False
        self._closed = False
        self.exceeded = False

    def poll(self) -> bool:
        """True once a measure found the workspace past the limit; starts the next measure
        when it is due."""
        if not self.exceeded and not self._running and time.monotonic() >= self._next:
            self._running = True
            threading.Thread(target=self._measure, daemon=True).start()
        return self.exceeded

    def _measure(self) -> None:
        started = time.monotonic()
        try:
            used = disk_usage(self._workspace, stop=lambda: self._closed)
            if used > self._limit and not self._closed:
                self.exceeded = True
        except OSError:
            pass  # the workspace is being removed; the next measure (if any) tells
        finally:
            spent = time.monotonic() - started
            self._next = time.monotonic() + max(DISK_CHECK_SECONDS, spent * DISK_CHECK_COST_FACTOR)
            self._running = False

    def close(self) -> None:
        self._closed = True


class ContainerWatch:
    """Called every tick while a container runs: stores output, heartbeats, and on a cancel, at
    the project's timeout or past the disk limit stops the container (SIGTERM, then SIGKILL
    after the grace)."""

    def __init__(
        self,
        containers: Containers,
        container: Any,
        writer: LogWriter,
        attempt: Attempt,
        timeout: float,
        disk: DiskWatch | None = None,
    ) -> None:
        self._containers = containers
        self._container = container
        self._writer = writer
        self._attempt = attempt
        # Measured from the container's own start, so a re-attached run keeps its deadline; one
        # that finished while no worker watched keeps its result.
        exited = container.status == "exited"
        self._deadline = (
            float("inf") if exited else time.monotonic() + timeout - seconds_running(container)
        )
        self.stopping: _Why | None = None
        self._kill_at: float | None = None
        self._disk = None if exited else disk

    def tick(self) -> None:
        self._writer.flush()
        self._attempt.heartbeat()
        if self.stopping is None:
            self._maybe_stop()
        elif self._kill_at is not None and time.monotonic() > self._kill_at:
            self._containers.stop(self._container, "SIGKILL")
            self._kill_at = None

    def _maybe_stop(self) -> None:
        stop = self._attempt.stop_requested()
        if stop is Stop.SUPERSEDED:
            # This worker is stopping, or a retry took over: the container runs on for it.
            raise AttemptSuperseded("this attempt is no longer current")
        if stop is Stop.CANCEL:
            self.stopping = _Why.CANCEL
        elif time.monotonic() > self._deadline:
            self.stopping = _Why.TIMEOUT
        elif self._disk is not None and self._disk.poll():
            self.stopping = _Why.DISK
        if self.stopping is not None:
            self._containers.stop(self._container, "SIGTERM")
            grace = DISK_STOP_GRACE_SECONDS if self.stopping is _Why.DISK else STOP_GRACE_SECONDS
            self._kill_at = time.monotonic() + grace

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()


class BuildExecutor:
    """This host's builds: at most `KILN_MAX_BUILDS_PER_HOST` at once."""

    def __init__(
        self,
        sessions: SessionFactory,
        builds: BuildService,
        containers: Containers,
        settings: Settings,
        secrets: SecretStore | None = None,
    ) -> None:
        self._sessions = sessions
        self._builds = builds
        self._containers = containers
        self._settings = settings
        self._secrets = secrets or SecretStore.from_settings(sessions, settings)
        self._user = BuildUser.parse(settings.build_user)
        prepare_root(settings.workspace_dir)
        # A build waiting here heartbeats, so its host is known alive; it is not moved.
        self._slots = threading.BoundedSemaphore(settings.max_builds_per_host)

    def workspace(self, build_id: int) -> Path:
        return workspace_path(self._settings.workspace_dir, build_id)

    def execute(self, build_id: int, attempt: Attempt) -> RunResult:
        """Clone, run and follow; a non-zero exit is a result, not an error. The container
        stays until `cleanup`: a retried attempt re-attaches to it rather than running again."""
        while not self._slots.acquire(timeout=HEARTBEAT_SECONDS):
            attempt.heartbeat("waiting for a free slot on this host")
            self._stop_before_start(build_id, attempt)
        try:
            return self._execute(build_id, attempt)
        finally:
            self._slots.release()

    def cleanup(self, build_id: int, attempt: Attempt) -> None:
        """Remove the build's container and workspace; safe to call any number of times.
        (Removing a big workspace can take a while: heartbeat meanwhile.)"""
        self._containers.remove(build_id)
        workspace = self.workspace(build_id)
        run_beside(lambda: remove_workspace(workspace), attempt.heartbeat, HEARTBEAT_SECONDS)

    def _execute(self, build_id: int, attempt: Attempt) -> RunResult:
        spec = self._builds.job_spec(build_id)
        if spec is None:
            raise PermanentError(f"build {build_id} no longer exists")
        secrets = self._secrets.for_build(build_id)
        with scrubbed(Masker(secrets.masked)):
            return self._run(build_id, spec, secrets, attempt)

    def _run(
        self, build_id: int, spec: JobSpec, secrets: BuildSecrets, attempt: Attempt
    ) -> RunResult:
        workspace = self.workspace(build_id)
        # A container from an earlier attempt already has its checkout: follow it. Otherwise
        # check out afresh (never reuse a workspace a build may have written to).
        existing = self._containers.find(build_id)
        if existing is None:
            # Before cloning: an image Kiln must not pull fails the build at once. (Resolving
            # its registry's name may be slow: heartbeat meanwhile.)
            run_beside(
                lambda: self._containers.refuse_image(spec.image),
                attempt.heartbeat,
                HEARTBEAT_SECONDS,
            )
            run_beside(
                lambda: self._checkout(build_id, spec, workspace, secrets.credentials),
                attempt.heartbeat,
                HEARTBEAT_SECONDS,
            )
            self._stop_before_start(build_id, attempt)
        container_spec = ContainerSpec(
            build_id, spec.image, spec.command, workspace, env=secrets.env
        )
        # Pulling an image can take minutes.
        container = run_beside(
            lambda: self._containers.start(container_spec, existing),
            attempt.heartbeat,
            HEARTBEAT_SECONDS,
        )
        writer = LogWriter(
            self._sessions,
            build_id,
            spec.owner_id,
            self._settings.log_max_bytes,
            masked=secrets.masked,
        )
        return self._follow(build_id, container, writer, attempt, spec.timeout_seconds)

    def _checkout(
        self, build_id: int, spec: JobSpec, workspace: Path, auth: Credentials | None
    ) -> None:
        # Checked again at every clone: the host's address may have changed since.
        pin = check_repo_url(spec.repo_url, allow_local=self._settings.allow_local_repos)
        timeout = self._settings.git_timeout_seconds
        stall = self._settings.git_stall_seconds
        # What an earlier attempt's build left there goes first, whatever it is.
        remove_workspace(workspace)
        prepare_root(workspace.parent)
        try:
            info = checkout(
                spec.repo_url,
                spec.commit_hash,
                workspace,
                timeout=timeout,
                pin=pin,
                stall=stall,
                auth=auth,
            )
        except GitAuthFailed as exc:
            hint = (
                "the project has no git credentials"
                if auth is None
                else "the project's git credentials were refused"
            )
            raise GitAuthFailed(
                f"{exc}: {hint}; set them with PUT /api/project/projects/<id>/credentials"
            ) from None
        # git ran as this worker; the build runs as its own unprivileged user.
        hand_over(workspace, self._user)
        self._builds.fill_commit_info(build_id, info)

    def _stop_before_start(self, build_id: int, attempt: Attempt) -> None:
        """Before the container exists: on a cancel, clean up and stop here."""
        stop = attempt.stop_requested()
        if stop is Stop.SUPERSEDED:
            raise AttemptSuperseded("this attempt is no longer current")
        if stop is Stop.CANCEL:
            self.cleanup(build_id, attempt)
            raise BuildCanceled("build canceled")

    def _follow(
        self, build_id: int, container: Any, writer: LogWriter, attempt: Attempt, timeout: int
    ) -> RunResult:
        """Stream output until the container exits, heartbeating; returns its exit code."""
        workspace = self.workspace(build_id)
        limit_mb = self._settings.build_disk_mb
        disk = DiskWatch(workspace, limit_mb * 1024 * 1024)
        watch = ContainerWatch(self._containers, container, writer, attempt, timeout, disk)
        try:
            run_beside(
                lambda: self._containers.follow(container, writer.write), watch.tick, TICK_SECONDS
            )
        finally:
            watch.close()
        exit_code = self._containers.wait(container)
        # Nothing writes there any more: before anything else touches the tree, strip what
        # could carry privileges onto the host, and measure it once more.
        used = run_beside(lambda: defuse(workspace), attempt.heartbeat, HEARTBEAT_SECONDS)
        if not writer.full:
            # Docker's follow stream can end before the last output (moby#43860): read the
            # stored log again and add what the stream missed.
            writer.resume(self._containers.stored_output(container))
        writer.flush(final=True)
        if watch.stopping is _Why.CANCEL:
            self.cleanup(build_id, attempt)
            raise BuildCanceled("build canceled")
        # Past the limit between two measures counts too (unless stopped for another reason).
        over = watch.stopping is None and used > limit_mb * 1024 * 1024
        if watch.stopping is _Why.DISK or over:
            # The workflow records a permanent error as `failed`, this as the last log line.
            raise PermanentError(disk_limit_reason(limit_mb))
        return RunResult(exit_code=exit_code, timed_out=watch.stopping is _Why.TIMEOUT)
