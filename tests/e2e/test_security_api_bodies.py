"""Request bodies are capped before anything reads them (`KILN_JSON_MAX_BYTES`, 64 KiB): a body
over the cap is a 413 with a message, whether its length is declared or it arrives chunked, on
every route but the webhook (which has its own cap), authenticated or not — and the API's memory
does not grow with what was sent.

The API runs as a deployment runs it (`kiln api`, a process of its own), so its resident memory
can be read from /proc: the peak is reset before the attack and read after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from testbed.processes import KilnProcess, api_process
from testbed.stack import free_port, stack_settings
from tests.support.helpers import PROJECTS, assert_error

MIB = 1 << 20
ATTACK_BYTES = 300 * MIB
# What the API may grow by while refusing a 300 MB body (it grew by 800 MB before the cap).
GROWTH_BOUND = 64 * MIB


@dataclass
class RunningApi:
    process: KilnProcess
    base_url: str
    json_max_bytes: int

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def memory(self, field: str) -> int:
        """VmRSS (resident now) or VmHWM (peak resident), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")

    def reset_peak(self) -> None:
        # Writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def api(
    db_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    root = tmp_path_factory.mktemp("bodies")
    settings = stack_settings(db_url, temporal_address, root / "workspaces")
    port = free_port()
    process = api_process(settings, port, root).start()
    try:
        yield RunningApi(process, f"http://127.0.0.1:{port}", settings.json_max_bytes)
    finally:
        process.stop()


@pytest.fixture
async def http(api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=120) as client:
        yield client


async def megabytes(total: int) -> AsyncIterator[bytes]:
    """`total` bytes of a JSON-looking body, made as it is sent (nothing held in the test)."""
    chunk = b"[" + b"1," * (MIB // 2 - 1) + b"1"
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


async def test_a_300_mb_chunked_body_is_refused_413_without_the_api_growing(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    api.reset_peak()
    before = api.memory("VmRSS")

    # Unauthenticated, chunked (no length to go by), to the route the attack used.
    response = await http.post(
        PROJECTS, content=megabytes(ATTACK_BYTES), headers={"Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert str(api.json_max_bytes) in assert_error(response, 413)
    grown = api.memory("VmHWM") - before
    assert grown < GROWTH_BOUND, f"the API grew by {grown / MIB:.0f} MiB"


async def test_a_300_mb_body_with_its_length_declared_is_refused_413_without_the_api_growing(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    api.reset_peak()
    before = api.memory("VmRSS")

    response = await http.post(
        PROJECTS,
        content=megabytes(ATTACK_BYTES),
        headers={"Content-Type": "application/json", "Content-Length": str(ATTACK_BYTES)},
    )

    assert response.request.headers["content-length"] == str(ATTACK_BYTES)
    assert_error(response, 413)
    grown = api.memory("VmHWM") - before
    assert grown < GROWTH_BOUND, f"the API grew by {grown / MIB:.0f} MiB"


async def test_a_declared_length_over_the_cap_is_refused_before_any_of_the_body_is_sent(
    api: RunningApi,
) -> None:
    """Only the request head goes out: the API answers without waiting for the body."""
    port = int(api.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {PROJECTS} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {ATTACK_BYTES}\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        except TimeoutError:
            raise AssertionError("the API waited for the body instead of answering") from None
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("POST", PROJECTS),
        ("PATCH", f"{PROJECTS}/1"),
        ("POST", "/api/build/rebuild/1"),
        ("POST", "/api/no/such/route"),
        ("POST", "/socket.io/?EIO=4&transport=polling"),
    ],
)
async def test_every_route_but_the_webhook_refuses_a_body_over_the_cap(
    api: RunningApi, http: httpx.AsyncClient, method: str, path: str
) -> None:
    over = api.json_max_bytes + 1

    declared = await http.request(method, path, content=b" " * over)
    chunked = await http.request(method, path, content=megabytes(over))

    assert_error(declared, 413, "declared")
    assert_error(chunked, 413, "chunked")


def padded(fields: dict[str, str], size: int) -> bytes:
    """`fields` as JSON, padded with trailing whitespace (which JSON allows) to `size` bytes."""
    body = json.dumps(fields).encode()
    return body + b" " * (size - len(body))


async def test_a_body_exactly_at_the_cap_is_still_read(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    login = {"email": "capped@example.com", "password": "correct horse battery"}
    cap = api.json_max_bytes
    headers = {"Content-Type": "application/json"}

    register = padded(login | {"name": "Cap"}, cap)
    assert len(register) == cap
    response = await http.post("/api/auth/register", content=register, headers=headers)
    assert response.status_code == 201, response.text

    too_large = await http.post("/api/auth/login", content=padded(login, cap + 1), headers=headers)
    assert_error(too_large, 413)
    response = await http.post("/api/auth/login", content=padded(login, cap), headers=headers)
    assert response.status_code == 200, response.text


async def test_the_webhook_keeps_its_own_larger_cap(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    """A delivery over 64 KiB is read (and, unsigned for any project, refused 401, not 413)."""
    body = json.dumps({"zen": "z" * (2 * api.json_max_bytes)}).encode()
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + "0" * 64}

    response = await http.post("/api/webhook/github", content=body, headers=headers)

    assert_error(response, 401)


async def test_the_schema_documents_413_on_every_route_that_takes_a_body(
    http: httpx.AsyncClient,
) -> None:
    schema = (await http.get("/openapi.json")).json()
    with_body = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert with_body
    for path, method, operation in with_body:
        assert "413" in operation["responses"], (method, path)
