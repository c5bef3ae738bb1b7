"""Section generation: one plain chat completion per outline title; and the summary."""

from __future__ import annotations

from reportsvc.domain import Step, StepKind, StepResult
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatModel, ChatReply, ChatRequest
from reportsvc.pipeline.prompts import MAX_TOKENS_FACTOR, section_messages, summary_messages
from reportsvc.pipeline.text import clean_section


async def write_section(model: ChatModel, task: Step, *, max_tokens: int) -> StepResult:
    """One section; `max_tokens` is SECTION_MAX_TOKENS, scaled by the job's `detail`."""
    if task.kind is StepKind.SUMMARY:
        messages = summary_messages(task.topic, task.written, task.options)
    else:
        messages = section_messages(task.topic, task.outline, task.position, task.options)
    reply = await model.chat(
        ChatRequest(
            model=task.model,
            messages=messages,
            max_tokens=round(max_tokens * MAX_TOKENS_FACTOR[task.options.detail]),
            purpose=task.kind.value,
        )
    )
    content = clean_section(reply.content, task.title or "")
    if not content:
        raise _with_usage(
            StepError("the model returned an empty section", retryable=True, kind="malformed"),
            reply,
        )
    return StepResult(content=content, finish_reason=reply.finish_reason, usage=reply.usage)


def _with_usage(error: StepError, reply: ChatReply) -> StepError:
    error.prompt_tokens += reply.usage.prompt_tokens
    error.completion_tokens += reply.usage.completion_tokens
    return error
