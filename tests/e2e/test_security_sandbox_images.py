"""The build image is no way to make the Docker daemon send requests: an image whose registry is
on a loopback, private or link-local address is refused before any pull (unless local
registries are allowed), and `KILN_ALLOWED_REGISTRIES` narrows the registries further.

A trap listener on 127.0.0.1 stands for a service on the worker's loopback: the Docker daemon,
which runs on the host, would connect to it for an image named `127.0.0.1:<port>/x:latest`.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest

from kiln.containers import Containers
from kiln.db import make_engine, make_session_factory
from kiln.images import ImageRefused, check_image, image_registry
from kiln.migrate import upgrade
from kiln.settings import Settings
from testbed.git_server import GitServer
from testbed.stack import Stack, running_api, running_worker, stack_settings
from tests.support.helpers import last_line, new_repo

REFUSAL_BOUND = 20.0


@dataclass
class Trap:
    """A TCP listener on 127.0.0.1 that records and drops every connection."""

    port: int
    peers: list[str] = field(default_factory=list)

    def image(self, name: str = "x:latest") -> str:
        return f"127.0.0.1:{self.port}/{name}"


@pytest.fixture
def trap() -> Iterator[Trap]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    found = Trap(sock.getsockname()[1])

    def accept() -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            found.peers.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield found
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    thread.join(timeout=5)


def adapter_settings(**changes: object) -> Settings:
    base = Settings(
        task_queue=f"kiln-test-{uuid.uuid4().hex[:8]}",
        worker_id="host-images",
        build_network="none",
        image_pull="missing",
        allow_local_repos=False,
        allowed_registries=[],
    )
    return base.model_copy(update=changes)


# --- at pull time, in the Docker adapter ---------------------------------------------------------


def test_a_pull_that_is_not_refused_reaches_the_listener(
    docker_client: docker.DockerClient, trap: Trap
) -> None:
    """The control: with local registries allowed, the daemon does connect to the trap (so the
    tests below would see a pull if one were made)."""
    containers = Containers(docker_client, adapter_settings(allow_local_repos=True))

    with pytest.raises(Exception):  # noqa: B017 - the trap is no registry: the pull fails
        containers._ensure_image(trap.image())

    assert trap.peers, "the Docker daemon never connected to the trap"


def test_an_image_on_a_loopback_registry_is_refused_before_any_pull(
    docker_client: docker.DockerClient, trap: Trap
) -> None:
    containers = Containers(docker_client, adapter_settings())

    with pytest.raises(ImageRefused) as refused:
        containers._ensure_image(trap.image())
    with pytest.raises(ImageRefused):
        containers.refuse_image(trap.image())

    assert f"127.0.0.1:{trap.port}" in str(refused.value)
    assert "local or private" in str(refused.value)
    assert trap.peers == []


def test_a_registry_outside_the_allowed_ones_is_refused_even_when_local_ones_are_allowed(
    docker_client: docker.DockerClient, trap: Trap
) -> None:
    settings = adapter_settings(allow_local_repos=True, allowed_registries=["registry.example"])
    containers = Containers(docker_client, settings)

    with pytest.raises(ImageRefused) as refused:
        containers._ensure_image(trap.image())

    assert "not allowed" in str(refused.value)
    assert trap.peers == []


def test_an_image_already_on_the_host_runs_whatever_its_registry(
    docker_client: docker.DockerClient, busybox: str, trap: Trap
) -> None:
    """Nothing is fetched for an image that is here: it is not refused (tests and air-gapped
    hosts load images themselves)."""
    local = trap.image(f"kiln-test/present:{uuid.uuid4().hex[:8]}")
    docker_client.images.get(busybox).tag(local)
    try:
        containers = Containers(docker_client, adapter_settings())
        containers.refuse_image(local)
        containers._ensure_image(local)
    finally:
        docker_client.images.remove(local)
    assert trap.peers == []


# --- a build -------------------------------------------------------------------------------------


@pytest.fixture
async def strict_worker_stack(
    tmp_path: Path, temporal_address: str, git_server: GitServer, busybox: str
) -> AsyncIterator[Stack]:
    """An API that accepted a local registry's image (local repositories allowed there) and a
    worker that allows neither local repositories nor local registries, and may pull."""
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    api_settings = stack_settings(url, temporal_address, tmp_path / "workspaces")
    worker_settings = api_settings.model_copy(
        update={"allow_local_repos": False, "image_pull": "missing"}
    )
    engine = make_engine(url)
    try:
        async with (
            running_worker(worker_settings),
            running_api(api_settings) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            sessions = make_session_factory(engine)
            yield Stack(api_settings, sessions, base_url, http, git_server, busybox)
    finally:
        engine.dispose()


async def test_a_build_whose_image_is_on_a_loopback_registry_fails_and_nothing_is_pulled(
    strict_worker_stack: Stack, trap: Trap
) -> None:
    stack = strict_worker_stack
    user = await stack.register()
    repo = new_repo(stack.git, "image-ssrf")
    started = time.monotonic()

    created = await stack.create_project(user, repo.url, "echo never runs", image=trap.image())

    build_id = created["build"]["id"]
    final = await stack.wait_final(user, build_id, timeout=REFUSAL_BOUND)
    logs = await stack.logs(user, build_id)
    assert final["status"] == "failed", logs
    assert final["exitCode"] is None
    reason = last_line(logs)
    assert f"image registry '127.0.0.1:{trap.port}' is a local or private address" in reason
    assert "never runs" not in logs
    assert time.monotonic() - started < REFUSAL_BOUND
    assert trap.peers == [], "the Docker daemon connected to the loopback service"


# --- the rules -----------------------------------------------------------------------------------

# Literal addresses and `localhost` only: resolving them sends nothing over the network.
LOCAL_REGISTRIES = [
    "127.0.0.1:5000/x:latest",
    "127.1.2.3/team/app",
    "localhost/x",
    "localhost:5000/x@sha256:" + "a" * 64,
    "[::1]:5000/x",
    "[::ffff:127.0.0.1]:5000/x",
    "10.1.2.3/x",
    "172.17.0.1:5000/x",
    "192.168.1.10:443/team/app:1",
    "169.254.169.254/latest/x",
    "100.64.0.1/x",
    "0.0.0.0:5000/x",
    "2130706433:5000/x",  # 127.0.0.1 as one number
    "0x7f000001:80/x",
    "[fd00::1]/x",
    "[fe80::1]:5000/x",
]


@pytest.mark.parametrize("image", LOCAL_REGISTRIES)
def test_images_of_local_and_private_registries_are_refused(image: str) -> None:
    with pytest.raises(ImageRefused, match="local or private"):
        check_image(image, allowed_registries=[], allow_local=False)
    check_image(image, allowed_registries=[], allow_local=True)  # local development, tests


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("busybox", "docker.io"),
        ("node:20-alpine", "docker.io"),
        ("library/node@sha256:" + "b" * 64, "docker.io"),
        ("docker.io/library/node:20", "docker.io"),
        ("index.docker.io/team/app", "docker.io"),
        ("ghcr.io/team/app:1.2", "ghcr.io"),
        ("Registry.Example:5000/team/app", "registry.example:5000"),
        ("8.8.8.8/x", "8.8.8.8"),
    ],
)
def test_the_registry_of_an_image_follows_dockers_rules(image: str, registry: str) -> None:
    assert image_registry(image) == registry


@pytest.mark.parametrize("image", ["busybox", "node:20-alpine", "team/app", "8.8.8.8:5000/x"])
def test_public_registries_are_allowed_by_default(image: str) -> None:
    check_image(image, allowed_registries=[], allow_local=False)


def test_the_allowed_registries_narrow_what_may_be_pulled() -> None:
    allowed = ["ghcr.io", "registry.example:5000"]

    check_image("ghcr.io/team/app", allowed_registries=allowed, allow_local=True)
    check_image("registry.example:5000/app", allowed_registries=allowed, allow_local=True)
    for image in ("busybox", "registry.example/app", "quay.io/x", "127.0.0.1:5000/x"):
        with pytest.raises(ImageRefused, match="not allowed"):
            check_image(image, allowed_registries=allowed, allow_local=True)
    # Docker Hub by any of its names.
    check_image("busybox", allowed_registries=["index.docker.io"], allow_local=False)
    check_image("docker.io/library/busybox", allowed_registries=["docker.io"], allow_local=False)


@pytest.mark.parametrize("image", ["", " ", "bad image", "x/Y", "a:b:c", "x@sha256:short", "/x"])
def test_what_is_not_an_image_reference_is_refused(image: str) -> None:
    with pytest.raises(ImageRefused, match="not a valid image reference"):
        check_image(image, allowed_registries=[], allow_local=True)
