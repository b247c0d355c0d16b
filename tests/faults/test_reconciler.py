"""Builds whose workflow cannot speak for them are settled, and their leftovers swept: the
reconciler fails a build whose workflow was terminated or never started, and a returning worker
removes the containers and workspaces of builds that finished while it was away.

These run on PostgreSQL, the database of a multi-process deployment."""

from __future__ import annotations

from datetime import timedelta

from kiln.builds import BuildService
from kiln.models import Build, BuildStatus
from tests.support.cluster import Cluster
from tests.support.helpers import last_line
from workflows.client import TemporalWorkflows
from workflows.ids import workflow_id
from workflows.reconcile import reconcile_once


async def test_reconciler_settles_builds_whose_workflow_ended_without_a_word(
    cluster: Cluster,
) -> None:
    cluster.worker("host-1")
    user = await cluster.stack.register()
    build_id = await cluster.running_build(user, "sleep 60")

    # An operator terminates the workflow in the Temporal UI: no activity records anything.
    handle = cluster.temporal.get_workflow_handle(workflow_id(build_id, cluster.prefix))
    await handle.terminate("operator")

    build = await cluster.wait_final(user, build_id)
    assert build["status"] == "failed"
    assert "terminated" in last_line(await cluster.stack.logs(user, build_id))
    # Its container and workspace are swept once the build is final.
    await cluster.wait_left_nothing(build_id, ["host-1"])


async def test_reconciler_fails_a_build_whose_workflow_never_started(cluster: Cluster) -> None:
    user = await cluster.stack.register()
    created = await cluster.project(user, "true")
    project_id = created["project"]["id"]
    with cluster.stack.sessions.begin() as session:
        orphan = Build(project_id=project_id, branch="main", commit_hash="a" * 40)
        session.add(orphan)
    workflows = TemporalWorkflows(cluster.temporal, cluster.settings)
    settled = await reconcile_once(BuildService(cluster.stack.sessions), workflows, timedelta(0))
    assert orphan.id in settled
    build = await cluster.stack.build(user, orphan.id)
    assert build["status"] == "failed" and build["finishedAt"] is not None


async def test_a_returning_worker_sweeps_leftovers_of_finished_builds(cluster: Cluster) -> None:
    user = await cluster.stack.register()
    created = await cluster.project(user, "true")
    build_id = created["build"]["id"]
    with cluster.stack.sessions.begin() as session:
        session.get_one(Build, build_id).status = BuildStatus.FAILED  # finished long ago
    cluster.workspace("host-s", build_id).mkdir(parents=True)
    cluster.docker.containers.create(
        cluster.stack.image,
        ["true"],
        labels={
            "kiln.managed": "true",
            "kiln.worker": "host-s",
            "kiln.build": str(build_id),
            "kiln.deployment": cluster.settings.task_queue,
        },
    )

    cluster.worker("host-s")

    await cluster.wait_left_nothing(build_id, ["host-s"])
