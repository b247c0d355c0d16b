"""Request bodies and response models. Answers are built by `kiln.records` (the shapes the API
page fixes); the response models declare them, so /openapi.json documents every route."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from kiln import images
from kiln.models import DEFAULT_TIMEOUT_SECONDS, BuildStatus
from kiln.secrets import MAX_VALUE_BYTES, MAX_VARIABLES, NAME_PATTERN, check_env

DEFAULT_IMAGE = "node:20-alpine"
DEFAULT_BUILD_COMMAND = "npm ci && npm run build"
MAX_TIMEOUT_SECONDS = 24 * 3600
BRANCH_FORBIDDEN = set("~^:?*[\\")

# What the schema says of text, as JSON Schema patterns, so that a client (or a fuzzer) knows
# what is accepted. The models below validate it their own way, and agree: text is stripped of
# white space (Unicode's White_Space, spelled out: regex engines disagree on `\s`) before it is
# checked, so "not blank" is "holds something else"; no text may hold a NUL.
WHITE_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = rf"^[^\x00]*[^{WHITE_SPACE}\x00][^\x00]*$"

# An image reference by Docker's grammar (kiln.images'), whole and in ASCII (as JSON Schema
# reads `\w`, and as Docker does).
IMAGE_PATTERN = "^(?:" + re.sub(r"\(\?P<\w+>", "(?:", images._REFERENCE.pattern) + ")$"
IMAGE_REFERENCE = re.compile(IMAGE_PATTERN, re.ASCII)
MAX_IMAGE = 255


def text(min_length: int, max_length: int, pattern: str = NOT_BLANK) -> Any:
    return Field(
        min_length=min_length, max_length=max_length, json_schema_extra={"pattern": pattern}
    )


Name = Annotated[str, text(1, 200)]
# Taken as typed (a space is no part of any reference); checked by `_reference`.
Image = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=1, max_length=MAX_IMAGE),
    Field(json_schema_extra={"pattern": IMAGE_PATTERN}),
]
Command = Annotated[str, text(1, 10_000)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]
Concurrency = Annotated[int, Field(ge=1, le=100)]
# Build variables (kiln.secrets rules: names, values, how many), values taken as sent; the
# rules are checked by `check_env` (its messages) and stated in the schema.
Env = Annotated[
    dict[
        str,
        Annotated[
            str,
            StringConstraints(strip_whitespace=False),
            Field(json_schema_extra={"pattern": NO_NUL, "maxLength": MAX_VALUE_BYTES}),
        ],
    ],
    Field(
        json_schema_extra={
            "propertyNames": {"pattern": NAME_PATTERN},
            "maxProperties": MAX_VARIABLES,
        }
    ),
]


class Strict(BaseModel):
    """A request body: unknown fields refused, text stripped, and no NUL in any text (no
    database stores it: PostgreSQL refuses it outright, and git or Docker would cut the value
    short)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


# Passwords are taken as typed: spaces at either end are part of them.
NewPassword = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=8, max_length=200),
    Field(json_schema_extra={"pattern": NO_NUL}),
]
Password = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=1, max_length=200),
    Field(json_schema_extra={"pattern": NO_NUL}),
]


class RegisterIn(Strict):
    email: EmailStr
    password: NewPassword
    name: Name


class LoginIn(Strict):
    email: Annotated[str, text(1, 320)]
    password: Password


def _reference(value: str | None) -> str | None:
    """An image reference: what IMAGE_PATTERN says."""
    if value is not None and not IMAGE_REFERENCE.fullmatch(value):
        raise ValueError("is not a valid image reference")
    return value


def _optional_env(value: dict[str, str] | None) -> dict[str, str] | None:
    return None if value is None else check_env(value)


class ProjectIn(Strict):
    # camelCase: these are the API's field names.
    name: Name
    repoUrl: Annotated[str, text(1, 2000)]  # noqa: N815
    branch: Annotated[str, text(1, 255)] = "main"
    image: Image = DEFAULT_IMAGE
    buildCommand: Command = DEFAULT_BUILD_COMMAND  # noqa: N815
    timeoutSeconds: TimeoutSeconds = DEFAULT_TIMEOUT_SECONDS  # noqa: N815
    maxConcurrentBuilds: Concurrency = 1  # noqa: N815
    env: Env = Field(default_factory=dict)

    @field_validator("branch")
    @classmethod
    def _plain_branch(cls, value: str) -> str:
        odd = value.startswith("-") or ".." in value or value.endswith((".", "/", ".lock"))
        if odd or any(c.isspace() or not c.isprintable() or c in BRANCH_FORBIDDEN for c in value):
            raise ValueError("is not a valid branch name")
        return value

    _image = field_validator("image")(_reference)
    _env = field_validator("env")(_optional_env)


def _not_nullable(schema: dict[str, Any]) -> None:
    """Each property optional but not nullable: drop the `null` (and the null default) that
    `X | None = None` puts in the schema."""
    for prop in schema.get("properties", {}).values():
        options = [option for option in prop.pop("anyOf", []) if option != {"type": "null"}]
        if len(options) == 1:
            prop.update(options[0])
        elif options:
            prop["anyOf"] = options
        if prop.get("default", ...) is None:
            del prop["default"]


class ProjectPatch(Strict):
    """The settings a project's owner may change after creation: each one optional, none
    nullable (the schema says so; a null is a 400 naming the field)."""

    model_config = ConfigDict(json_schema_extra=_not_nullable)

    name: Name | None = None
    image: Image | None = None
    buildCommand: Command | None = None  # noqa: N815
    timeoutSeconds: TimeoutSeconds | None = None  # noqa: N815
    maxConcurrentBuilds: Concurrency | None = None  # noqa: N815
    env: Env | None = None

    _image = field_validator("image")(_reference)
    _env = field_validator("env")(_optional_env)


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
    429: "Over a per-user limit, or too many attempts: see the message (and Retry-After)",
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
    workflowId: str = Field(description="The id of the build's workflow in Temporal")  # noqa: N815


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
    env: dict[str, str] = Field(description="Build variables (not secret)")
    hasCredentials: bool = Field(description="Whether git credentials are set")  # noqa: N815
    hasGithubToken: bool = Field(  # noqa: N815
        description="Whether a GitHub token for commit statuses is set (it is never shown)"
    )
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
