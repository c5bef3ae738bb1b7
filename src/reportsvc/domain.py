"""The work a worker does, as plain values shared by the queue and the pipeline.

A job has one outline step and, once the outline exists, one section step per outline
title (and, when asked for, a summary step once the sections are written). The queue hands
out `OutlineTask`s and `SectionTask`s; a `StepRunner` turns them into `OutlineResult`s and
`SectionResult`s. Nothing here knows about SQL or HTTP.
"""

from __future__ import annotations

from typing import Literal, Protocol
from uuid import UUID

import msgspec

Detail = Literal["brief", "standard", "deep"]


class JobOptions(msgspec.Struct, frozen=True, omit_defaults=True):
    """Per-job choices, stored with the job (jobs.options) and echoed by the API."""

    sections: int
    detail: Detail = "standard"
    language: str | None = None
    # A final pass writes a short summary from the finished sections (SUMMARY_PASS).
    summary: bool = False


class Usage(msgspec.Struct, frozen=True):
    """Tokens a model call consumed, as the model service reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class OutlineTask(msgspec.Struct, frozen=True):
    job_id: UUID
    attempt: int
    topic: str
    model: str
    options: JobOptions


class SectionTask(msgspec.Struct, frozen=True):
    section_id: int
    job_id: UUID
    attempt: int
    position: int
    title: str
    topic: str
    model: str
    options: JobOptions
    outline: list[str]
    # "section", or "summary": then `written` holds the finished sections, title -> text.
    kind: str = "section"
    written: dict[str, str] = msgspec.field(default_factory=dict)


Task = OutlineTask | SectionTask


class OutlineResult(msgspec.Struct, frozen=True):
    titles: list[str]
    usage: Usage = Usage()


class SectionResult(msgspec.Struct, frozen=True):
    content: str
    finish_reason: str = "stop"
    usage: Usage = Usage()


class StepRunner(Protocol):
    """Does the work of one step. Raises `StepError` when it cannot."""

    async def outline(self, task: OutlineTask) -> OutlineResult: ...

    async def section(self, task: SectionTask) -> SectionResult: ...
