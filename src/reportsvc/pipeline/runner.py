"""The report pipeline as a `StepRunner`: what a worker runs for each claimed step."""

from __future__ import annotations

from reportsvc.domain import OutlineResult, OutlineTask, SectionResult, SectionTask
from reportsvc.pipeline.model import ChatModel
from reportsvc.pipeline.outline import write_outline
from reportsvc.pipeline.section import write_section


class ReportPipeline:
    def __init__(self, model: ChatModel, *, max_title_length: int, section_max_tokens: int) -> None:
        self._model = model
        self._max_title_length = max_title_length
        self._section_max_tokens = section_max_tokens

    async def outline(self, task: OutlineTask) -> OutlineResult:
        return await write_outline(self._model, task, max_title_length=self._max_title_length)

    async def section(self, task: SectionTask) -> SectionResult:
        return await write_section(self._model, task, max_tokens=self._section_max_tokens)
