"""The worker: wait for work -> claim -> run -> write the result, with leases that outlive
nothing. One process runs up to `concurrency` steps at once on one event loop.

`Worker` only wires its parts together and runs them; each part has one job and its own
module: claiming (`claims`), running steps (`executor`), writing results (`results`),
keeping leases (`leases`), maintenance (`maintenance`), wake-ups (`wakeups`) and shutdown
(`shutdown`). Every write is fenced on (lease owner, attempt), so a write from a worker
that lost its lease changes nothing, and repeating a write after a lost connection is
harmless.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import weakref

import structlog

from reportsvc.domain import StepRunner
from reportsvc.metrics import STEPS_IN_FLIGHT
from reportsvc.queue.operations import OperationsStore
from reportsvc.queue.steps import StepQueue
from reportsvc.worker.claims import Claimer
from reportsvc.worker.config import WorkerConfig
from reportsvc.worker.executor import Executor
from reportsvc.worker.leases import LeaseKeeper
from reportsvc.worker.maintenance import Maintenance
from reportsvc.worker.outages import Outages
from reportsvc.worker.results import ResultWriter
from reportsvc.worker.shutdown import finish_running, write_last_results
from reportsvc.worker.slots import Slots
from reportsvc.worker.wakeups import Wakeups

log = structlog.get_logger("reportsvc.worker")

# The in-flight gauge is read when scraped, not counted up and down on every step.
_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()
STEPS_IN_FLIGHT.set_function(lambda: sum(w.in_flight for w in _WORKERS))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        queue: StepQueue,
        operations: OperationsStore,
        runner: StepRunner,
        config: WorkerConfig,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.config = config
        self.worker_id = worker_id or new_worker_id()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._publisher = queue.publisher
        self._slots = Slots(config.concurrency)
        self._wakeups = Wakeups(config.database_url)
        outages = Outages(self._stopping)
        write_lock = asyncio.Lock()
        self._writer = ResultWriter(queue, self.worker_id, self._slots, write_lock, outages)
        self._executor = Executor(runner, config, self._slots, self._writer)
        self._claimer = Claimer(
            queue,
            self.worker_id,
            config,
            self._slots,
            self._executor,
            outages,
            work_hint=self._wakeups.hint,
            stopping=self._stopping,
        )
        self._leases = LeaseKeeper(queue, self.worker_id, config, self._slots, write_lock)
        self._maintenance = Maintenance(queue, operations, config, self._wakeups.hint)
        _WORKERS.add(self)

    def stop(self) -> None:
        """Stop claiming; running steps get `shutdown_grace_seconds` to finish."""
        self._stopping.set()
        self._claimer.stop()

    def hurry(self) -> None:
        """Skip what is left of the grace period: release running steps now."""
        self.stop()
        self._hurry.set()

    @property
    def in_flight(self) -> int:
        """Steps running now (not counting finished ones whose result is being written)."""
        return len(self._slots.running())

    @property
    def held(self) -> int:
        """Steps holding a slot: running, or finished with their result not yet written."""
        return len(self._slots)

    @property
    def listening(self) -> bool:
        return self._wakeups.listening

    async def run(self) -> None:
        log.info(
            "worker started",
            worker_id=self.worker_id,
            concurrency=self.config.concurrency,
            batch=self.config.claim_batch_size,
            lease_seconds=self.config.lease_seconds,
            listen=self.config.listen_notify,
        )
        writing = asyncio.create_task(self._writer.run(), name="results")
        background = [
            writing,
            asyncio.create_task(self._leases.run(), name="leases"),
            asyncio.create_task(self._executor.enforce_timeouts(), name="timeouts"),
            asyncio.create_task(self._maintenance.run(), name="maintenance"),
        ]
        if self.config.listen_notify:
            background.append(asyncio.create_task(self._wakeups.run(), name="wakeups"))
        try:
            await self._claimer.run()
            self._executor.release_waiting()
            await finish_running(
                self._slots,
                self._executor,
                grace_seconds=self.config.shutdown_grace_seconds,
                hurry=self._hurry,
            )
        finally:
            self._executor.release_waiting()
            await self._executor.cancel_running()  # releases them, if anything still runs
            await write_last_results(self._writer, writing)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._publisher.close()
            log.info("worker stopped", worker_id=self.worker_id, unwritten=self._writer.unwritten)
