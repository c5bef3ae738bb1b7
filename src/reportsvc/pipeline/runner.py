"""The report pipeline as a `StepRunner`: what a worker runs for each claimed step."""

from __future__ import annotations

from reportsvc.domain import OutlineResult, OutlineTask, SectionResult, SectionTask
from reportsvc.pipeline.model import ChatModel
from reportsvc.pipeline.outline import OutlineSetting, OutlineWriter
from reportsvc.pipeline.section import write_section


class ReportPipeline:
    def __init__(
        self,
        model: ChatModel,
        *,
        max_title_length: int,
        section_max_tokens: int,
        outline_format: OutlineSetting = "auto",
        max_attempts: int = 5,
    ) -> None:
        self._model = model
        self._section_max_tokens = section_max_tokens
        self.outlines = OutlineWriter(
            model, fmt=outline_format, max_title_length=max_title_length, max_attempts=max_attempts
        )

    async def outline(self, task: OutlineTask) -> OutlineResult:
        return await self.outlines.write(task)

    async def section(self, task: SectionTask) -> SectionResult:
        return await write_section(self._model, task, max_tokens=self._section_max_tokens)
