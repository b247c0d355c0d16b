"""`GET /api/project/projects` of a user with many projects, each with a long history (rows
written straight into the database: a long history, made fast)."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import insert, text

from benchmarks.deployment import Deployment
from benchmarks.table import Figure, ms, percentile
from kiln import models


def seed(deployment: Deployment, projects: int, builds: int) -> str:
    """A user owning `projects` projects of `builds` finished builds each: their token."""
    (user,) = deployment.users(1)
    now = models.utcnow()
    with deployment.sessions.begin() as session:
        rows = [
            models.Project(
                owner_id=user.id,
                name=f"history-{i}",
                repo_url="http://127.0.0.1:9/history.git",
                branch="main",
                image=deployment.image,
                build_command="true",
            )
            for i in range(projects)
        ]
        session.add_all(rows)
        session.flush()
        for project in rows:
            session.execute(
                insert(models.Build),
                [
                    {
                        "project_id": project.id,
                        "status": models.BuildStatus.PASSED,
                        "branch": "main",
                        "commit_hash": f"{n:040x}",
                        "commit": "bench",
                        "exit_code": 0,
                        "started_at": now - timedelta(minutes=n + 1),
                        "finished_at": now - timedelta(minutes=n),
                    }
                    for n in range(builds)
                ],
            )
    _analyzed(deployment)
    return user.token


def _analyzed(deployment: Deployment) -> None:
    """PostgreSQL's planner statistics, as a history grown build by build has them: autovacuum
    analyzes a table once a tenth of its rows changed, but not within the minute after a bulk
    insert. With statistics from before it, the planner sorts each project's whole history and
    scans the table: the builds' query took ≈40 ms instead of ≈7 ms (EXPLAIN ANALYZE, 50 ×
    1,000 builds, on a slow day). SQLite is left as it is: nothing analyzes it in a Kiln that
    has run for a while either."""
    with deployment.sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE builds"))


async def listing_figures(
    deployment: Deployment, projects: int, builds: int, requests: int
) -> list[Figure]:
    token = seed(deployment, projects, builds)
    headers = {"Authorization": f"Bearer {token}"}
    samples, size = [], 0
    for _ in range(requests):
        start = time.perf_counter()
        response = await deployment.http.get("/api/project/projects", headers=headers)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
        size = len(response.content)
    name = f"`GET /api/project/projects`, {projects} projects × {builds:,} builds: p99, size"
    return [Figure(name, f"{ms(percentile(samples, 0.99))}, {size / 1024:,.0f} KiB")]
