"""Every error leaves as JSON `ErrorBody`: a status, a stable code, and words for people."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from reportsvc.api.schemas import ErrorBody
from reportsvc.errors import DatabaseUnavailableError

log = structlog.get_logger("reportsvc.api")

# Errors that mean the database cannot be reached right now (restart, failover, network).
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An error with a chosen code and message, raised by handlers."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(status=status, code=code, error=message), status_code=status, headers=headers
    )


def _validation_message(exc: ValidationException) -> str:
    extra: Any = exc.extra
    detail = str(exc.detail)
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                key = item.get("key")
                message = str(item.get("message", "")).replace("`", "")
                parts.append(f"{key}: {message}" if key else message)
        if parts:
            return "; ".join(parts)
    if "malformed" in detail.lower() or "json" in detail.lower():
        return "the request body is not valid JSON"
    return detail


def handle_validation(
    _request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    return error_response(HTTP_400_BAD_REQUEST, "invalid_request", _validation_message(exc))


def handle_http(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    code = exc.code if isinstance(exc, ApiError) else _CODES.get(exc.status_code, "error")
    message = str(exc.detail)
    if isinstance(exc, NotFoundException) and not isinstance(exc, ApiError):
        message = "no such resource"
    return error_response(exc.status_code, code, message, exc.headers)


def handle_database_down(_request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.warning("database unavailable", error=f"{type(exc).__name__}: {exc}")
    return error_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database is unreachable right now; try again in a few seconds",
        {"Retry-After": "2"},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, DATABASE_DOWN):
        return handle_database_down(request, exc)
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ValidationException: handle_validation,
    HTTPException: handle_http,
    HTTP_404_NOT_FOUND: handle_http,
    Exception: handle_unexpected,
}
