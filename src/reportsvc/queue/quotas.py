"""The model quota shared by every worker, in PostgreSQL: the `RateGate` of a worker.

Each call asks for its share: a start time on the model's request and token buckets,
granted when it falls within a short horizon (the call waits for it), or refused
(`QuotaExhausted`: the step goes back to the queue until then, its attempt not counted,
holding no lease meanwhile). After the answer the booking is settled with the tokens the
provider counted, and the provider's `x-ratelimit-*` headers teach the limits of a model
that has none configured. A 429 pauses the model for the whole cluster.

One statement (`take_quota`) does both, for every call of this worker that asks while the
previous statement is under way (a group commit): a worker under load pays one round trip
per batch of calls, not two per call, and the model's row is locked once per batch. The
settlements ride along with the next asking; with none coming, they are sent after
`SETTLE_SECONDS`, or at once when they matter now (the answer that teaches a new model's
limits, headers saying nothing is left).

A model with no limit known, configured or learned, costs one round trip a second per
worker, not one per call: it is remembered as unlimited for that long. A model whose limit
is far above the rate its calls reach costs about one round trip per `PREFETCH` calls: when
a statement finds no backlog, it also books that many more calls (spaced over at most
`PREFETCH_SECONDS` of the limit, as any grants are), and the worker hands these out to its
next calls without asking. They are booked like any grant, so the cluster's accounting
stays exact; a call never starts before its booked time, nor more than `CREDIT_SECONDS`
after it; what a worker going idle leaves unused is a few milliseconds of the limit, not
spent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import asyncpg

from reportsvc.errors import QuotaExhausted
from reportsvc.queue.sql import load_queries
from reportsvc.quota import Grant, RateLimits

Q: Final = load_queries("quotas.sql")

# The share of a limit actually used: the provider measures with its own clock, and the
# calls of one instant reach it a little spread out.
HEADROOM: Final = 0.97
# How long a call finding out a new model's limits may take before another one tries (one
# that times out or is cancelled never reports back).
LEARNING_SECONDS: Final = 5.0
# While a model's limits are being learned, refused calls come back this soon.
LEARNING_RETRY_SECONDS: Final = 1.0
# How long a model found unlimited is believed so, per process.
UNLIMITED_SECONDS: Final = 1.0
# How long answers wait to be settled when no call asks meanwhile.
SETTLE_SECONDS: Final = 0.2
# Calls booked ahead by one statement, at most, when the model's buckets have no backlog,
# and the share of the limit they may span (so at most 25 ms of it is handed out locally).
PREFETCH: Final = 512
PREFETCH_SECONDS: Final = 0.025
# How late a call booked ahead may still start. Starting late never adds calls to the
# cluster's count, and a burst of late ones is at most the `PREFETCH_SECONDS` of the limit
# booked at once; this bounds how long a worker may use them after another worker's 429
# paused the model. (Dropped after 25 ms, half of each 512 booked at 10,000 calls a second
# were dropped, and a tenth of the calls waited for a statement.)
CREDIT_SECONDS: Final = 0.1
# A start less than this far off is now: no timer waits less (the event loop's resolution
# is a millisecond), and a call's sleep would cost it a turn of the loop for nothing.
SOON: Final = 0.001


def _header_args(limits: RateLimits) -> tuple[object, ...]:
    return (
        limits.requests_limit,
        limits.requests_remaining,
        limits.requests_reset,
        limits.tokens_limit,
        limits.tokens_remaining,
        limits.tokens_reset,
    )


@dataclass
class _Model:
    """One model's traffic in this process: the calls asking for their share, and the
    answers not yet settled."""

    asking: list[tuple[int, asyncio.Future[asyncpg.Record | None]]] = field(default_factory=list)
    answers: int = 0
    token_delta: int = 0  # tokens counted minus tokens booked, over those answers
    headers: RateLimits = field(default_factory=RateLimits)  # the latest that said anything
    settle_now: bool = False
    sending: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    # Calls booked ahead (start, tokens booked), oldest first, for this worker's next calls;
    # and how many to book with the next statement (0: the buckets are too busy for it).
    credits: deque[tuple[float, int]] = field(default_factory=deque)
    prefetch: int = 0
    refill: bool = False  # book ahead with the next statement even if no call asks
    call_tokens: int = 0  # what a call ahead books: the most a call asked for lately

    def booking(self, asking: list[int]) -> int:
        """How many calls the next statement books ahead, after the calls asking (for calls
        that ask, or to refill what is running out; a statement that only settles books
        none). Each books `call_tokens`."""
        extra = self.prefetch if asking or self.refill else 0
        self.refill = False
        if asking:
            self.call_tokens = max(asking)
        return extra

    def take_credit(self, now: float) -> tuple[float, int] | None:
        """A call booked ahead that can still start (not later than `CREDIT_SECONDS`
        after its booked start)."""
        while self.credits:
            start, tokens = self.credits.popleft()
            if start + CREDIT_SECONDS >= now:
                return start, tokens
        return None


class QuotaStore:
    def __init__(self, pool: asyncpg.Pool, *, horizon: float = 5.0) -> None:
        self.pool = pool
        self.horizon = horizon
        self._unlimited_until: dict[str, float] = {}
        # Each model's traffic in this process, made on first use.
        self._models: defaultdict[str, _Model] = defaultdict(_Model)

    async def configure(self, limits: Mapping[str, tuple[float | None, float | None]]) -> None:
        """MODEL_RATE_LIMITS, written once at start-up (every worker should have the same)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for model, (rpm, tpm) in limits.items():
                await conn.execute(Q["configure_quota"], model, rpm, tpm)
            await conn.execute(Q["unconfigure_quotas"], list(limits))

    async def acquire(self, model: str, tokens: int) -> Grant:
        # The first lines are every call's path under a roomy limit: kept short.
        now = time.monotonic()
        if self._unlimited_until.get(model, 0.0) > now:
            return Grant(tokens=tokens)
        state = self._models[model]
        if (credit := state.take_credit(now)) is not None:
            start, booked = credit
            if len(state.credits) < state.prefetch // 2 and not state.refill:
                # Half used: book the next ones now, so that no call waits for them.
                state.refill = True
                self._send_soon(model, state)
            # The tokens booked for it stand for this call's: settling corrects the difference.
            return Grant(wait=_wait(start - now), tokens=booked)
        row = await self._ask(model, tokens)
        if row is None:
            await self.pool.execute(Q["add_model"], model)
            row = await self._ask(model, tokens)
            assert row is not None
        if row["unlimited"]:
            self._unlimited_until[model] = time.monotonic() + UNLIMITED_SECONDS
            return Grant(tokens=tokens)
        self._unlimited_until.pop(model, None)
        if row["granted"]:
            return Grant(wait=_wait(row["wait"]), tokens=tokens, learns=row["learns"])
        if row["learning"] or row["learns"]:
            raise QuotaExhausted(model, LEARNING_RETRY_SECONDS * random.uniform(1.0, 1.5))  # noqa: S311
        # Come back when the start would be inside the horizon, spread a little so that the
        # steps refused together do not all return at the same instant.
        retry_in = max(0.1, row["wait"] - self.horizon / 2) * random.uniform(1.0, 1.2)  # noqa: S311
        raise QuotaExhausted(model, retry_in)

    async def settle(self, model: str, grant: Grant, used_tokens: int, limits: RateLimits) -> None:
        says_nothing = limits.empty
        if model in self._unlimited_until:
            if says_nothing and self._unlimited_until[model] > time.monotonic():
                return  # nothing to settle for a model without limits, and nothing learned
            del self._unlimited_until[model]
        state = self._models[model]
        state.answers += 1
        state.token_delta += used_tokens - grant.tokens
        if not says_nothing:
            state.headers = limits
        if grant.learns or limits.requests_remaining == 0 or limits.tokens_remaining == 0:
            state.settle_now = True
            self._send_soon(model, state)
        elif state.sending is None and state.timer is None:
            state.timer = asyncio.get_running_loop().call_later(
                SETTLE_SECONDS, self._settle_due, model
            )

    async def close(self) -> None:
        """Send what is left to settle (before the pool closes)."""
        for model, state in self._models.items():
            if state.answers:
                state.settle_now = True
                self._send_soon(model, state)
        for state in list(self._models.values()):
            if state.timer is not None:
                state.timer.cancel()
                state.timer = None
            if state.sending is not None:
                await asyncio.shield(state.sending)

    # --- the statement each batch shares -----------------------------------------------

    async def _ask(self, model: str, tokens: int) -> asyncpg.Record | None:
        state = self._models[model]
        answer: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        state.asking.append((tokens, answer))
        self._send_soon(model, state)
        return await answer

    def _settle_due(self, model: str) -> None:
        state = self._models[model]
        state.timer = None
        if state.answers:
            state.settle_now = True
            self._send_soon(model, state)

    def _send_soon(self, model: str, state: _Model) -> None:
        if state.sending is None:
            state.sending = asyncio.create_task(self._send(model, state))

    async def _send(self, model: str, state: _Model) -> None:
        try:
            while state.asking or state.refill or (state.settle_now and state.answers):
                await self._take(model, state)
        finally:
            state.sending = None
            if state.answers and state.timer is None:
                state.timer = asyncio.get_running_loop().call_later(
                    SETTLE_SECONDS, self._settle_due, model
                )

    async def _take(self, model: str, state: _Model) -> None:
        """One statement: the calls asking now, and the answers to settle."""
        asking, state.asking = state.asking, []
        tokens = [booked for booked, _ in asking]
        extra = state.booking(tokens)
        answers, delta, headers = state.answers, state.token_delta, state.headers
        state.answers, state.token_delta, state.headers = 0, 0, RateLimits()
        state.settle_now = False
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        try:
            rows = await self.pool.fetch(
                Q["take_quota"],
                model,
                tokens,
                self.horizon,
                HEADROOM,
                LEARNING_SECONDS,
                answers,
                delta,
                *_header_args(headers),
                extra,
                state.call_tokens,
            )
        except BaseException as error:
            # The settlement goes with the next statement; the calls asking fail.
            state.answers += answers
            state.token_delta += delta
            state.headers = headers if state.headers.empty else state.headers
            for _, answer in asking:
                if answer.done():
                    continue
                if isinstance(error, Exception):
                    answer.set_exception(error)
                else:
                    answer.cancel()
            if not isinstance(error, Exception):
                raise
            return
        self._deliver(state, asking, tokens, extra, rows)

    def _deliver(
        self,
        state: _Model,
        asking: list[tuple[int, asyncio.Future[asyncpg.Record | None]]],
        tokens: list[int],
        extra: int,
        rows: list[asyncpg.Record],
    ) -> None:
        """Answer the calls asking, keep the calls booked ahead, and judge the next booking."""
        # The row numbered 0, first, is the calls booked ahead (when any were asked for).
        ahead = rows[0] if rows and rows[0]["i"] == 0 else None
        calls = rows[1:] if ahead is not None else rows
        # No row: the model is new (the caller adds it and asks again).
        found: list[asyncpg.Record | None] = list(calls) if rows else [None] * len(asking)
        for (_, answer), row in zip(asking, found, strict=False):
            if not answer.done():
                answer.set_result(row)
        if ahead is None:
            if calls:
                last = calls[-1]
                state.prefetch = _prefetch(
                    last, granted=last["granted"], wait=last["wait"], tokens=state.call_tokens
                )
            return
        last_wait = self._book_ahead(state, ahead, len(tokens), sum(tokens), extra)
        state.prefetch = _prefetch(
            ahead, granted=ahead["ahead"] == extra, wait=last_wait, tokens=state.call_tokens
        )

    @staticmethod
    def _book_ahead(
        state: _Model, ahead: asyncpg.Record, asked: int, tokens: int, extra: int
    ) -> float:
        """Keep the calls booked ahead that were granted: the first `ahead` of them, spaced
        as the statement spaced them. Returns the wait of the last one booked (granted or
        not), for judging the next booking."""
        now = time.monotonic()
        per_request: float = ahead["per_request"]
        per_token: float = ahead["per_token"]
        first: float = ahead["wait"]
        each = state.call_tokens

        def offset(j: int) -> float:  # the j-th call ahead, from 1
            return max((asked + j - 1) * per_request, (tokens + (j - 1) * each) * per_token)

        state.credits.extend(
            (now + max(0.0, first + offset(j)), each) for j in range(1, ahead["ahead"] + 1)
        )
        return first + offset(extra)

    async def rate_limited(self, model: str, retry_in: float, limits: RateLimits) -> float:
        self._unlimited_until.pop(model, None)
        state = self._models[model]
        state.credits.clear()  # booked before the provider said no: not to be trusted
        state.prefetch = 0
        await self.pool.execute(Q["add_model"], model)
        pause: float | None = await self.pool.fetchval(
            Q["rate_limited"], model, retry_in, *_header_args(limits)
        )
        return retry_in if pause is None else max(retry_in, pause)


def _prefetch(last: asyncpg.Record, *, granted: bool, wait: float, tokens: int) -> int:
    """How many calls the next statement books ahead, judged by the last call this one
    booked (`granted`, starting in `wait` s): none while the model is learning or
    unlimited, or when that call was refused or starts later than `PREFETCH_SECONDS` from
    now (a backlog); else as many as fit in `PREFETCH_SECONDS` of the limit, up to
    `PREFETCH`."""
    if last["learning"] or last["learns"] or last["unlimited"] or not granted:
        return 0
    if wait > PREFETCH_SECONDS:
        return 0
    per_call = max(last["per_request"], tokens * last["per_token"])
    if per_call <= 0:
        return 0
    return min(PREFETCH, int(PREFETCH_SECONDS / per_call))


def _wait(seconds: float) -> float:
    return seconds if seconds >= SOON else 0.0
