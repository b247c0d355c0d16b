"""The fields of the API's records, as every tier checks them (docs/api.md)."""

from __future__ import annotations

import re

__all__ = ["BUILD_KEYS", "PROJECT_KEYS", "TIMESTAMP"]

# The build record: the published page's fields, and Kiln's additions `queuePosition` (null
# unless the build waits) and `workflowId` (its workflow in Temporal).
BUILD_KEYS = {
    "id",
    "status",
    "commit",
    "branch",
    "commitAuthor",
    "commitHash",
    "exitCode",
    "projectId",
    "startedAt",
    "finishedAt",
    "queuePosition",
    "workflowId",
}
PROJECT_KEYS = {
    "id",
    "name",
    "repoUrl",
    "branch",
    "image",
    "buildCommand",
    "timeoutSeconds",
    "maxConcurrentBuilds",
    "webhookSecret",
    "env",
    "hasCredentials",
    "hasGithubToken",
    "createdAt",
}
# ISO 8601 in UTC with milliseconds and a Z, as every timestamp the API sends.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
