"""One base exception; each subclass's docstring is its default, user-facing message."""

from __future__ import annotations

from typing import Final

# How much of a model service's own error text an operator gets to see (logs, last_error).
DETAIL_LIMIT: Final = 500


class ReportSvcError(Exception):
    """Something went wrong in reportsvc."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class ConfigError(ReportSvcError):
    """The configuration is invalid."""


class DatabaseUnavailableError(ReportSvcError):
    """The database is unreachable right now; try again shortly."""


class StepError(ReportSvcError):
    """A model step failed.

    `message` is plain words a user may read. `detail` is what went wrong in detail (an
    upstream's raw error text, which may hold its internals), for logs and operators only.
    `retryable` says whether another attempt may succeed (a timeout, a rate limit, a
    malformed answer) or cannot (a rejected API key, an unknown model). `status` is the
    model service's HTTP status when it answered with an error; `prompt_tokens` and
    `completion_tokens` what a call that did answer (with something unusable) consumed.
    `retry_in`, when given, is when the runner wants the next attempt (seconds): it keeps
    its own schedule and attempt limit (a webhook's), instead of the worker's. For a
    webhook delivery, `status` is the receiver's answer. `not_before` keeps the worker's
    schedule and attempt limit but no sooner than that (a 429's pause).
    """

    def __init__(  # noqa: PLR0913 - one argument per fact an outcome records
        self,
        message: str,
        *,
        retryable: bool,
        kind: str = "error",
        status: int | None = None,
        detail: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        retry_in: float | None = None,
        not_before: float | None = None,
    ) -> None:
        super().__init__(message)
        self.not_before = not_before
        self.detail = detail
        self.retryable = retryable
        # For metrics: rate_limited, timeout, connection, server_error, rejected,
        # format_refused (the service does not take the response_format sent), malformed.
        self.kind = kind
        self.status = status
        self.detail = None if detail is None else shorten(detail, DETAIL_LIMIT)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.retry_in = retry_in


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to at most `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class QuotaExhausted(ReportSvcError):  # noqa: N818 - a state to wait out, not an error
    """The model's quota is spent for now: the step goes back to the queue, its attempt
    not counted, until `retry_in` seconds from now."""

    def __init__(self, model: str, retry_in: float) -> None:
        super().__init__(f"the quota of model {model!r} is spent for {retry_in:.1f} s")
        self.model = model
        self.retry_in = retry_in
