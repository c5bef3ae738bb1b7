from __future__ import annotations

from reportsvc.llm.fake import FakeLLMThread
from reportsvc.queue.store import Store
from reportsvc.settings import Settings
from tests.helpers import running_worker, submit, wait_for_job


async def test_a_report_is_written(
    store: Store, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job_id = await submit(store)
    async with running_worker(store, settings):
        job = await wait_for_job(store, job_id)
    assert job.status == "completed"
    assert job.outline is not None
    assert len(job.outline) == 4
    assert set(job.done_sections) == set(job.outline)
