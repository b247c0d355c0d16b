"""A project's GitHub token for commit statuses: set (write-only) and remove. The owner's
only; sealed under KILN_SECRETS_KEY like the project's secrets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from api.deps import CurrentUser, ProjectId, SettingsDep, get_sessions
from api.integration_schemas import GithubTokenAnswer, GithubTokenIn
from api.routes.secrets import NO_KEY, OWNED
from api.schemas import errors
from kiln.crypto import SecretBox, SecretsUnavailable
from kiln.db import SessionFactory
from kiln.github_status import GithubTokens

router = APIRouter(prefix="/api/project", tags=["integrations"])


def get_github_tokens(
    sessions: Annotated[SessionFactory, Depends(get_sessions)], settings: SettingsDep
) -> GithubTokens:
    return GithubTokens(sessions, SecretBox(settings.secrets_key))


TokensDep = Annotated[GithubTokens, Depends(get_github_tokens)]


def _answer(message: str, project_id: int, present: bool) -> dict[str, Any]:
    return {"message": message, "projectId": project_id, "hasGithubToken": present}


@router.put(
    "/projects/{projectId}/github-token",
    response_model=GithubTokenAnswer,
    responses=errors(*OWNED) | NO_KEY,
)
def put_github_token(
    project_id: ProjectId, body: GithubTokenIn, user: CurrentUser, tokens: TokensDep
) -> dict[str, Any]:
    """Builds queued from now on post commit statuses with it (when the repository is on
    GitHub, or on KILN_GITHUB_API_URL's host)."""
    try:
        tokens.set(user.id, project_id, body.token)
    except SecretsUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    return _answer("GitHub token saved", project_id, True)


@router.delete(
    "/projects/{projectId}/github-token",
    response_model=GithubTokenAnswer,
    responses=errors(*OWNED),
)
def delete_github_token(
    project_id: ProjectId, user: CurrentUser, tokens: TokensDep
) -> dict[str, Any]:
    """Stop posting commit statuses (404 when the project has no token)."""
    tokens.clear(user.id, project_id)
    return _answer("GitHub token removed", project_id, False)
