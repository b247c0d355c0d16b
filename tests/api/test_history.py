"""A project's build history, paged, and the newest builds on each project record."""

from __future__ import annotations

from typing import Any

from kiln.models import Build, BuildStatus, utcnow
from tests.api.support import Api, User, assert_error


async def project_with_history(api: Api, user: User, count: int) -> int:
    """A project with `count` finished builds after its first one (every third failed, on
    branch `dev`)."""
    created = await api.create_project(user)
    project_id: int = created["project"]["id"]
    with api.sessions.begin() as session:
        for number in range(count):
            failed = number % 3 == 0
            session.add(
                Build(
                    project_id=project_id,
                    branch="dev" if failed else "main",
                    commit_hash="a" * 40,
                    commit=f"change {number}",
                    status=BuildStatus.FAILED if failed else BuildStatus.PASSED,
                    finished_at=utcnow(),
                )
            )
    return project_id


def ids(page: dict[str, Any]) -> list[int]:
    return [build["id"] for build in page["builds"]]


async def test_the_project_list_carries_each_projects_newest_twenty_builds(api: Api) -> None:
    user = await api.register()
    project_id = await project_with_history(api, user, 30)
    answer = (await api.http.get("/api/project/projects", headers=user.headers)).json()
    (project,) = [p for p in answer["projects"] if p["id"] == project_id]
    builds = [build["id"] for build in project["builds"]]
    assert len(builds) == 20 and builds == sorted(builds, reverse=True)
    assert builds[0] == max(api.build_ids(project_id))


async def test_history_pages_newest_first_until_next_before_is_null(api: Api) -> None:
    user = await api.register()
    project_id = await project_with_history(api, user, 24)  # 25 builds with the first
    url = f"/api/project/projects/{project_id}/builds"
    seen: list[int] = []
    before = None
    while True:
        query = {"limit": 10} | ({"before": before} if before else {})
        response = await api.http.get(url, params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["message"] == "Builds fetched"
        seen += ids(page)
        before = page["nextBefore"]
        if before is None:
            break
        assert before == ids(page)[-1]
    assert seen == sorted(api.build_ids(project_id), reverse=True)


async def test_history_filters_by_status_and_branch(api: Api) -> None:
    user = await api.register()
    project_id = await project_with_history(api, user, 12)
    url = f"/api/project/projects/{project_id}/builds"
    failed = (await api.http.get(url, params={"status": "failed"}, headers=user.headers)).json()
    assert len(failed["builds"]) == 4 and {b["status"] for b in failed["builds"]} == {"failed"}
    dev = (await api.http.get(url, params={"branch": "dev"}, headers=user.headers)).json()
    assert ids(dev) == ids(failed)


async def test_history_refuses_bad_queries_and_other_users(api: Api) -> None:
    owner = await api.register()
    project_id = await project_with_history(api, owner, 1)
    url = f"/api/project/projects/{project_id}/builds"
    for query in ({"limit": 0}, {"limit": 101}, {"status": "done"}, {"before": "x"}):
        response = await api.http.get(url, params=query, headers=owner.headers)
        assert_error(response, 400)
    stranger = await api.register()
    forbidden = await api.http.get(url, headers=stranger.headers)
    assert assert_error(forbidden, 403) == "You do not have access to this project"
    missing = await api.http.get("/api/project/projects/2147483000/builds", headers=owner.headers)
    assert assert_error(missing, 404) == "Project not found"
    assert_error(await api.http.get(url), 401)
