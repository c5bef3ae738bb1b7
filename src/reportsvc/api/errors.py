"""Every error leaves as JSON `ErrorBody`: a status, a stable code, and words for people."""

from __future__ import annotations

import time
import traceback
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
        # Parameters named after a Python keyword carry a trailing underscore in the
        # handler (format_); the client knows them by their own name.
        where = "request body" if key == "data" else str(key or "").removesuffix("_")
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


class ErrorLog:
    """Unexpected errors, logged once each, compactly and at a bounded rate: the error, the
    request's method and path, and where it was raised (file, line, function of the
    innermost frames). Never the request's headers, body or any frame's locals: a log
    line must not be a way to collect callers' tokens, or to flood the disk."""

    def __init__(self, per_minute: int = 10, frames: int = 6) -> None:
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._refill = per_minute / 60.0
        self._frames = frames
        self._last = time.monotonic()
        self.suppressed = 0

    def error(self, request: Request[Any, Any, Any], exc: BaseException) -> None:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._refill)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        suppressed, self.suppressed = self.suppressed, 0
        frames = traceback.extract_tb(exc.__traceback__)[-self._frames :]
        log.error(
            "unexpected error",
            method=request.method,
            path=request.url.path,
            error=f"{type(exc).__name__}: {_one_line(str(exc))}",
            frames=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in frames],
            **({"not_logged_before": suppressed} if suppressed else {}),
        )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


UNEXPECTED = ErrorLog()


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return handle_database_down(request, exc)
    UNEXPECTED.error(request, exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ValidationException: handle_validation,
    HTTPException: handle_http,
    HTTP_404_NOT_FOUND: handle_http,
    Exception: handle_unexpected,
}
