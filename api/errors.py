"""Typed API errors and their JSON shape (``{"error": {"code", "message", "field"}}``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from oddsflow.api.models import BetOut, ErrorBody, ErrorCode, ErrorOut


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    field: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    bet: BetOut | None = None

    @classmethod
    def of(cls, status: int, code: ErrorCode, message: str, **kw: object) -> ApiError:
        return cls(status, code.value, message, **kw)  # type: ignore[arg-type]


def error_response(exc: ApiError) -> JSONResponse:
    body = ErrorOut(
        error=ErrorBody(code=exc.code, message=exc.message, field=exc.field), bet=exc.bet
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=exc.status, headers=exc.headers
    )


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body")]
    name = ".".join(loc) or None
    return error_response(
        ApiError(
            422,
            ErrorCode.VALIDATION.value,
            f"{name}: {first['msg']}" if name else str(first["msg"]),
            name,
        )
    )
