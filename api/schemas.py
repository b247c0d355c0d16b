"""Request bodies. Responses are built from `kiln.records`, the shapes the API page fixes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

DEFAULT_IMAGE = "node:20-alpine"
DEFAULT_BUILD_COMMAND = "npm ci && npm run build"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RegisterIn(Strict):
    email: EmailStr
    password: str = Field(min_length=8, max_length=200)
    name: str = Field(min_length=1, max_length=200)


class LoginIn(Strict):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class ProjectIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    repoUrl: str = Field(min_length=1, max_length=2000)  # noqa: N815 - the API's field name
    branch: str = Field(default="main", min_length=1, max_length=255)
    image: str = Field(default=DEFAULT_IMAGE, min_length=1, max_length=500)
    buildCommand: str = Field(default=DEFAULT_BUILD_COMMAND, min_length=1, max_length=10_000)  # noqa: N815

    @field_validator("branch")
    @classmethod
    def _plain_branch(cls, value: str) -> str:
        if (
            value.startswith("-")
            or ".." in value
            or any(c.isspace() or c in "~^:?*[\\" for c in value)
        ):
            raise ValueError("is not a valid branch name")
        return value

    @field_validator("image")
    @classmethod
    def _plain_image(cls, value: str) -> str:
        if value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError("is not a valid image reference")
        return value
