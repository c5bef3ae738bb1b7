"""Section generation: one plain chat completion per outline title; and the summary.

A section answer that is not a section (nothing, the title alone, the outline repeated
back: small models do all three) is asked for once more at once, with a reminder of what
was wrong. The second answer is kept even if it is no better, unless it is empty: a third
call would most likely say the same, and the step's own retries remain for failures.
"""

from __future__ import annotations

import structlog

from reportsvc.domain import SectionResult, SectionTask, Usage
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatMessage, ChatModel, ChatRequest
from reportsvc.pipeline.prompts import MAX_TOKENS_FACTOR, section_messages, summary_messages
from reportsvc.pipeline.text import clean_section, section_problem

log = structlog.get_logger("reportsvc.pipeline")


async def write_section(model: ChatModel, task: SectionTask, *, max_tokens: int) -> SectionResult:
    """One section; `max_tokens` is SECTION_MAX_TOKENS, scaled by the job's `detail`."""
    limit = round(max_tokens * MAX_TOKENS_FACTOR[task.options.detail])
    if task.kind == "summary":
        messages = summary_messages(task.topic, task.written, task.options)
        reply = await model.chat(_request(task, messages, limit))
        content = clean_section(reply.content, task.title)
        if not content:
            raise _empty(reply.usage)
        return SectionResult(content=content, finish_reason=reply.finish_reason, usage=reply.usage)

    messages = section_messages(task.topic, task.outline, task.position, task.options)
    reply = await model.chat(_request(task, messages, limit))
    content = clean_section(reply.content, task.title)
    problem = section_problem(reply.content, task.title, task.outline)
    if problem is None:
        return SectionResult(content=content, finish_reason=reply.finish_reason, usage=reply.usage)

    log.warning("the answer was not a section; asking once more", problem=problem, **_ids(task))
    reminded = section_messages(
        task.topic, task.outline, task.position, task.options, reminder=problem
    )
    try:
        again = await model.chat(_request(task, reminded, limit))
    except StepError as exc:
        exc.prompt_tokens += reply.usage.prompt_tokens
        exc.completion_tokens += reply.usage.completion_tokens
        raise
    usage = _sum(reply.usage, again.usage)
    second = clean_section(again.content, task.title)
    if not second:
        raise _empty(usage)
    still = section_problem(again.content, task.title, task.outline)
    if still is not None:
        log.warning("accepting an answer that still looks wrong", problem=still, **_ids(task))
    return SectionResult(content=second, finish_reason=again.finish_reason, usage=usage)


def _request(task: SectionTask, messages: list[ChatMessage], max_tokens: int) -> ChatRequest:
    return ChatRequest(
        model=task.model, messages=messages, max_tokens=max_tokens, purpose=task.kind
    )


def _empty(usage: Usage) -> StepError:
    return StepError(
        "the model returned an empty section",
        retryable=True,
        kind="malformed",
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


def _sum(first: Usage, second: Usage) -> Usage:
    return Usage(
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
    )


def _ids(task: SectionTask) -> dict[str, object]:
    return {"job_id": str(task.job_id), "position": task.position, "attempt": task.attempt}
