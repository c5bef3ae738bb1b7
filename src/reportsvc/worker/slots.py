"""A worker's slots: how many steps it may hold at once, and which it holds.

A step takes a slot when it is claimed and gives it back only once its outcome is
committed, not when the model answers: so a worker never holds more than `concurrency`
leases, and a `kill -9` can cost at most that many model calls to be made again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from reportsvc.domain import Step


class Held:
    """One step this worker holds, from its claim until its outcome is written."""

    __slots__ = ("abandoned", "call", "step")

    def __init__(self, step: Step, call: asyncio.Task[None]) -> None:
        self.step = step
        self.call = call
        # The job ended, or another worker took the step over: its result is not wanted.
        self.abandoned = False

    @property
    def running(self) -> bool:
        return not self.call.done()

    def abandon(self) -> None:
        self.abandoned = True
        self.call.cancel()


class Slots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[int, Held] = {}
        # Slots promised to claims in flight.
        self._reserved = 0
        # Set whenever room may have appeared; waiters clear it before they wait.
        self.freed = asyncio.Event()

    def free(self) -> int:
        return self.capacity - len(self._held) - self._reserved

    def reserve(self, count: int) -> None:
        self._reserved += count

    def unreserve(self, count: int) -> None:
        self._reserved -= count
        self.freed.set()

    def hold(self, step: Step, call: asyncio.Task[None]) -> Held:
        previous = self._held.get(step.id)
        if previous is not None:
            # Our own lease on it expired and we claimed it again: the older attempt's
            # result would be refused anyway.
            previous.abandon()
        held = self._held[step.id] = Held(step, call)
        return held

    def get(self, step: Step) -> Held | None:
        held = self._held.get(step.id)
        return held if held is not None and held.step.attempt == step.attempt else None

    def release(self, step: Step) -> None:
        """The step's outcome is committed (or given up on): its slot is free."""
        held = self._held.get(step.id)
        if held is not None and held.step.attempt == step.attempt:
            del self._held[step.id]
        self.freed.set()

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Held]:
        return iter(list(self._held.values()))

    def running(self) -> list[Held]:
        return [h for h in self._held.values() if h.running]
