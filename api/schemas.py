"""Request bodies and response models. Answers are built by `kiln.records` (the shapes the API
page fixes); the response models declare them, so /openapi.json documents every route."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from kiln.models import DEFAULT_TIMEOUT_SECONDS, BuildStatus

DEFAULT_IMAGE = "node:20-alpine"
DEFAULT_BUILD_COMMAND = "npm ci && npm run build"
MAX_TIMEOUT_SECONDS = 24 * 3600
BRANCH_FORBIDDEN = set("~^:?*[\\")

Name = Annotated[str, Field(min_length=1, max_length=200)]
Image = Annotated[str, Field(min_length=1, max_length=500)]
Command = Annotated[str, Field(min_length=1, max_length=10_000)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]
Concurrency = Annotated[int, Field(ge=1, le=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# Passwords are taken as typed: spaces at either end are part of them.
NewPassword = Annotated[
    str, StringConstraints(strip_whitespace=False, min_length=8, max_length=200)
]
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=200)]


class RegisterIn(Strict):
    email: EmailStr
    password: NewPassword
    name: Name


class LoginIn(Strict):
    email: str = Field(min_length=1, max_length=320)
    password: Password


def _plain_image(value: str | None) -> str | None:
    if value is not None and (value.startswith("-") or any(c.isspace() for c in value)):
        raise ValueError("is not a valid image reference")
    return value


class ProjectIn(Strict):
    # camelCase: these are the API's field names.
    name: Name
    repoUrl: str = Field(min_length=1, max_length=2000)  # noqa: N815
    branch: str = Field(default="main", min_length=1, max_length=255)
    image: Image = DEFAULT_IMAGE
    buildCommand: Command = DEFAULT_BUILD_COMMAND  # noqa: N815
    timeoutSeconds: TimeoutSeconds = DEFAULT_TIMEOUT_SECONDS  # noqa: N815
    maxConcurrentBuilds: Concurrency = 1  # noqa: N815

    @field_validator("branch")
    @classmethod
    def _plain_branch(cls, value: str) -> str:
        odd = value.startswith("-") or ".." in value or value.endswith((".", "/", ".lock"))
        if odd or any(c.isspace() or c in BRANCH_FORBIDDEN for c in value):
            raise ValueError("is not a valid branch name")
        return value

    _image = field_validator("image")(_plain_image)


class ProjectPatch(Strict):
    """The settings a project's owner may change after creation."""

    name: Name | None = None
    image: Image | None = None
    buildCommand: Command | None = None  # noqa: N815
    timeoutSeconds: TimeoutSeconds | None = None  # noqa: N815
    maxConcurrentBuilds: Concurrency | None = None  # noqa: N815

    _image = field_validator("image")(_plain_image)


# --- Responses: the shapes `kiln.records` builds, declared so /openapi.json documents them. ---


class Message(BaseModel):
    message: str


class ErrorBody(Message):
    """Every error answer."""


ERROR_TEXT = {
    400: "Invalid input (a bad id, field or body)",
    401: "No valid token",
    403: "Not yours",
    404: "No such thing",
    409: "Not in a state that allows it",
    413: "Body too large",
    500: "The build could not be written",
    503: "The workflow service is unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each error code it may answer, with the error body."""
    return {code: {"model": ErrorBody, "description": ERROR_TEXT[code]} for code in codes}


class UserRecord(BaseModel):
    id: int
    email: str
    name: str


class AuthAnswer(BaseModel):
    message: str
    user: UserRecord
    token: str


class BuildRecord(BaseModel):
    """The API page's build record, plus `queuePosition` (Kiln's addition)."""

    id: int
    status: BuildStatus
    commit: str = Field(description="The commit message")
    branch: str
    commitAuthor: str  # noqa: N815
    commitHash: str = Field(description="The full commit hash the build is pinned to")  # noqa: N815
    exitCode: int | None = Field(description="Set once the build command exited")  # noqa: N815
    projectId: int  # noqa: N815
    startedAt: str = Field(description="ISO 8601 UTC with milliseconds")  # noqa: N815
    finishedAt: str | None  # noqa: N815
    queuePosition: int | None = Field(  # noqa: N815
        description="Place among the project's waiting builds (1 starts next); null unless queued"
    )


class ProjectSummary(BaseModel):
    """The project as nested in a build."""

    id: int
    name: str
    repoUrl: str  # noqa: N815
    branch: str


class BuildWithProject(BuildRecord):
    project: ProjectSummary


class ProjectRecord(ProjectSummary):
    """The project as its owner sees it."""

    image: str
    buildCommand: str  # noqa: N815
    timeoutSeconds: int  # noqa: N815
    maxConcurrentBuilds: int  # noqa: N815
    webhookSecret: str = Field(description="Signs GitHub push deliveries")  # noqa: N815
    createdAt: str  # noqa: N815


class ProjectWithBuilds(ProjectRecord):
    builds: list[BuildRecord] = Field(description="Newest first")


class ProjectCreated(BaseModel):
    message: str
    project: ProjectRecord
    build: BuildRecord


class ProjectsFetched(BaseModel):
    message: str
    projects: list[ProjectWithBuilds]


class ProjectAnswer(BaseModel):
    message: str
    project: ProjectWithBuilds


class ProjectDeleted(BaseModel):
    message: str
    projectId: int  # noqa: N815


class BuildAnswer(BaseModel):
    message: str
    build: BuildRecord


class BuildFetched(BaseModel):
    message: str
    build: BuildWithProject


class BuildLogs(BaseModel):
    message: str
    buildId: int  # noqa: N815
    logs: str
    offset: int
    nextOffset: int = Field(description="Ask from here next time")  # noqa: N815


class BuildsQueued(BaseModel):
    message: str
    builds: list[BuildRecord]
