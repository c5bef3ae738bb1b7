"""Every sentence a user reads about a failure, in one place.

A job's `error` (what GET /reports/{id} shows) names the step that failed and why, in plain
words. What went wrong on each attempt in detail (an upstream's raw error text, which may
hold its internals) goes only to the logs and to the step's `last_error` column, for
operators with psql.
"""

from __future__ import annotations

from typing import Final

from reportsvc.domain import StepKind

# The longest `last_error` stored (the raw text of a failed attempt, for operators).
LAST_ERROR_LENGTH: Final = 1000

CANCELLED: Final = "the job was cancelled"
# Why a step's attempt ended, when its worker vanished.
WORKER_LOST: Final = "the worker running this step stopped responding (lease expired)"
# The same, as the reason a step failed for good.
WORKER_LOST_EVERY_TIME: Final = "its worker stopped responding each time"


def step_timed_out(seconds: float) -> str:
    return f"the model did not finish within {seconds:g} s (STEP_TIMEOUT_SECONDS)"


def internal_error(exc: BaseException) -> str:
    return f"internal error ({type(exc).__name__})"


def step_failed(
    *,
    kind: StepKind,
    position: int,
    title: str | None,
    outline_length: int | None,
    attempts: int,
    reason: str,
) -> str:
    """The job's error when one of its steps failed for good."""
    tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
    if kind is StepKind.OUTLINE:
        what = "The outline"
    elif kind is StepKind.SUMMARY:
        what = "The summary"
    elif outline_length:
        what = f'Section {position + 1} of {outline_length} ("{title}")'
    else:
        what = f'A section ("{title}")'
    return f"{what} could not be written after {tries}: {reason}"


def deadline_passed(timeout_seconds: float) -> str:
    minutes = timeout_seconds / 60
    return (
        f"The report did not finish within its deadline of {minutes:g} minutes "
        "(JOB_TIMEOUT_SECONDS); the model may be too slow or unavailable."
    )


def last_error(text: str) -> str:
    """`text` cut to what the `last_error` column keeps."""
    text = " ".join(text.split())
    return text if len(text) <= LAST_ERROR_LENGTH else text[: LAST_ERROR_LENGTH - 1] + "…"


# --- webhook deliveries: `lastError` in GET /reports/{id}, for the job's owner ------------


def webhook_answered(status: int) -> str:
    return f"the receiver answered {status}; only a 2xx counts as delivered"


WEBHOOK_GONE: Final = "the receiver answered 410 Gone: it wants no more deliveries"
WEBHOOK_REFUSED_ADDRESS: Final = (
    "the receiver's host resolves to a loopback, private, link-local or cloud-metadata "
    "address, which webhooks are not sent to"
)
WEBHOOK_UNSIGNED: Final = "this worker has no WEBHOOK_SECRET to sign deliveries with"
WEBHOOK_JOB_GONE: Final = "the job was deleted before its webhook could be sent"


def webhook_timed_out(seconds: float) -> str:
    return f"the receiver did not answer within {seconds:g} s"


def webhook_unreachable(why: str) -> str:
    return f"could not reach the receiver: {why}"


def webhook_gave_up(reason: str, attempts: int) -> str:
    tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
    return f"{reason}; gave up after {tries}"


def review_expired(timeout_seconds: float) -> str:
    hours = timeout_seconds / 3600
    return (
        f"The outline was not reviewed within {hours:g} hours (OUTLINE_REVIEW_TIMEOUT): "
        "no PUT /reports/{jobId}/outline arrived, so no section was written."
    )


def rewrite_failed(step_error: str) -> str:
    """A completed report's `rewriteError` when a rewrite of one of its parts failed."""
    return f"The rewrite did not happen: {step_error}. The report is as it was before it."
