"""The report pipeline as a `StepRunner`: what a worker runs for each claimed step. The one
place where the kind of a step decides what is done (a webhook delivery is handed to the
runner given as `deliveries`, which the worker's wiring provides)."""

from __future__ import annotations

import msgspec

from reportsvc.domain import Step, StepKind, StepResult, StepRunner
from reportsvc.pipeline.model import ChatModel
from reportsvc.pipeline.outline import OutlineSetting, OutlineWriter
from reportsvc.pipeline.section import write_section
from reportsvc.pipeline.sources import grounded_summary, section_passages
from reportsvc.sources import PassageIndex


class ReportPipeline:
    def __init__(
        self,
        model: ChatModel,
        *,
        max_title_length: int,
        section_max_tokens: int,
        outline_format: OutlineSetting = "auto",
        max_attempts: int = 5,
        deliveries: StepRunner | None = None,
        passages: PassageIndex | None = None,
        passages_per_section: int = 4,
    ) -> None:
        self._model = model
        self._deliveries = deliveries
        self._passages = passages
        self._passages_per_section = passages_per_section
        self._section_max_tokens = section_max_tokens
        self.outlines = OutlineWriter(
            model, fmt=outline_format, max_title_length=max_title_length, max_attempts=max_attempts
        )

    async def run(self, step: Step) -> StepResult:
        match step.kind:
            case StepKind.OUTLINE:
                return await self.outline(step)
            case StepKind.SECTION | StepKind.SUMMARY:
                return await self.section(step)
            case StepKind.WEBHOOK:
                if self._deliveries is None:
                    raise RuntimeError("this worker was built without a webhook sender")
                return await self._deliveries.run(step)

    async def outline(self, step: Step) -> StepResult:
        """The outline; a report with sources shows the model an overview of them."""
        if not step.options.sources:
            return await self.outlines.write(step)
        return await self.outlines.write(step, await self._index().overview(step.job_id))

    async def section(self, step: Step) -> StepResult:
        """A section, or the summary (written from the finished sections). A section of a
        report with sources carries the passages found for it."""
        passages = None
        if step.kind is StepKind.SECTION and step.options.sources:
            passages = await section_passages(self._index(), step, limit=self._passages_per_section)
        result = await write_section(
            self._model, step, max_tokens=self._section_max_tokens, passages=passages
        )
        if step.kind is StepKind.SUMMARY and step.options.sources and result.content:
            cleaned = grounded_summary(result.content, step.written)
            result = msgspec.structs.replace(
                result, content=cleaned.text, citations_removed=cleaned.removed
            )
        return result

    def _index(self) -> PassageIndex:
        if self._passages is None:
            raise RuntimeError("this worker was built without a passage index")
        return self._passages
