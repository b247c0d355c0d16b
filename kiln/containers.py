"""The Docker adapter: a build container's lifecycle as small steps.

    start   create (or find again) and start the build's container
    follow  feed its output, from its start, to a writer until it exits (blocks)
    wait    its exit code, once it has exited
    stop    send it a signal (SIGTERM, then SIGKILL); an exited container is no error
    remove  remove every container of the build; safe to call twice

One container per build, named and labelled from the deployment and the build id: an attempt
that runs again after a crash finds the container of the first attempt instead of starting a
second one. Docker trouble is a `ContainerError` (retryable); an image that is not there and
may not be pulled is an `ImageUnavailable` (permanent), one Kiln must not pull (a registry on a
local or private address, or not an allowed one) an `ImageRefused` (permanent).

Builds run as `KILN_BUILD_USER` (an unprivileged uid:gid), never as root.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig

from kiln.errors import PermanentError, RetryableError
from kiln.images import check_image
from kiln.settings import Settings
from kiln.workspaces import BuildUser

LABEL_BUILD = "kiln.build"
LABEL_MANAGED = "kiln.managed"
LABEL_WORKER = "kiln.worker"
# Build ids are unique within one Kiln only; its task queue tells Kilns sharing an engine apart.
LABEL_DEPLOYMENT = "kiln.deployment"
WORKDIR = "/workspace"


class ImageUnavailable(PermanentError):
    """The build's image is not on this host and may not (or cannot) be pulled."""


class ContainerError(RetryableError):
    """Docker failed us mid-build (the daemon restarted, the container vanished)."""


@dataclass(frozen=True)
class ContainerSpec:
    build_id: int
    image: str
    command: str
    workspace: Path
    # The project's variables and secrets (kiln.secrets.BuildSecrets.env): never printed.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


def container_env(spec: ContainerSpec) -> dict[str, str]:
    """The build's environment: `CI`, then the project's variables and secrets, then what Kiln
    sets itself (HOME, KILN_BUILD_ID: names a project may not use)."""
    return {"CI": "true", **spec.env, "KILN_BUILD_ID": str(spec.build_id), "HOME": "/tmp"}


def seconds_running(container: Any) -> float:
    """How long ago the container started (0 if it has not)."""
    started = container.attrs.get("State", {}).get("StartedAt", "")
    if not started or started.startswith("0001-"):
        return 0.0
    # Docker gives nanoseconds; datetime takes microseconds.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", started).replace("Z", "+00:00")
    return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds())


def container_name(deployment: str, build_id: int) -> str:
    return f"kiln-{re.sub(r'[^a-zA-Z0-9_.-]', '_', deployment)}-build-{build_id}"


def build_labels(deployment: str, build_id: int) -> list[str]:
    """Docker label filters that match exactly one Kiln's containers of one build."""
    return [f"{LABEL_BUILD}={build_id}", f"{LABEL_DEPLOYMENT}={deployment}"]


