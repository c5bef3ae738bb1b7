"""What a model call needs from the shared quota, and what a provider says about its own.

Every call asks a `RateGate` for its share before it is sent: a start time within a short
horizon (the call waits for it), or `QuotaExhausted` (the step goes back to the queue, not
holding a lease meanwhile). After the call, the gate is told what the call used and what
the provider's `x-ratelimit-*` headers said; on a 429, for how long the provider wants the
model left alone. `reportsvc.queue.quotas` keeps this state in PostgreSQL, shared by every
worker; `Unlimited` is the gate of a process that has no database (a test, a script).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, Protocol

import msgspec


class RateLimits(msgspec.Struct, frozen=True):
    """What the provider's headers say about a model's limits (any of it may be absent)."""

    requests_limit: int | None = None  # per minute
    requests_remaining: int | None = None
    requests_reset: float | None = None  # seconds until the requests bucket is full
    tokens_limit: int | None = None  # per minute
    tokens_remaining: int | None = None
    tokens_reset: float | None = None

    @property
    def empty(self) -> bool:
        return self == _SAYS_NOTHING

    @property
    def spent_until(self) -> float | None:
        """Seconds until a bucket the headers say is empty is full again (the later of
        the two when both are); None when neither is said to be empty."""
        resets = [
            reset
            for remaining, reset in (
                (self.requests_remaining, self.requests_reset),
                (self.tokens_remaining, self.tokens_reset),
            )
            if remaining == 0 and reset is not None
        ]
        return max(resets, default=None)


_SAYS_NOTHING: Final = RateLimits()


class Grant(msgspec.Struct, frozen=True):
    """A share of the quota: the call may start after `wait` seconds; `tokens` were
    booked for it; `learns`: it is the call finding out a new model's limits (its answer
    is awaited by every other call of the model)."""

    wait: float = 0.0
    tokens: int = 0
    learns: bool = False


class RateGate(Protocol):
    async def acquire(self, model: str, tokens: int) -> Grant:
        """The share for one call of `model` booking `tokens`; `QuotaExhausted` when it
        cannot be had within the gate's horizon."""
        ...

    async def settle(self, model: str, grant: Grant, used_tokens: int, limits: RateLimits) -> None:
        """After an answer: the tokens the provider counted, and what its headers said."""
        ...

    async def rate_limited(self, model: str, retry_in: float, limits: RateLimits) -> float:
        """After a 429: pause `model` for every worker; returns the seconds to wait."""
        ...

    async def close(self) -> None:
        """Record what is still to be recorded; the process is stopping."""
        ...


class Unlimited:
    """No shared quota: every call goes at once. (The arguments are the protocol's.)"""

    async def acquire(self, model: str, tokens: int) -> Grant:  # noqa: ARG002
        return Grant(tokens=tokens)

    async def settle(
        self,
        model: str,  # noqa: ARG002
        grant: Grant,  # noqa: ARG002
        used_tokens: int,  # noqa: ARG002
        limits: RateLimits,  # noqa: ARG002
    ) -> None:
        return None

    async def rate_limited(self, model: str, retry_in: float, limits: RateLimits) -> float:  # noqa: ARG002
        return retry_in

    async def close(self) -> None:
        return None


# "1s", "6m0s", "20ms", "1h2m3.5s", or a plain number of seconds.
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds in a `x-ratelimit-reset-*` value."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(float(value))
    except ValueError:
        return None
    return number if number >= 0 else None


def rate_limits(headers: Mapping[str, str]) -> RateLimits:
    """The `x-ratelimit-*` headers of an answer (OpenAI's names; Azure and most gateways
    use the same)."""
    get = {k.lower(): v for k, v in headers.items()}.get
    return RateLimits(
        requests_limit=_int(get("x-ratelimit-limit-requests")),
        requests_remaining=_int(get("x-ratelimit-remaining-requests")),
        requests_reset=parse_reset(get("x-ratelimit-reset-requests")),
        tokens_limit=_int(get("x-ratelimit-limit-tokens")),
        tokens_remaining=_int(get("x-ratelimit-remaining-tokens")),
        tokens_reset=parse_reset(get("x-ratelimit-reset-tokens")),
    )


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds a 429 asks to wait: `retry-after-ms`, else `Retry-After` (seconds or an HTTP
    date)."""
    get = {k.lower(): v for k, v in headers.items()}.get
    if (ms := get("retry-after-ms")) is not None:
        try:
            seconds = float(ms) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if now is None:
            now = datetime.now(when.tzinfo)
        seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def estimate_prompt_tokens(texts: list[str]) -> int:
    """A prompt's tokens, estimated before the call from its characters (about four per
    token in English; the provider's own count settles it afterwards)."""
    return sum(len(text) for text in texts) // 4 + 4 * len(texts) + 1
