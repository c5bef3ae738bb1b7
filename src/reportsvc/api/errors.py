"""Every error leaves as JSON `ErrorBody`: a status, a stable code, and words for people."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from reportsvc.api.schemas import ErrorBody
from reportsvc.db.errors import DATABASE_UNAVAILABLE

log = structlog.get_logger("reportsvc.api")

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
    """msgspec's words, with Litestar's internal names replaced by the client's."""
    extra: Any = exc.extra
    parts = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = item.get("key")
        message = str(item.get("message", "")).replace("`", "")
        if key == "data" and message in ("'data'", "data"):
            return 'the request body is empty; send JSON such as {"topic": "The Roman Empire"}'
        where = "request body" if key == "data" else key
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or str(exc.detail)


def handle_validation(
    _request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    return error_response(HTTP_400_BAD_REQUEST, "invalid_request", _validation_message(exc))


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, str(exc.detail), exc.headers)
    status = exc.status_code
    code = _CODES.get(status, "error")
    message = str(exc.detail)
    if isinstance(exc, NotFoundException):
        message = f"no such resource: {request.method} {request.url.path}"
    elif status == HTTP_405_METHOD_NOT_ALLOWED:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif status == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        message = "the request body is too large (MAX_BODY_BYTES)"
    elif message.startswith("JSON is malformed"):
        code = "invalid_json"
        message = f"the request body is not valid JSON ({message.split(': ', 1)[-1]})"
    return error_response(status, code, message, exc.headers)


def handle_database_down(_request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.warning("database unavailable", error=f"{type(exc).__name__}: {exc}")
    return error_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database is unreachable right now; try again in a few seconds",
        {"Retry-After": "2"},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return handle_database_down(request, exc)
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ValidationException: handle_validation,
    HTTPException: handle_http,
    HTTP_404_NOT_FOUND: handle_http,
    Exception: handle_unexpected,
}
