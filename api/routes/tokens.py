"""API tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, get_sessions
from api.schemas import WHITE_SPACE, errors
from kiln.db import SessionFactory
from kiln.tokens import TokenService

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


def get_tokens(sessions: Annotated[SessionFactory, Depends(get_sessions)]) -> TokenService:
    return TokenService(sessions)


TokensDep = Annotated[TokenService, Depends(get_tokens)]
TokenId = Annotated[int, Path(alias="tokenId", ge=1, le=10**30 - 1)]
# What `TokenIn` takes, as a pattern: white space around (stripped), then no control character.
_CONTROL = r"\x00-\x1f\x7f"
TOKEN_NAME_PATTERN = (
    rf"^[{WHITE_SPACE}]*[^{WHITE_SPACE}{_CONTROL}](?:[^{_CONTROL}]*[^{WHITE_SPACE}{_CONTROL}])?"
    rf"[{WHITE_SPACE}]*$"
)


_AROUND = re.compile(rf"^[{WHITE_SPACE}]+|[{WHITE_SPACE}]+$")


class TokenIn(BaseModel):
    # The length is the name's as sent (as the schema counts it); white space around it is
    # stripped after, by the schema's own definition of white space.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    name: str = Field(
        min_length=1,
        max_length=100,
        description="What the token is for",
        json_schema_extra={"pattern": TOKEN_NAME_PATTERN},
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        value = _AROUND.sub("", value)
        if not value:
            raise ValueError("must not be blank")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("must not contain control characters")
        return value


class TokenRecord(BaseModel):
    id: int
    name: str
    createdAt: str  # noqa: N815
    lastUsedAt: str | None  # noqa: N815


class TokenCreated(BaseModel):
    message: str
    token: TokenRecord
    secret: str = Field(description="Shown this once; Kiln keeps only its hash")


class TokensFetched(BaseModel):
    message: str
    tokens: list[TokenRecord]


class TokenDeleted(BaseModel):
    message: str
    tokenId: int  # noqa: N815


@router.post("", status_code=201, response_model=TokenCreated, responses=errors(400, 401))
async def create_token(body: TokenIn, user: CurrentUser, tokens: TokensDep) -> dict[str, Any]:
    record, secret = await run_in_threadpool(tokens.create, user.id, body.name)
    return {"message": "Token created", "token": record, "secret": secret}


@router.get("", response_model=TokensFetched, responses=errors(401))
async def list_tokens(user: CurrentUser, tokens: TokensDep) -> dict[str, Any]:
    return {
        "message": "Tokens fetched",
        "tokens": await run_in_threadpool(tokens.list_owned, user.id),
    }


@router.delete("/{tokenId}", response_model=TokenDeleted, responses=errors(400, 401, 404))
async def delete_token(
    token_id: TokenId, user: CurrentUser, tokens: TokensDep, request: Request
) -> dict[str, Any]:
    """Revoke: the secret is refused from now on, and sockets that used it are dropped."""
    await run_in_threadpool(tokens.delete, user.id, token_id)
    await request.app.state.sio.disconnect_token(token_id)
    return {"message": "Token deleted", "tokenId": token_id}
