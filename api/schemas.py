"""Request bodies. Responses are built from `kiln.records`, the shapes the API page fixes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from kiln.models import DEFAULT_TIMEOUT_SECONDS

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
