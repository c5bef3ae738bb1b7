"""How a claimed step ended, as the worker hands it to the queue to be written.

One value per step, whatever its kind; `StepQueue.write` turns a batch of them into one
statement per transition (complete, retry, fail, release).
"""

from __future__ import annotations

import msgspec

from reportsvc.domain import Step, StepResult, Usage


class Done(msgspec.Struct, frozen=True):
    step: Step
    result: StepResult


class Failed(msgspec.Struct, frozen=True, kw_only=True):
    step: Step
    # What a user may read (plain words), and the detail for operators (`last_error`).
    reason: str
    detail: str | None = None
    # Seconds until the next attempt; None: the step fails for good, and its job with it.
    retry_in: float | None = None
    # What a call that answered with something unusable consumed.
    usage: Usage = Usage()
    # The HTTP status the call was answered with, when it is worth keeping.
    status_code: int | None = None


class Released(msgspec.Struct, frozen=True):
    """Given back without a result, the attempt not counted: to the queue (`requeue`) on
    shutdown or while its model's quota is spent, or abandoned because its job ended or
    another worker took the step over."""

    step: Step
    requeue: bool
    # Seconds before it may be claimed again, and why it waits ('quota').
    delay: float = 0.0
    waiting_for: str | None = None


Outcome = Done | Failed | Released
