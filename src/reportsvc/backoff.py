"""Waiting between attempts: step retries (jittered exponential) and reconnects."""

from __future__ import annotations

import random
import time


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: half the step is fixed, half random."""
    step: float = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not security


class Backoff:
    """Waits that grow while the database stays away, and reset when it is back."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._next = first
        self.failing_since: float | None = None

    def reset(self) -> None:
        self._next = self._first
        self.failing_since = None

    def next_delay(self) -> float:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311
