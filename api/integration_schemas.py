"""Request and answer models of the integration routes: a project's GitHub token (write-only)
and its notification hooks (the signing secret shown once, at creation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import WHITE_SPACE
from kiln.github_status import MAX_TOKEN
from kiln.hooks import HOOK_EVENTS, MAX_URL

# What the checks in kiln.github_status and kiln.hooks take, stated in the schema (the checks
# give the 400's words): a token of printable characters, no space; an http(s) URL without
# white space or control characters; events known, without repeats.
TOKEN_PATTERN = r"^[^\x00-\x20\x7f]+$"
URL_PATTERN = rf"^[hH][tT][tT][pP][sS]?://[^{WHITE_SPACE}\x00-\x1f\x7f]*$"


class _Exact(BaseModel):
    """Values taken exactly as sent, and nothing else."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class GithubTokenIn(_Exact):
    token: str = Field(
        min_length=1,
        max_length=MAX_TOKEN,
        description="A token that may write commit statuses (never shown again)",
        json_schema_extra={"pattern": TOKEN_PATTERN},
    )


class GithubTokenAnswer(BaseModel):
    message: str
    projectId: int  # noqa: N815
    hasGithubToken: bool  # noqa: N815


class HookIn(_Exact):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="An http(s) URL",
        json_schema_extra={"pattern": URL_PATTERN},
    )
    events: list[str] = Field(
        min_length=1,
        max_length=len(HOOK_EVENTS),
        description=f"Some of {', '.join(HOOK_EVENTS)}",
        json_schema_extra={
            "items": {"type": "string", "enum": list(HOOK_EVENTS)},
            "uniqueItems": True,
        },
    )


class HookRecord(BaseModel):
    id: int
    url: str
    events: list[str]
    createdAt: str  # noqa: N815


class HookCreated(BaseModel):
    message: str
    hook: HookRecord
    secret: str = Field(
        description="Signs every notice (X-Kiln-Signature-256); shown this once only"
    )


class HooksFetched(BaseModel):
    message: str
    hooks: list[HookRecord]


class HookDeleted(BaseModel):
    message: str
    hookId: int  # noqa: N815
