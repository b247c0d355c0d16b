"""Every error answers `{"message": "..."}`; invalid input is a 400, never a 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


def message(status: int, text: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"message": text})


def _describe(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "Request body is not valid JSON"
    where = [str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query")]
    text = str(error.get("msg", "invalid value"))
    return f"{'.'.join(where)}: {text}" if where else text


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"message": str(exc.detail)}, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return message(400, _describe(errors[0]) if errors else "Invalid request")
