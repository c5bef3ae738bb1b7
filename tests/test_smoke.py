from __future__ import annotations

from reportsvc.llm.fake import FakeLLMThread
from reportsvc.settings import Settings
from tests.helpers import Stores, running_worker, submit, wait_for_job


async def test_a_report_is_written(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job_id = await submit(stores)
    async with running_worker(stores, settings):
        job = await wait_for_job(stores, job_id)
    assert job.status == "completed"
    assert job.outline is not None
    assert len(job.outline) == 4
    assert set(job.done_sections) == set(job.outline)
