"""The worker: wait for work -> claim -> run -> record, with leases that outlive nothing.

One process runs up to `concurrency` steps at once on one event loop. Five loops share it:

- claim: takes up to `claim_batch_size` steps per round trip whenever there is room and a
  reason to think work is waiting (a NOTIFY, a full previous batch, or the poll interval);
- flush: writes finished steps in batches (one round trip per batch of sections), so
  completions never wait behind one another one by one;
- heartbeat: renews the leases of everything this process holds, and abandons any step
  whose lease was taken over or whose job was cancelled or failed meanwhile;
- maintenance: requeues steps whose worker vanished (expired leases) and fails jobs past
  their deadline; every worker runs it, SKIP LOCKED keeps them out of each other's way;
- listen: a dedicated connection LISTENing for new work (optional; polling is the fallback).

Every write is fenced on (lease owner, attempt), so a write from a worker that lost its
lease changes nothing, and repeating a write after a lost connection is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

import msgspec
import structlog

from reportsvc.backoff import Backoff, retry_delay
from reportsvc.db.errors import DATABASE_UNAVAILABLE, RETRYABLE_CONFLICTS
from reportsvc.domain import OutlineTask, SectionResult, SectionTask, StepRunner, Task
from reportsvc.errors import StepError
from reportsvc.metrics import STEPS_FINISHED, STEPS_IN_FLIGHT
from reportsvc.queue.notifications import WORK_CHANNEL, Listener
from reportsvc.queue.store import (
    Claim,
    FinishedOutline,
    FinishedSection,
    HeldOutline,
    HeldSection,
    SectionFailure,
    SectionRetry,
    Store,
    TokenUse,
)

log = structlog.get_logger("reportsvc.worker")

# Claims in flight at once while the queue is busy (see _claim_loop).
CLAIM_LANES = 2
# After the shutdown grace period, how long the worker keeps trying to write its last
# results and releases before it exits anyway (their leases then expire instead).
RESULT_WRITE_SECONDS = 5.0

# Errors after which the same write or claim is simply tried again later.
DATABASE_ERRORS = DATABASE_UNAVAILABLE + RETRYABLE_CONFLICTS


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    concurrency: int = 64
    claim_batch_size: int = 32
    lease_seconds: float = 15.0
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 120.0
    step_timeout_seconds: float = 240.0
    job_timeout_seconds: float = 3600.0
    poll_interval_seconds: float = 1.0
    rescue_interval_seconds: float = 2.0
    shutdown_grace_seconds: float = 10.0
    listen_notify: bool = True
    prune_after_seconds: float | None = None
    prune_every_seconds: float = 600.0

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_seconds / 3


# --- what a finished step leaves behind, until the flusher writes it ------------------


class SectionDone(msgspec.Struct, frozen=True):
    task: SectionTask
    result: SectionResult


class OutlineDone(msgspec.Struct, frozen=True):
    task: OutlineTask
    titles: list[str]
    tokens: TokenUse = TokenUse()


class StepFailed(msgspec.Struct, frozen=True):
    task: Task
    error: str
    retryable: bool
    # What a call that answered with something unusable consumed.
    tokens: TokenUse = TokenUse()


class Released(msgspec.Struct, frozen=True):
    """Given back without a result: 'queued' on shutdown, 'cancelled' when abandoned."""

    task: Task
    status: Literal["queued", "cancelled"]


Outcome = SectionDone | OutlineDone | StepFailed | Released
_OUTCOME_NAMES: dict[type, str] = {
    SectionDone: "done",
    OutlineDone: "done",
    StepFailed: "error",
    Released: "released",
}
StepKey = tuple[str, object]
# Labelled children resolved once, and counted once per written batch (`_count_finished`):
# `labels().inc()` on every step cost more than the rest of a no-op step's bookkeeping.
_STEPS_FINISHED = {
    (step, outcome): STEPS_FINISHED.labels(step, outcome)
    for step in ("section", "outline")
    for outcome in set(_OUTCOME_NAMES.values())
}
# The in-flight gauge is read when scraped, not counted up and down on every step.
_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()
STEPS_IN_FLIGHT.set_function(lambda: sum(w.in_flight for w in _WORKERS))


def step_key(task: Task) -> StepKey:
    if isinstance(task, SectionTask):
        return ("section", task.section_id)
    return ("outline", task.job_id)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class _InFlight:
    __slots__ = ("abandoned", "asyncio_task", "task")

    def __init__(self, task: Task, asyncio_task: asyncio.Task[None]) -> None:
        self.task = task
        self.asyncio_task = asyncio_task
        self.abandoned = False


class Worker:
    def __init__(
        self,
        store: Store,
        runner: StepRunner,
        config: WorkerConfig,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.config = config
        self.worker_id = worker_id or new_worker_id()
        self._log = log.bind(worker_id=self.worker_id)
        self._inflight: dict[StepKey, _InFlight] = {}
        self._pending: list[Outcome] = []
        self._tally: dict[tuple[str, str], int] = {}  # finished steps not yet in the metrics
        self._flushing: list[Outcome] = []
        self._stopping = asyncio.Event()
        self._closing = False
        self._work_hint = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._flush_wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._hurry = asyncio.Event()
        self._busy = asyncio.Event()
        self._reserved = 0  # slots promised to claims in flight
        # Heartbeat and flush both write this worker's running rows; one at a time keeps
        # them from locking the same rows in different orders.
        self._write_lock = asyncio.Lock()
        self._listener = Listener(
            config.database_url,
            {WORK_CHANNEL: self._notified},
            application_name="reportsvc-listen",
            on_connect=self._work_hint.set,
        )
        self.steps_started = 0
        _WORKERS.add(self)

    # --- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; in-flight steps get `shutdown_grace_seconds` to finish."""
        self._stopping.set()
        self._work_hint.set()
        self._slot_freed.set()
        self._busy.set()

    def hurry(self) -> None:
        """Skip what is left of the grace period: release in-flight steps now."""
        self.stop()
        self._hurry.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        self._log.info(
            "worker started",
            concurrency=self.config.concurrency,
            batch=self.config.claim_batch_size,
            lease_seconds=self.config.lease_seconds,
            listen=self.config.listen_notify,
        )
        background = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._maintenance_loop(), name="maintenance"),
        ]
        if self.config.listen_notify:
            background.append(asyncio.create_task(self._listen_loop(), name="listen"))
        try:
            await asyncio.gather(*(self._claim_loop(lane) for lane in range(CLAIM_LANES)))
            await self._drain()
        finally:
            self._closing = True
            self._flush_wake.set()
            with contextlib.suppress(TimeoutError):
                # Releases and last results: a few seconds on top of the grace period.
                await asyncio.wait_for(asyncio.shield(background[0]), timeout=RESULT_WRITE_SECONDS)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.store.publisher.close()
            for flight in list(self._inflight.values()):
                flight.asyncio_task.cancel()
            self._log.info("worker stopped", unflushed=len(self._pending))

    # --- claiming ---------------------------------------------------------------------

    async def _claim_loop(self, lane: int) -> None:
        """Claim work while there is room. Lane 0 always runs; further lanes join only
        while claims keep coming back full, so a busy queue has more than one claim in
        flight (hiding the round trip) and an idle one costs a single poller."""
        backoff = Backoff()
        while not self._stopping.is_set():
            if lane > 0 and not self._busy.is_set():
                await self._busy.wait()
                continue
            free = self.config.concurrency - len(self._inflight) - self._reserved
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if lane == 0:
                self._work_hint.clear()
            claim = await self._claim(min(free, self.config.claim_batch_size), backoff)
            if claim is None or claim.exhausted:
                self._busy.clear()
                if lane == 0 and claim is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._work_hint.wait(), self.config.poll_interval_seconds
                        )
            else:
                self._busy.set()  # probably more waiting: claim again at once

    async def _claim(self, want: int, backoff: Backoff) -> Claim | None:
        """Claim up to `want` steps and start them; None after a failure (already waited)."""
        self._reserved += want
        try:
            claim = await self.store.claim(self.worker_id, want, self.config.lease_seconds)
        except DATABASE_ERRORS as exc:
            await self._database_trouble("claim", exc, backoff)
            return None
        except Exception:
            self._log.exception("claim failed unexpectedly")
            await self._database_trouble("claim", None, backoff)
            return None
        finally:
            self._reserved -= want
            # Unused reservations are room again: another lane may be waiting for it.
            self._slot_freed.set()
        if backoff.failing_since is not None:
            self._log.info("database reachable again")
        backoff.reset()
        for task in claim.tasks:
            self._start(task)
        return claim

    def _start(self, task: Task) -> None:
        key = step_key(task)
        if key in self._inflight:  # our own lease expired and we claimed it again
            self._inflight[key].abandoned = True
            self._inflight[key].asyncio_task.cancel()
        work = self._run_section(task) if isinstance(task, SectionTask) else self._run_outline(task)
        flight = _InFlight(task, asyncio.create_task(work))
        self._inflight[key] = flight
        self._idle.clear()
        self.steps_started += 1
        flight.asyncio_task.add_done_callback(partial(self._finished, key, flight))

    def _finished(self, key: StepKey, flight: _InFlight, _done: asyncio.Task[None]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not self._inflight:
            self._idle.set()
        self._slot_freed.set()

    # --- running a step ---------------------------------------------------------------

    async def _run_section(self, task: SectionTask) -> None:
        await self._run(task, lambda: self._section(task))

    async def _run_outline(self, task: OutlineTask) -> None:
        await self._run(task, lambda: self._outline(task))

    async def _section(self, task: SectionTask) -> Outcome:
        return SectionDone(task, await self.runner.section(task))

    async def _outline(self, task: OutlineTask) -> Outcome:
        result = await self.runner.outline(task)
        usage = result.usage
        return OutlineDone(
            task, result.titles, TokenUse(usage.prompt_tokens, usage.completion_tokens)
        )

    async def _run(self, task: Task, work: Callable[[], Awaitable[Outcome]]) -> None:
        key = step_key(task)
        outcome: Outcome
        try:
            async with asyncio.timeout(self.config.step_timeout_seconds):
                outcome = await work()
        except asyncio.CancelledError:
            flight = self._inflight.get(key)
            abandoned = flight is not None and flight.abandoned
            self._record(Released(task, "cancelled" if abandoned else "queued"))
            raise
        except TimeoutError:
            outcome = StepFailed(
                task,
                f"the model did not finish within {self.config.step_timeout_seconds:g} s "
                "(STEP_TIMEOUT_SECONDS)",
                retryable=True,
            )
        except StepError as exc:
            tokens = TokenUse(exc.prompt_tokens, exc.completion_tokens)
            outcome = StepFailed(task, exc.message, retryable=exc.retryable, tokens=tokens)
        except Exception as exc:
            self._log.exception("step crashed", **_ids(task))
            outcome = StepFailed(
                task, f"internal error: {type(exc).__name__}: {exc}", retryable=True
            )
        self._record(outcome)

    def _record(self, outcome: Outcome) -> None:
        step = "section" if isinstance(outcome.task, SectionTask) else "outline"
        key = (step, _OUTCOME_NAMES[type(outcome)])
        self._tally[key] = self._tally.get(key, 0) + 1
        self._pending.append(outcome)
        self._flush_wake.set()

    def _count_finished(self) -> None:
        """Add the steps finished since the last write to the Prometheus counters."""
        for key, count in self._tally.items():
            _STEPS_FINISHED[key].inc(count)
        self._tally.clear()

    # --- writing results ----------------------------------------------------------------

    async def _flush_loop(self) -> None:
        backoff = Backoff()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._flush_wake.clear()
                await self._flush_wake.wait()
                continue
            self._count_finished()
            self._flushing, self._pending = self._pending, []
            try:
                async with self._write_lock:
                    await self._write(self._flushing)
            except DATABASE_ERRORS as exc:
                # Keep the batch and write it again: every write is fenced, so writing
                # twice is harmless, and a result is never dropped for a blip.
                self._pending = self._flushing + self._pending
                self._flushing = []
                await self._database_trouble("write results", exc, backoff)
                continue
            except Exception:
                # Not an outage: something in the batch cannot be written. Write the rest
                # one by one; a result that still fails is dropped, its lease lapses, and
                # the step is retried (or failed) like one whose worker died.
                self._log.exception("batch write failed; writing one by one")
                await self._write_one_by_one(self._flushing)
            backoff.reset()
            self._flushing = []

    async def _write_one_by_one(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            try:
                async with self._write_lock:
                    await self._write([outcome])
            except Exception:
                self._log.exception(
                    "dropping a result that cannot be written", **_ids(outcome.task)
                )

    async def _write(self, outcomes: list[Outcome]) -> None:
        """Write a batch: one statement per kind of outcome (failed outlines one by one)."""
        sections = _SectionWrites()
        outlines: list[OutlineDone] = []
        for outcome in outcomes:
            if isinstance(outcome, OutlineDone):
                outlines.append(outcome)
            elif isinstance(outcome.task, OutlineTask):
                await self._write_outline_outcome(outcome.task, outcome)
            else:
                sections.add(outcome, outcome.task, self)
        if outlines:
            await self._write_outlines(outlines)
        await self._write_sections(sections)

    async def _write_sections(self, sections: _SectionWrites) -> None:
        if sections.finished:
            await self._write_finished(sections.finished)
        if sections.retries:
            await self.store.retry_sections(self.worker_id, sections.retries)
        if sections.failures:
            failed = await self.store.fail_sections(self.worker_id, sections.failures)
            for job_id in failed:
                self._log.warning("job failed", job_id=str(job_id))
            self.store.publish_progress(failed)
        if sections.requeue:
            await self.store.release_sections(self.worker_id, sections.requeue, "queued")
        if sections.cancel:
            await self.store.release_sections(self.worker_id, sections.cancel, "cancelled")

    async def _write_finished(self, finished: list[FinishedSection]) -> None:
        completion = await self.store.complete_sections(self.worker_id, finished)
        if completion.written < len(finished):
            lost = len(finished) - completion.written
            self._log.warning("results discarded: lease lost", count=lost)
        for job_id in completion.completed_jobs:
            self._log.info("job completed", job_id=str(job_id))
        self.store.publish_progress(completion.jobs)
        if completion.summaries_queued:
            self.store.wake_workers()

    def should_retry(self, task: Task, failed: StepFailed) -> bool:
        return failed.retryable and task.attempt < self.config.max_attempts

    async def _write_outline_outcome(self, task: OutlineTask, outcome: Outcome) -> None:
        if isinstance(outcome, StepFailed):
            await self._write_outline_failure(task, outcome)
        elif isinstance(outcome, Released) and outcome.status == "queued":
            await self.store.release_outline(self.worker_id, task.job_id, task.attempt)
        # A cancelled outline needs no write: cancel_job already ended the job.

    async def _write_outlines(self, outlines: list[OutlineDone]) -> None:
        written = await self.store.complete_outlines(
            self.worker_id,
            [FinishedOutline(o.task.job_id, o.task.attempt, o.titles, *o.tokens) for o in outlines],
        )
        self.store.publish_progress(written)
        for done in outlines:
            if done.task.job_id in written:
                self._log.info("outline written", sections=len(done.titles), **_ids(done.task))
            else:
                self._log.warning("outline discarded: lease lost", **_ids(done.task))

    async def _write_outline_failure(self, task: OutlineTask, failed: StepFailed) -> None:
        if self.should_retry(task, failed):
            self._log.warning("outline will be retried", error=failed.error, **_ids(task))
            held = HeldOutline(task.job_id, task.attempt)
            await self.store.retry_outline(
                self.worker_id, held, failed.error, self.delay(task), failed.tokens
            )
        elif await self.store.fail_outline(
            self.worker_id, HeldOutline(task.job_id, task.attempt), failed.error, failed.tokens
        ):
            self._log.warning("job failed", error=failed.error, **_ids(task))
            self.store.publish_progress([task.job_id])

    def delay(self, task: Task) -> float:
        return retry_delay(
            task.attempt, self.config.retry_base_seconds, self.config.retry_max_seconds
        )

    # --- leases -------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        backoff = Backoff()
        while True:
            await asyncio.sleep(
                self.config.heartbeat_seconds
                if backoff.failing_since is None
                else backoff.next_delay()
            )
            try:
                async with self._write_lock:
                    await self._heartbeat()
            except DATABASE_ERRORS as exc:
                if backoff.failing_since is None:
                    self._log.warning("heartbeat failed; retrying", error=_describe(exc))
                    backoff.next_delay()
                continue
            except Exception:
                self._log.exception("heartbeat failed unexpectedly")
                continue
            backoff.reset()

    async def _heartbeat(self) -> None:
        # Steps still running, and finished ones whose result is not written yet: both hold
        # a lease that must not lapse.
        flights = [f for f in self._inflight.values() if not f.abandoned]
        held = [f.task for f in flights]
        held += [o.task for o in self._flushing + self._pending if not isinstance(o, Released)]
        sections = {
            HeldSection(t.section_id, t.attempt) for t in held if isinstance(t, SectionTask)
        }
        outlines = {HeldOutline(t.job_id, t.attempt) for t in held if isinstance(t, OutlineTask)}
        if not sections and not outlines:
            return
        kept_sections, kept_outlines = await self.store.extend_leases(
            self.worker_id, list(sections), list(outlines), self.config.lease_seconds
        )
        # Judge only the steps asked about: others may have been claimed during the call.
        for flight in flights:
            task = flight.task
            kept = (
                task.section_id in kept_sections
                if isinstance(task, SectionTask)
                else task.job_id in kept_outlines
            )
            if not kept and not flight.asyncio_task.done():
                # Its job was cancelled or failed, or another worker took the step over:
                # stop spending model calls on it.
                self._log.info("abandoning step", **_ids(task))
                flight.abandoned = True
                flight.asyncio_task.cancel()

    # --- maintenance --------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        interval = self.config.rescue_interval_seconds
        deadline_every = max(interval * 5, 5.0)
        last_deadline_check = 0.0
        # Workers started together should not all prune at once.
        prune_every = self.config.prune_every_seconds
        last_prune = time.monotonic() - prune_every * random.random()  # noqa: S311
        while True:
            # Jitter keeps many workers from sweeping in lockstep.
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))  # noqa: S311
            try:
                await self._rescue()
                now = time.monotonic()
                if now - last_deadline_check >= deadline_every:
                    last_deadline_check = now
                    await self._fail_overdue()
                if self.config.prune_after_seconds is not None and now - last_prune >= prune_every:
                    last_prune = now
                    if deleted := await self.store.prune(self.config.prune_after_seconds):
                        self._log.info("pruned finished jobs", count=deleted)
            except DATABASE_ERRORS:
                continue  # the claim loop reports outages; this just tries again later
            except Exception:
                self._log.exception("maintenance failed unexpectedly")

    async def _rescue(self) -> None:
        rescue = await self.store.rescue(self.config.max_attempts)
        if rescue.requeued:
            self._log.warning("requeued steps whose worker stopped", count=rescue.requeued)
            self._work_hint.set()
        for job_id in rescue.failed_jobs:
            self._log.warning("job failed: steps kept losing their worker", job_id=str(job_id))
        self.store.publish_progress(rescue.failed_jobs)

    async def _fail_overdue(self) -> None:
        overdue = await self.store.fail_overdue_jobs(self.config.job_timeout_seconds)
        for job_id in overdue:
            self._log.warning("job failed: past its deadline", job_id=str(job_id))
        self.store.publish_progress(overdue)

    # --- wake-ups -----------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        await self._listener.run()

    @property
    def listening(self) -> bool:
        return self._listener.listening

    def _notified(self, _payload: str) -> None:
        self._work_hint.set()

    # --- shutdown -----------------------------------------------------------------------

    async def _drain(self) -> None:
        if self._inflight:
            self._log.info(
                "finishing in-flight steps",
                count=len(self._inflight),
                grace_seconds=self.config.shutdown_grace_seconds,
            )
            waiters = [asyncio.ensure_future(e.wait()) for e in (self._idle, self._hurry)]
            await asyncio.wait(
                waiters,
                timeout=self.config.shutdown_grace_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waiters:
                waiter.cancel()
        flights = list(self._inflight.values())
        if flights:
            self._log.info("releasing unfinished steps", count=len(flights))
            for flight in flights:
                flight.asyncio_task.cancel()
            await asyncio.gather(*(f.asyncio_task for f in flights), return_exceptions=True)

    async def _database_trouble(
        self, what: str, exc: BaseException | None, backoff: Backoff
    ) -> None:
        if backoff.failing_since is None and exc is not None:
            self._log.warning(
                "database unavailable; retrying with backoff", action=what, error=_describe(exc)
            )
        delay = backoff.next_delay()
        with contextlib.suppress(TimeoutError):
            # A stop request cuts the wait short; the writes still get their own bound.
            await asyncio.wait_for(self._stopping.wait(), delay)
        if self._stopping.is_set() and what == "write results":
            await asyncio.sleep(delay)


class _SectionWrites:
    """Section outcomes of one flush, sorted by the statement that writes them."""

    def __init__(self) -> None:
        self.finished: list[FinishedSection] = []
        self.retries: list[SectionRetry] = []
        self.failures: list[SectionFailure] = []
        self.requeue: list[HeldSection] = []
        self.cancel: list[HeldSection] = []

    def add(self, outcome: Outcome, task: SectionTask, worker: Worker) -> None:
        if isinstance(outcome, SectionDone):
            self.finished.append(
                FinishedSection(
                    task.section_id,
                    task.attempt,
                    outcome.result.content,
                    outcome.result.finish_reason,
                    outcome.result.usage.prompt_tokens,
                    outcome.result.usage.completion_tokens,
                )
            )
        elif isinstance(outcome, Released):
            held = HeldSection(task.section_id, task.attempt)
            (self.requeue if outcome.status == "queued" else self.cancel).append(held)
        elif isinstance(outcome, StepFailed) and worker.should_retry(task, outcome):
            delay = worker.delay(task)
            self.retries.append(
                SectionRetry(task.section_id, task.attempt, outcome.error, delay, *outcome.tokens)
            )
            log.warning("section will be retried", error=outcome.error, **_ids(task))
        elif isinstance(outcome, StepFailed):
            self.failures.append(
                SectionFailure(task.section_id, task.attempt, outcome.error, *outcome.tokens)
            )


def _ids(task: Task) -> dict[str, object]:
    ids: dict[str, object] = {"job_id": str(task.job_id), "attempt": task.attempt}
    if isinstance(task, SectionTask):
        ids["section_id"] = task.section_id
        ids["position"] = task.position
    return ids


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
