"""A worker's slots: how many steps it may run at once, which it holds, and which wait.

A step takes a slot when it starts and gives it back only once its outcome is committed,
not when the model answers: so a worker never has more than `concurrency` model calls
running or answered-but-unwritten, and a `kill -9` can cost at most that many model calls
to be made again.

Claiming is pipelined with writing: the slots of results being committed count as room
for the next claim, so the claim's round trip overlaps the write's instead of following
it. A step claimed before its slot is free waits here, holding a lease but no model call,
and starts as soon as a slot is given back (waiting costs a write's round trip at most;
its lease is renewed like any other). A `kill -9` costs a waiting step its lease, not a
model call.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from uuid import UUID

from reportsvc.domain import Step


class Held:
    """One step this worker runs, from its start until its outcome is written."""

    __slots__ = ("abandoned", "call", "started_at", "step", "timed_out")

    def __init__(self, step: Step, call: asyncio.Task[None]) -> None:
        self.step = step
        self.call = call
        self.started_at = time.monotonic()
        # The job ended, or another worker took the step over: its result is not wanted.
        self.abandoned = False
        # Stopped for running past STEP_TIMEOUT_SECONDS (see `Executor.enforce_timeouts`).
        self.timed_out = False

    @property
    def running(self) -> bool:
        return not self.call.done()

    def abandon(self) -> None:
        self.abandoned = True
        self.call.cancel()

    def time_out(self) -> None:
        self.timed_out = True
        self.call.cancel()


class Slots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[int, Held] = {}
        # Claimed steps waiting for a slot, in claim order.
        self._waiting: deque[Step] = deque()
        # Slots promised to claims in flight.
        self._reserved = 0
        # Held steps whose outcomes are in a write in flight: free once it commits.
        self._committing = 0
        # Set whenever room may have appeared; waiters clear it before they wait.
        self.freed = asyncio.Event()
        # Starts a step in a free slot (the executor's); called as slots are given back.
        self.starter: Callable[[Step], None] | None = None
        self._closed = False
        self._start_scheduled = False

    def claimable(self) -> int:
        """How many more steps a claim may take now: free slots, and those whose results
        are being committed, less the ones already promised or waiting."""
        return (
            self.capacity - len(self._held) + self._committing - self._reserved - len(self._waiting)
        )

    def reserve(self, count: int) -> None:
        self._reserved += count

    def unreserve(self, count: int) -> None:
        self._reserved -= count
        self.freed.set()

    def admit(self, step: Step) -> bool:
        """A step was claimed: True if it may start now; else it waits for a slot."""
        if not self._closed and not self._waiting and len(self._held) < self.capacity:
            return True
        self._waiting.append(step)
        return False

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

    def committing(self, count: int) -> None:
        """`count` held steps' outcomes are being written (negative: the write ended)."""
        self._committing += count
        self.freed.set()

    def release(self, step: Step) -> None:
        """The step's outcome is committed (or given up on): its slot goes to the first
        waiting step, or is free."""
        held = self._held.get(step.id)
        if held is not None and held.step.attempt == step.attempt:
            del self._held[step.id]
        if self._waiting and not self._start_scheduled:
            # Started on the loop's next turn, not here: slots are given back as a write
            # returns, and the writer sends its next batch first, so starting a batch's
            # worth of steps overlaps that write instead of delaying it.
            self._start_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_waiting)
        self.freed.set()

    def _start_waiting(self) -> None:
        self._start_scheduled = False
        while self._waiting and len(self._held) < self.capacity and not self._closed:
            assert self.starter is not None
            self.starter(self._waiting.popleft())

    def close(self) -> list[Step]:
        """Stop starting waiting steps; returns them (they go back to the queue)."""
        self._closed = True
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting

    def drop_waiting(self, job_ids: set[UUID]) -> list[Step]:
        """The waiting steps of jobs that have ended: they will not start."""
        dropped = [step for step in self._waiting if step.job_id in job_ids]
        for step in dropped:
            self._waiting.remove(step)
        return dropped

    def forget(self, step: Step) -> None:
        """A waiting step whose lease is no longer ours: it will not start."""
        if step in self._waiting:
            self._waiting.remove(step)

    @property
    def waiting(self) -> list[Step]:
        return list(self._waiting)

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Held]:
        return iter(list(self._held.values()))

    def running(self) -> list[Held]:
        return [h for h in self._held.values() if h.running]