class Containers:
    """One worker host's build containers, through the Docker SDK (which blocks: call it from a
    thread)."""

    def __init__(self, client: docker.DockerClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._user = BuildUser.parse(settings.build_user)

    def _name(self, build_id: int) -> str:
        return container_name(self._settings.task_queue, build_id)

    def find(self, build_id: int) -> Any | None:
        try:
            return self._client.containers.get(self._name(build_id))
        except NotFound:
            return None

    def start(self, spec: ContainerSpec, existing: Any | None = None) -> Any:
        """The build's container, running: `existing` (an earlier attempt's, which the caller
        found) or a new one. A new one is not inspected again once started: its watch takes it
        as just started (each Docker call costs the daemon a few ms in a burst)."""
        if existing is not None:
            if existing.status == "created":  # its attempt died between create and start
                existing.start()
                existing.reload()
            return existing
        container = self._create(spec)
        if container.status == "created":
            container.start()
        return container

    def _create(self, spec: ContainerSpec) -> Any:
        """A new container; a missing image is fetched (if Kiln may) only when Docker says it is
        missing, as `docker run` does, so the common case costs no image look-up."""
        args = self._create_args(spec)
        try:
            try:
                return self._client.containers.create(**args)
            except ImageNotFound:
                self._ensure_image(spec.image)
                return self._client.containers.create(**args)
        except APIError as exc:
            if exc.status_code != 409:  # 409: a concurrent attempt just created it
                raise
            return self._client.containers.get(self._name(spec.build_id))

    def _create_args(self, spec: ContainerSpec) -> dict[str, Any]:
        s = self._settings
        memory = f"{s.build_memory_mb}m"
        return {
            "image": spec.image,
            "command": ["sh", "-c", spec.command],
            "name": self._name(spec.build_id),
            "labels": {
                LABEL_MANAGED: "true",
                LABEL_BUILD: str(spec.build_id),
                LABEL_WORKER: s.worker_id,
                LABEL_DEPLOYMENT: s.task_queue,
            },
            "working_dir": WORKDIR,
            # Never root: a file the build makes in its workspace (a bind mount of the host's
            # disk) is the build user's, whatever mode bits it sets.
            "user": str(self._user),
            "environment": container_env(spec),
            # The sandbox: only its own workspace from the host, no privileges, bounded
            # memory (swap included), CPU and processes, a read-only root.
            "volumes": {str(spec.workspace.resolve()): {"bind": WORKDIR, "mode": "rw"}},
            "network_mode": s.build_network,
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(s.build_cpus * 1e9),
            "pids_limit": s.build_pids_limit,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "read_only": True,
            "tmpfs": {"/tmp": "rw,exec,size=1g"},
            "detach": True,
            # Kiln stores a few MB of output; Docker's own copy must not fill the disk either.
            "log_config": LogConfig(type="json-file", config={"max-size": "64m", "max-file": "2"}),
        }

    def _present(self, image: str) -> bool:
        try:
            self._client.images.get(image)
            return True
        except ImageNotFound:
            return False

    def refuse_image(self, image: str) -> None:
        """Raise ImageRefused if the image is not on this host and Kiln must not pull it (an
        image already here runs: nothing is fetched for it)."""
        if not self._present(image):
            self._check_pull(image)

    def _check_pull(self, image: str) -> None:
        s = self._settings
        check_image(image, allowed_registries=s.allowed_registries, allow_local=s.allow_local_repos)

    def _ensure_image(self, image: str) -> None:
        if self._present(image):
            return
        # Before any pull: the Docker daemon would send requests wherever the image points.
        self._check_pull(image)
        if self._settings.image_pull == "never":
            raise ImageUnavailable(f"image '{image}' is not on this host")
        try:
            self._client.images.pull(image)
        except (NotFound, ImageNotFound) as exc:
            raise ImageUnavailable(f"image '{image}' not found and could not be pulled") from exc

    def follow(self, container: Any, write: Callable[[bytes], None]) -> None:
        """Feed the container's combined output, from its start, to `write` until it exits."""
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            write(chunk)

    def stored_output(self, container: Any) -> Iterator[bytes]:
        """The container's whole output as Docker stored it (read once it has exited)."""
        try:
            yield from container.logs(stdout=True, stderr=True, stream=True)
        except DockerException as exc:
            raise ContainerError(f"lost the build container: {exc}") from exc

    def wait(self, container: Any) -> int:
        """The exit code of a container that has exited (or blocks until it does)."""
        try:
            return int(container.wait()["StatusCode"])
        except DockerException as exc:
            raise ContainerError(f"lost the build container: {exc}") from exc

    def stop(self, container: Any, name: str) -> None:
        """Send a signal; a container that has already exited is no error."""
        try:
            container.kill(signal=name)
        except APIError as exc:
            if exc.status_code not in (404, 409):  # gone, or not running
                raise

    def of_this_host(self) -> dict[int, Any]:
        """This worker's build containers, running or not, by build id."""
        labels = [
            f"{LABEL_MANAGED}=true",
            f"{LABEL_WORKER}={self._settings.worker_id}",
            f"{LABEL_DEPLOYMENT}={self._settings.task_queue}",
        ]
        found = self._client.containers.list(
            all=True, ignore_removed=True, filters={"label": labels}
        )
        return {
            int(c.labels[LABEL_BUILD]): c for c in found if c.labels.get(LABEL_BUILD, "").isdigit()
        }

    def remove(self, build_id: int) -> None:
        """Remove every container of the build, running or not; safe to call twice."""
        labels = build_labels(self._settings.task_queue, build_id)
        # ignore_removed: a container removed meanwhile (a concurrent cleanup) is no error.
        found = self._client.containers.list(
            all=True, ignore_removed=True, filters={"label": labels}
        )
        for container in found:
            try:
                container.remove(force=True)
            except NotFound:
                pass
