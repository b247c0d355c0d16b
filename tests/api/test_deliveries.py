"""`GET /api/project/projects/{projectId}/deliveries`: the project's newest 50 signature-verified
webhook deliveries, newest first, each `queued` (with its builds), `ignored` (and why) or
`duplicate`, for the owner who wonders why a push built nothing. Deliveries are logged on the
shared URL and on the project's own URL; unsigned ones are not."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from kiln.models import DeliveryLog
from tests.api.support import (
    DELIVERY_KEYS,
    PROJECTS,
    WEBHOOK,
    Api,
    FakeWorkflows,
    User,
    assert_error,
    deliver,
    deliveries,
    new_sha,
    push_payload,
    push_to,
)

SCHEMAS = "#/components/schemas/"


async def owned_project(api: Api) -> tuple[User, dict[str, Any]]:
    """A new user's project (on its own repository, building `main`)."""
    user = await api.register()
    created = await api.create_project(user, api.repo())
    api.workflows.reset()
    return user, created["project"]


# --- what is listed ---------------------------------------------------------------------------


async def test_a_push_that_queued_a_build_is_listed_queued_with_that_build(
    api: Api, workflows: FakeWorkflows
) -> None:
    user, project = await owned_project(api)

    response = await deliver(api, project, push_to(project), delivery="d-queued")

    assert response.status_code == 202, response.text
    [build] = response.json()["builds"]
    [entry] = await deliveries(api, user, project["id"])
    assert entry | {"receivedAt": None} == {
        "deliveryId": "d-queued",
        "event": "push",
        "receivedAt": None,
        "result": "queued",
        "reason": None,
        "builds": [build["id"]],
    }
    assert workflows.started == [build["id"]]


@pytest.mark.parametrize(
    ("case", "event", "words"),
    [
        ("other-branch", "push", ["'dev'", "'main'"]),
        ("tag", "push", ["tag", "'v1.0'"]),
        ("deletion", "push", ["'main'", "deleted"]),
        ("other-event", "issues", ["'issues'", "not a push"]),
        ("ping", "ping", ["ping"]),
    ],
)
async def test_a_delivery_that_built_nothing_is_listed_ignored_with_why(
    api: Api, workflows: FakeWorkflows, case: str, event: str, words: list[str]
) -> None:
    user, project = await owned_project(api)
    body = {
        "other-branch": push_to(project, "refs/heads/dev"),
        "tag": push_to(project, "refs/tags/v1.0"),
        "deletion": push_to(project, after="0" * 40, deleted=True),
        "other-event": push_to(project),
        "ping": push_to(project),
    }[case]

    response = await deliver(api, project, body, event=event, delivery=f"d-{case}")

    assert response.status_code in (200, 202), response.text
    [entry] = await deliveries(api, user, project["id"])
    assert (entry["deliveryId"], entry["event"]) == (f"d-{case}", event)
    assert (entry["result"], entry["builds"]) == ("ignored", []), entry
    assert all(word in entry["reason"] for word in words), entry
    assert workflows.started == []


async def test_a_redelivery_and_a_replayed_body_are_listed_as_duplicates(
    api: Api, workflows: FakeWorkflows
) -> None:
    user, project = await owned_project(api)
    body = push_to(project)

    first = await deliver(api, project, body, delivery="d-original")
    again = await deliver(api, project, body, delivery="d-original")
    replayed = await deliver(api, project, body, delivery="d-replayed")

    assert [r.status_code for r in (first, again, replayed)] == [202, 202, 202]
    [build] = first.json()["builds"]
    assert again.json()["builds"] == replayed.json()["builds"] == []
    listed = await deliveries(api, user, project["id"])
    assert [(e["deliveryId"], e["result"], e["builds"]) for e in listed] == [
        ("d-replayed", "duplicate", []),
        ("d-original", "duplicate", []),
        ("d-original", "queued", [build["id"]]),
    ]
    assert "redelivery" in listed[1]["reason"] and "'d-original'" in listed[1]["reason"]
    assert "same signed body" in listed[0]["reason"]
    assert workflows.started == [build["id"]]


async def test_deliveries_to_the_projects_own_url_are_listed_too(api: Api) -> None:
    user, project = await owned_project(api)
    stranger = push_payload(f"{api.git.base_url}/someone-else.git", ref="refs/heads/main",
                            after=new_sha())  # fmt: skip

    queued = await deliver(api, project, push_to(project), delivery="d-own", own_url=True)
    elsewhere = await deliver(api, project, stranger, delivery="d-stranger", own_url=True)

    assert (queued.status_code, elsewhere.status_code) == (202, 202)
    [build] = queued.json()["builds"]
    listed = await deliveries(api, user, project["id"])
    assert [(e["deliveryId"], e["result"], e["builds"]) for e in listed] == [
        ("d-stranger", "ignored", []),
        ("d-own", "queued", [build["id"]]),
    ]
    assert "another repository" in listed[0]["reason"]


