"""A property test of the queue: random interleavings of claims, completions, failures,
releases, crashes, late writes, heartbeats and cancellations never break the invariants a
user relies on, each checked against the database itself:

- no step is ever leased to two live owners at once: the running rows are exactly the
  steps the model's live workers hold, with their attempt;
- every result is written once: a trigger logs each step's transition to `done`, and no
  step appears twice; what a step holds is what the one accepted write sent;
- a job's counter equals its done rows; completed means every step done; progress never
  goes down; a finished job stays finished.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from reportsvc.db.engine import create_pool
from reportsvc.domain import JobOptions, JobStatus, Step, StepKind, StepResult
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.outcomes import Done, Failed, Released
from tests.helpers import Stores

T = TypeVar("T")
WORKERS = ("a", "b", "c")
MAX_ATTEMPTS = 3
TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}

AUDIT = """
CREATE TABLE IF NOT EXISTS done_log (step_id bigint NOT NULL, content text);
CREATE OR REPLACE FUNCTION log_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO done_log VALUES (NEW.id, NEW.content);
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER steps_done_log AFTER UPDATE OF status ON steps FOR EACH ROW
    WHEN (NEW.status = 'done' AND OLD.status <> 'done') EXECUTE FUNCTION log_done();
TRUNCATE jobs CASCADE;
TRUNCATE done_log;
"""


class QueueMachine(RuleBasedStateMachine):
    database_url = ""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool = self.run(create_pool(self.database_url, min_size=1, max_size=2))
        self.run(self.pool.execute(AUDIT))
        self.publisher = Publisher(self.pool)
        self.stores = Stores.on(self.pool, self.publisher)
        # What each live worker holds: step id -> the step as claimed (its attempt).
        self.held: dict[str, dict[int, Step]] = {w: {} for w in WORKERS}
        # Steps whose worker lost its lease (it crashed or stalled); its writes must fail.
        self.stale: list[tuple[str, Step]] = []
        # The text of each section whose write was accepted.
        self.accepted: dict[int, str] = {}
        self.progress: dict[UUID, float] = {}
        self.finished: dict[UUID, str] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.publisher.close())
        self.run(self.pool.close())
        self.loop.close()

    def _take(self, worker: str, data: st.DataObject) -> Step | None:
        if not self.held[worker]:
            return None
        step_id = data.draw(st.sampled_from(sorted(self.held[worker])))
        return self.held[worker].pop(step_id)

    # --- rules ----------------------------------------------------------------------------

    @rule(target=jobs, sections=st.integers(1, 4))
    def submit(self, sections: int) -> UUID:
        job_id = self.run(
            self.stores.reports.create_job(
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
        steps = self.run(self.stores.queue.claim(worker, limit, 3600)).steps
        assert len(steps) <= limit
        for step in steps:
            holders = [w for w in WORKERS if step.id in self.held[w]]
            assert holders == [], f"step {step.id} handed to {worker}, still held by {holders}"
            self.held[worker][step.id] = step

    @rule(worker=st.sampled_from(WORKERS), data=st.data())
    def finish_one(self, worker: str, data: st.DataObject) -> None:
        step = self._take(worker, data)
        if step is None:
            return
        if step.kind is StepKind.OUTLINE:
            result = StepResult(titles=[f"{i}. title" for i in range(step.options.sections)])
        else:
            result = StepResult(content=f"{worker}:{step.id}:{step.attempt}")
        written = self.run(self.stores.queue.write(worker, [Done(step, result)]))
        # A live lease holder's write is always accepted.
        assert written.written == 1
        if result.content is not None:
            self.accepted[step.id] = result.content

    @rule(worker=st.sampled_from(WORKERS), data=st.data(), permanent=st.booleans())
    def fail_one(self, worker: str, data: st.DataObject, permanent: bool) -> None:
        step = self._take(worker, data)
        if step is None:
            return
        retry_in = None if permanent or step.attempt >= MAX_ATTEMPTS else 0.0
        self.run(
            self.stores.queue.write(worker, [Failed(step=step, reason="x", retry_in=retry_in)])
        )

    @rule(worker=st.sampled_from(WORKERS), data=st.data(), requeue=st.booleans())
    def release_one(self, worker: str, data: st.DataObject, requeue: bool) -> None:
        step = self._take(worker, data)
        if step is not None:
            self.run(self.stores.queue.write(worker, [Released(step, requeue=requeue)]))

    @rule(worker=st.sampled_from(WORKERS))
    def heartbeat(self, worker: str) -> None:
        """Leases renewed; steps of jobs that ended are abandoned, as the worker does."""
        held = list(self.held[worker].values())
        kept = self.run(self.stores.queue.extend_leases(worker, held, 3600))
        assert kept <= {s.id for s in held}
        for step in held:
            if step.id not in kept:
                del self.held[worker][step.id]
                self.run(self.stores.queue.write(worker, [Released(step, requeue=False)]))

    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker: str) -> None:
        """The worker dies (or stalls): its leases expire and the rescuer takes its steps
        back. Its late writes must change nothing."""
        self.run(
            self.pool.execute(
                """UPDATE steps SET lease_expires_at = now() - interval '1 second'
                   WHERE lease_owner = $1""",
                worker,
            )
        )
        self.stale += [(worker, step) for step in self.held[worker].values()]
        self.held[worker] = {}
        self.run(self.stores.queue.rescue(MAX_ATTEMPTS, webhook_max_attempts=MAX_ATTEMPTS))

    @rule(data=st.data())
    def late_write_from_a_lost_lease(self, data: st.DataObject) -> None:
        if not self.stale:
            return
        worker, step = data.draw(st.sampled_from(self.stale))
        self.stale.remove((worker, step))
        result = (
            StepResult(titles=["late"])
            if step.kind is StepKind.OUTLINE
            else StepResult(content="late")
        )
        written = self.run(self.stores.queue.write(worker, [Done(step, result)]))
        assert written.written == 0

    @rule(job_id=consumes(jobs))
    def cancel(self, job_id: UUID) -> None:
        status = self.run(self.stores.reports.cancel_job(job_id))
        assert status in TERMINAL

    # --- invariants, read from the database ---------------------------------------------------

    @invariant()
    def running_rows_are_exactly_what_live_workers_hold(self) -> None:
        rows = self.run(
            self.pool.fetch("SELECT id, lease_owner, attempts FROM steps WHERE status = 'running'")
        )
        in_db = {(r["id"], r["lease_owner"], r["attempts"]) for r in rows}
        in_model = {(s.id, w, s.attempt) for w in WORKERS for s in self.held[w].values()}
        assert in_db == in_model
        # Hence no step has two live owners.
        ids = [step_id for step_id, _, _ in in_model]
        assert len(ids) == len(set(ids))

    @invariant()
    def every_result_is_written_once(self) -> None:
        twice = self.run(
            self.pool.fetchval("SELECT count(*) FROM (SELECT step_id FROM done_log "
                               "GROUP BY step_id HAVING count(*) > 1) t")
        )  # fmt: skip
        assert twice == 0
        rows = self.run(
            self.pool.fetch(
                "SELECT id, content FROM steps WHERE status = 'done' AND kind <> 'outline'"
            )
        )
        assert {r["id"]: r["content"] for r in rows} == self.accepted

    @invariant()
    def counters_match_rows(self) -> None:
        bad = self.run(
            self.pool.fetchval(
                """SELECT count(*) FROM jobs j
                   WHERE sections_done <> (SELECT count(*) FROM steps s
                                           WHERE s.job_id = j.id AND s.status = 'done'
                                             AND s.kind <> 'outline')"""
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
            if row["status"] == JobStatus.COMPLETED:
                assert row["all_done"]
            if row["status"] == JobStatus.WRITING:
                assert not row["all_done"]  # all sections written, yet not completed: stuck

    @invariant()
    def leases_only_on_running_rows(self) -> None:
        bad = self.run(
            self.pool.fetchval(
                "SELECT count(*) FROM steps WHERE (status = 'running') <> (lease_owner IS NOT NULL)"
            )
        )
        assert bad == 0

    @invariant()
    def an_active_job_has_no_failed_step(self) -> None:
        bad = self.run(
            self.pool.fetchval(
                """SELECT count(*) FROM jobs j JOIN steps s ON s.job_id = j.id
                   WHERE j.status IN ('outlining', 'writing') AND s.status = 'failed'"""
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
