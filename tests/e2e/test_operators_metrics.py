"""`GET /metrics` on the API, scraped and parsed as Prometheus does, moving with real builds on
a running stack: build counts from the database, HTTP requests by route template (never a raw
path with an id), sockets, and the time from a change's commit to its Socket.io event."""

from __future__ import annotations

import re
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from testbed.stack import Stack, User, eventually
from tests.support.helpers import connected, new_repo, rebuild

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient, url: str = "/metrics") -> Samples:
    """Every sample of a scrape, by name and labels (no authentication sent)."""
    response = await http.get(url, headers={"Authorization": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def cancel(stack: Stack, user: User, build_id: int) -> None:
    response = await stack.http.post(f"/api/build/{build_id}/cancel", headers=user.headers)
    assert response.status_code == 202, response.text


async def test_build_counts_and_gauges_come_from_the_database_and_move_with_builds(
    stack: Stack,
) -> None:
    user = await stack.register()
    before = await scrape(stack.http)
    for status in ("passed", "failed", "canceled"):
        assert ("kiln_builds_total", frozenset({("status", status)})) in before
    assert value(before, "kiln_database_up") == 1

    passing = await stack.create_project(user, new_repo(stack.git, "metrics").url, "true")
    failing = await stack.create_project(user, new_repo(stack.git, "metrics").url, "exit 3")
    assert (await stack.wait_final(user, passing["build"]["id"]))["status"] == "passed"
    assert (await stack.wait_final(user, failing["build"]["id"]))["status"] == "failed"
    after = await scrape(stack.http)
    for status, moved in (("passed", 1), ("failed", 1), ("canceled", 0)):
        assert value(after, "kiln_builds_total", status=status) == (
            value(before, "kiln_builds_total", status=status) + moved
        ), status

    # One build running, one waiting behind it (one slot): the gauges say so, then go back.
    # Stops at once on the cancel's SIGTERM (a bare `sleep` as PID 1 would wait for SIGKILL).
    command = "trap 'exit 143' TERM; sleep 60 & wait"
    slow = await stack.create_project(user, new_repo(stack.git, "metrics").url, command)
    running_id = slow["build"]["id"]

    await eventually(lambda: _status_is(stack, user, running_id, "running"), timeout=60)
    waiting = (await rebuild(stack, user, running_id)).json()["build"]
    during = await scrape(stack.http)
    assert value(during, "kiln_builds_running") == value(after, "kiln_builds_running") + 1
    assert value(during, "kiln_builds_queued") == value(after, "kiln_builds_queued") + 1
    await cancel(stack, user, waiting["id"])
    await cancel(stack, user, running_id)
    await eventually(lambda: _status_is(stack, user, waiting["id"], "canceled"), timeout=60)
    await eventually(lambda: _status_is(stack, user, running_id, "canceled"), timeout=60)
    end = await scrape(stack.http)
    assert value(end, "kiln_builds_running") == value(after, "kiln_builds_running")
    assert value(end, "kiln_builds_queued") == value(after, "kiln_builds_queued")
    assert value(end, "kiln_builds_total", status="canceled") == (
        value(after, "kiln_builds_total", status="canceled") + 2
    )


async def _status_is(stack: Stack, user: User, build_id: int, status: str) -> bool | None:
    return True if (await stack.build(user, build_id))["status"] == status else None


async def test_http_requests_are_counted_by_route_template_never_by_raw_path(stack: Stack) -> None:
    user = await stack.register()
    created = await stack.create_project(user, new_repo(stack.git, "metrics").url, "true")
    build_id = created["build"]["id"]
    before = await scrape(stack.http)
    route = "/api/build/{buildId}"

    for _ in range(3):
        assert (await stack.http.get(f"/api/build/{build_id}", headers=user.headers)).is_success
    assert (await stack.http.get("/api/build/987654", headers=user.headers)).status_code == 404
    assert (await stack.http.get("/api/build/abc", headers=user.headers)).status_code == 400
    assert (await stack.http.get("/no/such/path/12345")).status_code == 404
    assert (await stack.http.delete(f"/api/build/{build_id}/logs")).status_code == 405

    after = await scrape(stack.http)

    def moved(**labels: str) -> float:
        name = "kiln_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(method="GET", route=route, status="200") == 3
    assert moved(method="GET", route=route, status="404") == 1
    assert moved(method="GET", route=route, status="400") == 1
    assert moved(method="GET", route="unmatched", status="404") == 1
    assert moved(method="DELETE", route="/api/build/{buildId}/logs", status="405") == 1
    duration = "kiln_http_request_duration_seconds_count"
    assert value(after, duration, route=route) - value(before, duration, route=route) >= 5
    # No label anywhere holds a path with an id (or anything but a template).
    routes = {dict(labels).get("route") for _name, labels in after} - {None}
    assert routes and all("987654" not in r and "12345" not in r for r in routes if r)
    assert all(not re.search(r"/\d+(/|$)", r) for r in routes if r), routes


async def test_metrics_hold_nothing_per_user(stack: Stack) -> None:
    user = await stack.register()
    name = f"secret-project-{uuid.uuid4().hex[:8]}"
    repo = new_repo(stack.git, "metrics")
    created = await stack.create_project(user, repo.url, "true", name=name)
    await stack.wait_final(user, created["build"]["id"])
    response = await stack.http.get("/metrics")
    assert response.status_code == 200
    for private in (name, user.email, user.token, repo.name, created["project"]["webhookSecret"]):
        assert private not in response.text


async def test_socket_connections_and_event_delivery_are_measured(stack: Stack) -> None:
    user = await stack.register()
    before = await scrape(stack.http)
    async with connected(stack, user) as first, connected(stack, user) as recorder:
        during = await scrape(stack.http)
        assert value(during, "kiln_socket_connections") == (
            value(before, "kiln_socket_connections") + 2
        )
        created = await stack.create_project(user, new_repo(stack.git, "metrics").url, "true")
        build_id = created["build"]["id"]
        assert await recorder.wait_statuses(build_id, 3) == ["queued", "running", "passed"]
        await first.wait_statuses(build_id, 3)
        delivered = await scrape(stack.http)
    # At least the three status events went out, each measured from its commit.
    name = "kiln_event_delivery_seconds"
    count = value(delivered, f"{name}_count") - value(before, f"{name}_count")
    assert count >= 3
    total = value(delivered, f"{name}_sum") - value(before, f"{name}_sum")
    assert 0 <= total / count < 5
    assert value(delivered, f"{name}_bucket", le="+Inf") == value(delivered, f"{name}_count")

    await eventually(
        lambda: _sockets_back_to(stack, value(before, "kiln_socket_connections")), timeout=10
    )


async def _sockets_back_to(stack: Stack, count: float) -> bool | None:
    now = await scrape(stack.http)
    return True if value(now, "kiln_socket_connections") == count else None


async def test_every_answer_carries_a_request_id_a_sane_incoming_one_is_kept(stack: Stack) -> None:
    kept = await stack.http.get("/healthz", headers={"X-Request-ID": "lb-7f3a-0001"})
    assert kept.headers["x-request-id"] == "lb-7f3a-0001"
    fresh = await stack.http.get("/api/project/projects")
    assert fresh.status_code == 401
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    for insane in ("a" * 300, "bad id with spaces", "<script>", "x\tx"):
        replaced = await stack.http.get("/healthz", headers={"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"]), insane