async def test_deliveries_without_a_valid_signature_are_not_listed(api: Api) -> None:
    user, project = await owned_project(api)
    body = push_to(project)

    wrong = await deliver(api, project, body, secret="not-the-secret")
    wrong_own = await deliver(api, project, body, secret="not-the-secret", own_url=True)
    unsigned = await api.http.post(WEBHOOK, content=body, headers={"X-GitHub-Event": "push"})

    assert [r.status_code for r in (wrong, wrong_own, unsigned)] == [401, 401, 401]
    assert await deliveries(api, user, project["id"]) == []


async def test_the_list_is_newest_first_and_only_the_newest_50_are_kept(api: Api) -> None:
    user, project = await owned_project(api)

    for number in range(55):
        response = await deliver(
            api, project, push_to(project), event="ping", delivery=f"d-{number}"
        )
        assert response.status_code == 200, response.text

    listed = await deliveries(api, user, project["id"])
    assert [e["deliveryId"] for e in listed] == [f"d-{n}" for n in range(54, 4, -1)]
    with api.sessions() as session:  # the older ones are gone from the table, not just hidden
        query = select(func.count()).where(DeliveryLog.project_id == project["id"])
        assert session.scalar(query.select_from(DeliveryLog)) == 50


async def test_a_push_whose_builds_could_not_start_is_listed_with_them_and_so_is_its_redelivery(
    api: Api, workflows: FakeWorkflows
) -> None:
    user, project = await owned_project(api)
    body = push_to(project)
    workflows.start_fails = True

    refused = await deliver(api, project, body, delivery="d-away")
    workflows.start_fails = False
    retried = await deliver(api, project, body, delivery="d-away")

    assert refused.status_code == 503, refused.text
    assert retried.status_code == 202, retried.text
    [build] = retried.json()["builds"]
    listed = await deliveries(api, user, project["id"])
    assert [(e["result"], len(e["builds"])) for e in listed] == [("queued", 1), ("queued", 1)]
    assert listed[0]["builds"] == [build["id"]]
    failed = await api.build(user, listed[1]["builds"][0])
    assert failed["status"] == "failed"  # what the operator then sees: it could not start


# --- who may read them -----------------------------------------------------------------------


async def test_only_the_owner_reads_a_projects_deliveries(api: Api) -> None:
    user, project = await owned_project(api)
    await deliver(api, project, push_to(project), event="ping")
    stranger = await api.register()
    url = f"{PROJECTS}/{project['id']}/deliveries"

    assert_error(await api.http.get(url), 401)
    assert_error(await api.http.get(url, headers=stranger.headers), 403)
    assert_error(await api.http.get(f"{PROJECTS}/999999/deliveries", headers=user.headers), 404)
    for bad in ("abc", "0", "-1", "1.5"):
        response = await api.http.get(f"{PROJECTS}/{bad}/deliveries", headers=user.headers)
        assert_error(response, 400)
    assert len(await deliveries(api, user, project["id"])) == 1


async def test_a_deleted_projects_deliveries_go_with_it(api: Api) -> None:
    user, project = await owned_project(api)
    await deliver(api, project, push_to(project), event="ping")

    response = await api.http.delete(f"{PROJECTS}/{project['id']}", headers=user.headers)

    assert response.status_code == 200, response.text
    with api.sessions() as session:
        query = select(func.count()).where(DeliveryLog.project_id == project["id"])
        assert session.scalar(query.select_from(DeliveryLog)) == 0


# --- the contract ----------------------------------------------------------------------------


async def test_openapi_documents_the_deliveries_route_and_its_record(api: Api) -> None:
    document = (await api.http.get("/openapi.json")).json()
    operation = document["paths"]["/api/project/projects/{projectId}/deliveries"]["get"]

    assert set(operation["responses"]) == {"200", "400", "401", "403", "404"}
    answer_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    answer = document["components"]["schemas"][answer_ref.removeprefix(SCHEMAS)]
    assert set(answer["required"]) == {"message", "deliveries"}
    record_ref = answer["properties"]["deliveries"]["items"]["$ref"]
    record = document["components"]["schemas"][record_ref.removeprefix(SCHEMAS)]
    assert set(record["properties"]) == set(record["required"]) == DELIVERY_KEYS
    result_ref = record["properties"]["result"]["$ref"]
    result = document["components"]["schemas"][result_ref.removeprefix(SCHEMAS)]
    assert result["enum"] == ["queued", "ignored", "duplicate"]
