"""What the dashboard needs to know about this Kiln (signed-in users only: it describes the
infrastructure, though it holds no secret)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentUser, SettingsDep
from api.schemas import errors

router = APIRouter(prefix="/api", tags=["config"])


class ConfigAnswer(BaseModel):
    message: str
    temporalUiUrl: str | None = Field(description="KILN_TEMPORAL_UI_URL, when set")  # noqa: N815
    temporalNamespace: str  # noqa: N815


@router.get("/config", response_model=ConfigAnswer, responses=errors(401))
def config(_user: CurrentUser, settings: SettingsDep) -> dict[str, Any]:
    return {
        "message": "Config fetched",
        "temporalUiUrl": settings.temporal_ui_url.rstrip("/") or None,
        "temporalNamespace": settings.temporal_namespace,
    }
