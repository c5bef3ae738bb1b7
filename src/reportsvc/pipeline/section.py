"""Section generation: one plain chat completion per outline title; and the summary.

A rewrite (a step that carries the section's `previous` text) is the same call, with the
current text and the client's instruction in the request: one function writes every
section, whatever brought it to the queue.

A section answer that is not a section (nothing, the title alone, the outline repeated
back: small models do all three) is asked for once more at once, with a reminder of what
was wrong. The second answer is kept even if it is no better, unless it is empty: a third
call would most likely say the same, and the step's own retries remain for failures.
"""

from __future__ import annotations

import msgspec
import structlog

from reportsvc.domain import Step, StepKind, StepResult, Usage
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatMessage, ChatModel, ChatRequest
from reportsvc.pipeline.prompts import MAX_TOKENS_FACTOR, section_messages, summary_messages
from reportsvc.pipeline.sources import grounded_text
from reportsvc.pipeline.text import clean_section, section_problem
from reportsvc.sources import Passage

log = structlog.get_logger("reportsvc.pipeline")


async def write_section(
    model: ChatModel, task: Step, *, max_tokens: int, passages: list[Passage] | None = None
) -> StepResult:
    """One section; `max_tokens` is SECTION_MAX_TOKENS, scaled by the job's `detail`.
    `passages`: for a report with sources, those found for this section (see
    `pipeline.sources`); its citations of any other number are removed."""
    result = await _write(model, task, max_tokens=max_tokens, passages=passages)
    if passages is None or result.content is None:
        return result
    cleaned = grounded_text(result.content, passages)
    return msgspec.structs.replace(
        result,
        content=cleaned.text,
        passages_given=len(passages),
        citations_removed=cleaned.removed,
    )


async def _write(
    model: ChatModel, task: Step, *, max_tokens: int, passages: list[Passage] | None
) -> StepResult:
    limit = round(max_tokens * MAX_TOKENS_FACTOR[task.options.detail])
    if task.kind is StepKind.SUMMARY:
        messages = summary_messages(task.topic, task.written, task.options)
        reply = await model.chat(_request(task, messages, limit))
        content = clean_section(reply.content, task.title or "")
        if not content:
            raise _empty(reply.usage)
        return StepResult(content=content, finish_reason=reply.finish_reason, usage=reply.usage)

    messages = section_messages(
        task.topic,
        task.outline,
        task.position,
        task.options,
        previous=task.previous,
        instruction=task.instruction,
        passages=passages,
    )
    reply = await model.chat(_request(task, messages, limit))
    content = clean_section(reply.content, task.title or "")
    problem = section_problem(reply.content, task.title or "", task.outline)
    if problem is None:
        return StepResult(content=content, finish_reason=reply.finish_reason, usage=reply.usage)

    log.warning("the answer was not a section; asking once more", problem=problem, **_ids(task))
    reminded = section_messages(
        task.topic,
        task.outline,
        task.position,
        task.options,
        reminder=problem,
        previous=task.previous,
        instruction=task.instruction,
        passages=passages,
    )
    try:
        again = await model.chat(_request(task, reminded, limit))
    except StepError as exc:
        exc.prompt_tokens += reply.usage.prompt_tokens
        exc.completion_tokens += reply.usage.completion_tokens
        raise
    usage = reply.usage + again.usage
    second = clean_section(again.content, task.title or "")
    if not second:
        raise _empty(usage)
    still = section_problem(again.content, task.title or "", task.outline)
    if still is not None:
        log.warning("accepting an answer that still looks wrong", problem=still, **_ids(task))
    return StepResult(content=second, finish_reason=again.finish_reason, usage=usage)


def _request(task: Step, messages: list[ChatMessage], max_tokens: int) -> ChatRequest:
    return ChatRequest(
        model=task.model, messages=messages, max_tokens=max_tokens, purpose=task.kind.value
    )


def _empty(usage: Usage) -> StepError:
    return StepError(
        "the model returned an empty section",
        retryable=True,
        kind="malformed",
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )


def _ids(task: Step) -> dict[str, object]:
    return {"job_id": str(task.job_id), "position": task.position, "attempt": task.attempt}
