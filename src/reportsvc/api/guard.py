"""The locked door: API tokens and a rate limit on POST.

Tokens: those in API_TOKENS, and those created with `reportsvc token add` (stored as
sha256 hashes in `api_tokens`). When there is at least one, every /reports endpoint needs
`Authorization: Bearer <token>`, and a job belongs to the token that created it: other
tokens get 404 for it, as if it did not exist. With no token anywhere, the API is open.

Authentication happens in one place: `require_token`, a guard on the whole /reports
router. Litestar runs guards before it reads or decodes the body, so an unauthenticated
caller learns nothing about the schema and cannot make the server parse large bodies.
Handlers read the caller from `caller(request)`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from reportsvc.api.errors import ApiError
from reportsvc.queue.tokens import TokenStore, token_hash
from reportsvc.settings import Settings

# How long the API trusts its copy of the token table. A revoked token stops working after
# at most this long, and event streams check their caller every STREAM_AUTH_SECONDS, so an
# open stream of a revoked token ends within 5 s.
TOKEN_REFRESH_SECONDS: Final = 4.0
_MAX_BUCKETS: Final = 10_000


_CALLER: Final = "reportsvc_caller"


async def require_token(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """The guard of every /reports endpoint: a 401 for a missing or unknown token; the
    caller's identity, for the handler, in the connection's state."""
    services = connection.app.state.services
    connection.state[_CALLER] = await services.auth.owner(connection)


def caller(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """Who is calling (the hash of their token; None when the API has no tokens). Only
    handlers behind `require_token` may ask: anywhere else this raises."""
    owner: str | None = connection.state[_CALLER]
    return owner


class Authenticator:
    """Who may call. Locked when a token is configured (API_TOKENS), when AUTH_REQUIRED is
    set, or once any token was ever stored: revoking the last stored token leaves the API
    locked (every call refused) rather than opening every owned job to anyone."""

    def __init__(self, settings: Settings, store: TokenStore) -> None:
        self._configured = frozenset(token_hash(t.get_secret_value()) for t in settings.api_tokens)
        self._required = settings.auth_required or bool(self._configured)
        self._store = store
        self._stored: frozenset[str] = frozenset()
        self._ever_stored = False
        self._loaded_at = float("-inf")
        self._loading: asyncio.Lock = asyncio.Lock()

    async def owner(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
        """Who is calling: the hash of their token, or None when the API is open.
        A 401 for a missing or unknown token."""
        accepted, locked = await self._state()
        if not locked:
            return None
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("this API needs an API token: Authorization: Bearer <token>")
        caller = token_hash(token.strip())
        if caller not in accepted:
            raise _unauthorized("the API token is not valid (unknown or revoked)")
        return caller

    async def still_valid(self, owner: str | None) -> bool:
        """Whether a caller let in earlier would still be let in (long-lived streams ask)."""
        accepted, locked = await self._state()
        return not locked if owner is None else owner in accepted

    async def _state(self) -> tuple[frozenset[str], bool]:
        if time.monotonic() - self._loaded_at > TOKEN_REFRESH_SECONDS:
            async with self._loading:
                if time.monotonic() - self._loaded_at > TOKEN_REFRESH_SECONDS:
                    self._stored, self._ever_stored = await self._store.token_state()
                    self._loaded_at = time.monotonic()
        return self._configured | self._stored, self._required or self._ever_stored


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="reportsvc"'})


class RateLimiter:
    """A token bucket per caller (API token, or client address when the API is open):
    `per_minute` POSTs a minute, in bursts of up to as many. Per API process."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._refill = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, caller: str) -> None:
        if self._capacity <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.pop(caller, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._refill)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            wait = max(1, round((1 - tokens) / self._refill + 0.5))
            raise ApiError(
                429,
                "rate_limited",
                f"too many reports requested; the limit is {self._capacity:g} a minute "
                "(RATE_LIMIT_PER_MINUTE)",
                {"Retry-After": str(wait)},
            )
        self._buckets[caller] = (tokens - 1, now)
        while len(self._buckets) > _MAX_BUCKETS:
            self._buckets.popitem(last=False)
