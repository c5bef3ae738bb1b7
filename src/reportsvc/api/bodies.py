"""Request bodies, read defensively: whatever bytes, encoding, nesting or size a client
sends, the answer is a 4xx JSON error, never a 500.

msgspec raises `UnicodeDecodeError` for invalid UTF-8 inside a JSON string (including
overlong forms and encoded surrogates) and `RecursionError` for nesting deeper than its
limit; neither is a `msgspec.DecodeError`, so Litestar's own JSON decoding lets them
through as server errors. `SafeRequest` turns them into 400s, and bodies are read with a
time limit, so a client that sends half a body cannot hold a connection forever.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
from litestar import Request

from reportsvc.api.errors import ApiError

# A body that takes longer than this to arrive is refused (408).
BODY_READ_SECONDS: Final = 30.0

NOT_UTF8: Final = "the request body must be JSON encoded as UTF-8 (RFC 8259)"
TOO_DEEP: Final = "the request body nests too deeply to be a report request"


def undecodable(exc: UnicodeError | RecursionError | msgspec.DecodeError) -> ApiError:
    """The 400 for a body that cannot be decoded as JSON at all."""
    if isinstance(exc, UnicodeError):
        return ApiError(400, "invalid_json", NOT_UTF8)
    if isinstance(exc, RecursionError):
        return ApiError(400, "invalid_json", TOO_DEEP)
    return ApiError(400, "invalid_json", f"the request body is not valid JSON ({exc})")


class SafeRequest(Request[Any, Any, Any]):
    async def body(self) -> bytes:
        try:
            async with asyncio.timeout(BODY_READ_SECONDS):
                return await super().body()
        except TimeoutError:
            raise ApiError(
                408, "request_timeout", "the request body did not arrive in time"
            ) from None

    async def json(self) -> Any:
        try:
            return await super().json()
        except (UnicodeError, RecursionError) as exc:
            raise undecodable(exc) from None
