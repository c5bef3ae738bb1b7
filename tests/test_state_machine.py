"""A property test of the queue: random interleavings of claims, completions, failures,
crashes, late writes and cancellations never break the invariants a user relies on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from reportsvc.db.engine import create_pool
from reportsvc.domain import JobOptions, OutlineTask, SectionTask, Task
from reportsvc.queue.store import FinishedSection, SectionFailure, SectionRetry, Store

T = TypeVar("T")
WORKERS = ("a", "b", "c")
MAX_ATTEMPTS = 3
TERMINAL = {"completed", "failed", "cancelled"}


class QueueMachine(RuleBasedStateMachine):
    database_url = ""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool = self.run(create_pool(self.database_url, min_size=1, max_size=2))
        self.run(self.pool.execute("TRUNCATE jobs CASCADE"))
        self.store = Store(self.pool)
        self.held: dict[str, list[Task]] = {w: [] for w in WORKERS}
        self.stale: list[tuple[str, SectionTask]] = []
        self.progress: dict[UUID, float] = {}
        self.finished: dict[UUID, str] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.store.publisher.close())
        self.run(self.pool.close())
        self.loop.close()

    # --- rules ----------------------------------------------------------------------------

    @rule(target=jobs, sections=st.integers(1, 4))
    def submit(self, sections: int) -> UUID:
        job_id = self.run(
            self.store.create_job(
                topic="t",
                model="m",
                options=JobOptions(sections=sections),
                idempotency_key=None,
                timeout_seconds=3600,
            )
        )
        assert job_id is not None
        return job_id

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 5))
    def claim(self, worker: str, limit: int) -> None:
        tasks = self.run(self.store.claim(worker, limit, 3600)).tasks
        assert len(tasks) <= limit
        everyone = {id(t) for ts in self.held.values() for t in ts}
        assert not everyone & {id(t) for t in tasks}
        self.held[worker].extend(tasks)

    @rule(worker=st.sampled_from(WORKERS), data=st.data())
    def finish_one(self, worker: str, data: st.DataObject) -> None:
        if not self.held[worker]:
            return
        task = data.draw(st.sampled_from(self.held[worker]))
        self.held[worker].remove(task)
        if isinstance(task, OutlineTask):
            titles = [f"{i}. title" for i in range(task.options.sections)]
            self.run(self.store.complete_outline(worker, task.job_id, task.attempt, titles))
        else:
            done = FinishedSection(task.section_id, task.attempt, "text")
            self.run(self.store.complete_sections(worker, [done]))

    @rule(worker=st.sampled_from(WORKERS), data=st.data(), permanent=st.booleans())
    def fail_one(self, worker: str, data: st.DataObject, permanent: bool) -> None:
        sections = [t for t in self.held[worker] if isinstance(t, SectionTask)]
        if not sections:
            return
        task = data.draw(st.sampled_from(sections))
        self.held[worker].remove(task)
        if permanent or task.attempt >= MAX_ATTEMPTS:
            self.run(
                self.store.fail_sections(
                    worker, [SectionFailure(task.section_id, task.attempt, "x")]
                )
            )
        else:
            retry = SectionRetry(task.section_id, task.attempt, "x", 0.0)
            self.run(self.store.retry_sections(worker, [retry]))

    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker: str) -> None:
        """The worker dies: its leases expire and the rescuer takes its steps back."""
        self.run(
            self.pool.execute(
                """UPDATE sections SET lease_expires_at = now() - interval '1 second'
                   WHERE lease_owner = $1""",
                worker,
            )
        )
        self.run(
            self.pool.execute(
                """UPDATE jobs SET lease_expires_at = now() - interval '1 second'
                   WHERE lease_owner = $1""",
                worker,
            )
        )
        self.stale += [(worker, t) for t in self.held[worker] if isinstance(t, SectionTask)]
        self.held[worker] = []
        self.run(self.store.rescue(MAX_ATTEMPTS))

    @rule(data=st.data())
    def late_write_from_a_dead_worker(self, data: st.DataObject) -> None:
        if not self.stale:
            return
        worker, task = data.draw(st.sampled_from(self.stale))
        self.stale.remove((worker, task))
        written = self.run(
            self.store.complete_sections(
                worker, [FinishedSection(task.section_id, task.attempt, "late")]
            )
        ).written
        assert written == 0

    @rule(job_id=consumes(jobs))
    def cancel(self, job_id: UUID) -> None:
        status = self.run(self.store.cancel_job(job_id))
        assert status in TERMINAL

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def counters_match_rows(self) -> None:
        bad = self.run(
            self.pool.fetchval(
                """SELECT count(*) FROM jobs j
                   WHERE sections_done <> (SELECT count(*) FROM sections s
                                           WHERE s.job_id = j.id AND s.status = 'done')"""
            )
        )
        assert bad == 0

    @invariant()
    def completed_means_every_section_done_and_nothing_is_stuck(self) -> None:
        rows = self.run(
            self.pool.fetch(
                """SELECT j.status,
                          j.sections_total IS NOT NULL
                          AND j.sections_done = j.sections_total AS all_done
                   FROM jobs j"""
            )
        )
        for row in rows:
            if row["status"] == "completed":
                assert row["all_done"]
            if row["status"] == "writing":
                assert not row["all_done"]  # all sections written, yet not completed: stuck

    @invariant()
    def leases_only_on_running_rows(self) -> None:
        bad = self.run(
            self.pool.fetchval(
                """SELECT count(*) FROM sections
                   WHERE (status = 'running') <> (lease_owner IS NOT NULL)"""
            )
        )
        assert bad == 0

    @invariant()
    def a_writing_job_has_no_failed_section(self) -> None:
        bad = self.run(
            self.pool.fetchval(
                """SELECT count(*) FROM jobs j JOIN sections s ON s.job_id = j.id
                   WHERE j.status = 'writing' AND s.status IN ('failed', 'cancelled')"""
            )
        )
        assert bad == 0

    @invariant()
    def progress_never_goes_down_and_finished_jobs_stay_finished(self) -> None:
        rows = self.run(
            self.pool.fetch("SELECT id, status, sections_done, sections_total FROM jobs")
        )
        for row in rows:
            total = row["sections_total"]
            progress = 0.0 if total is None else (1 + row["sections_done"]) / (1 + total)
            assert progress >= self.progress.get(row["id"], 0.0)
            self.progress[row["id"]] = progress
            if row["id"] in self.finished:
                assert row["status"] == self.finished[row["id"]]
            elif row["status"] in TERMINAL:
                self.finished[row["id"]] = row["status"]


def test_queue_state_machine(database_url: str) -> None:
    QueueMachine.database_url = database_url
    machine = QueueMachine.TestCase
    machine.settings = settings(
        max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "40")),
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()
