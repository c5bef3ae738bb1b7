"""Running steps: one asyncio task per claimed step, bounded in time, whose every ending
(a result, an error, a timeout, a cancellation) becomes an outcome for the writer.

Steps are bounded by one sweep over the running ones (`enforce_timeouts`), not by a timer
per step: `asyncio.timeout` around every step cost more than the rest of a step's
bookkeeping at queue speed. A step is stopped at most a tenth of its timeout (a second
at most) after it is due.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from reportsvc import failures
from reportsvc.backoff import retry_delay
from reportsvc.domain import Step, StepRunner, Usage
from reportsvc.errors import QuotaExhausted, StepError
from reportsvc.metrics import QUOTA_EXHAUSTED
from reportsvc.queue.outcomes import Done, Failed, Outcome, Released
from reportsvc.worker.config import WorkerConfig
from reportsvc.worker.slots import Slots

if TYPE_CHECKING:
    from reportsvc.worker.results import ResultWriter

log = structlog.get_logger("reportsvc.worker")


def step_ids(step: Step) -> dict[str, object]:
    """A step's identity for log lines."""
    ids: dict[str, object] = {
        "job_id": str(step.job_id),
        "step_id": step.id,
        "kind": step.kind.value,
        "attempt": step.attempt,
    }
    if step.title is not None:
        ids["position"] = step.position
    return ids


class Executor:
    def __init__(
        self, runner: StepRunner, config: WorkerConfig, slots: Slots, writer: ResultWriter
    ) -> None:
        self._runner = runner
        self._config = config
        self._slots = slots
        self._writer = writer
        slots.starter = self._start

    def start(self, step: Step) -> None:
        """Run a claimed step now, or as soon as a slot is free."""
        if self._slots.admit(step):
            self._start(step)

    def _start(self, step: Step) -> None:
        self._slots.hold(step, asyncio.create_task(self._run(step)))

    def release_waiting(self) -> None:
        """Stop: the claimed steps still waiting for a slot go back to the queue (their
        attempt not counted: nothing was tried)."""
        for step in self._slots.close():
            self._writer.record(Released(step, requeue=True))

    async def enforce_timeouts(self) -> None:
        """Stop every step running past STEP_TIMEOUT_SECONDS; it fails like a call that
        timed out (and is retried, attempts permitting)."""
        timeout = self._config.step_timeout_seconds
        every = min(1.0, timeout / 10)
        while True:
            await asyncio.sleep(every)
            due = time.monotonic() - timeout
            for held in self._slots.running():
                if held.started_at <= due and not (held.timed_out or held.abandoned):
                    held.time_out()

    async def _run(self, step: Step) -> None:
        outcome: Outcome
        try:
            outcome = Done(step, await self._runner.run(step))
        except asyncio.CancelledError:
            held = self._slots.get(step)
            # Stopped by the timeout sweep alone (no shutdown or abandonment since): a
            # failure to record, not a cancellation to pass on.
            task = asyncio.current_task()
            if held is None or not held.timed_out or task is None or task.uncancel() > 0:
                self._writer.record(Released(step, requeue=held is None or not held.abandoned))
                raise
            reason = failures.step_timed_out(self._config.step_timeout_seconds)
            outcome = self._failed(step, reason, retryable=True)
        except QuotaExhausted as exc:
            # No quota soon: back to the queue until there is, holding no lease meanwhile,
            # and the attempt is not counted (nothing was tried).
            QUOTA_EXHAUSTED.labels(exc.model).inc()
            outcome = Released(step, requeue=True, delay=exc.retry_in, waiting_for="quota")
        except TimeoutError:  # raised by the runner itself
            reason = failures.step_timed_out(self._config.step_timeout_seconds)
            outcome = self._failed(step, reason, retryable=True)
        except StepError as exc:
            usage = Usage(exc.prompt_tokens, exc.completion_tokens)
            outcome = self._failed(
                step,
                exc.message,
                retryable=exc.retryable,
                detail=exc.detail,
                usage=usage,
                retry_in=exc.retry_in,
                status_code=exc.status,
                not_before=exc.not_before,
            )
        except Exception as exc:
            log.exception("step crashed", **step_ids(step))
            detail = f"{type(exc).__name__}: {exc}"
            outcome = self._failed(
                step, failures.internal_error(exc), retryable=True, detail=detail
            )
        self._writer.record(outcome)

    def _failed(
        self,
        step: Step,
        reason: str,
        *,
        retryable: bool,
        detail: str | None = None,
        usage: Usage | None = None,
        retry_in: float | None = None,
        status_code: int | None = None,
        not_before: float | None = None,
    ) -> Failed:
        if not retryable:
            retry_in = None
        elif retry_in is None and step.attempt < self._config.max_attempts:
            retry_in = max(
                not_before or 0.0,
                retry_delay(
                    step.attempt, self._config.retry_base_seconds, self._config.retry_max_seconds
                ),
            )
        # A runner that names its own retry time (a webhook sender) also keeps its own
        # attempt limit: it says retryable=False when it gives up.
        if retry_in is not None:
            log.warning("step will be retried", error=detail or reason, **step_ids(step))
        return Failed(
            step=step,
            reason=reason,
            detail=detail,
            retry_in=retry_in,
            usage=usage or Usage(),
            status_code=status_code,
        )

    async def cancel_running(self) -> None:
        """Stop every step still running; each records a release for the writer."""
        running = self._slots.running()
        for held in running:
            held.call.cancel()
        await asyncio.gather(*(h.call for h in running), return_exceptions=True)
