"""Section generation: one plain chat completion per outline title."""

from __future__ import annotations

from reportsvc.domain import SectionResult, SectionTask
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatModel, ChatRequest
from reportsvc.pipeline.prompts import section_messages
from reportsvc.pipeline.text import clean_section


async def write_section(model: ChatModel, task: SectionTask, *, max_tokens: int) -> SectionResult:
    reply = await model.chat(
        ChatRequest(
            model=task.model,
            messages=section_messages(task.topic, task.outline, task.position, task.options),
            max_tokens=max_tokens,
            purpose="section",
        )
    )
    content = clean_section(reply.content, task.title)
    if not content:
        raise StepError("the model returned an empty section", retryable=True, kind="malformed")
    return SectionResult(content=content, finish_reason=reply.finish_reason, usage=reply.usage)
