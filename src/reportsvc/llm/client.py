"""The one place that talks to the model: the official `openai` SDK's `AsyncOpenAI`.

The SDK already retries connection errors, 408/409/429 and 5xx with exponential backoff and
honours `Retry-After`; we configure it (`OPENAI_MAX_RETRIES`, `OPENAI_TIMEOUT`) rather than
wrap a second retry loop around it. What is left after its retries becomes a `StepError`
whose `retryable` flag tells the worker whether to schedule another attempt of the step.
"""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI, DefaultAioHttpClient

from reportsvc.domain import Usage
from reportsvc.errors import StepError
from reportsvc.pipeline.model import ChatReply, ChatRequest
from reportsvc.settings import Settings

# Used when OPENAI_BASE_URL points at a server that needs no key (Ollama, vLLM, the
# built-in stand-in model). The SDK refuses to start without some key.
NO_KEY = "not-needed"


def create_openai_client(settings: Settings) -> AsyncOpenAI:
    """One client per process, shared by every call (one connection pool)."""
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if api_key is None and settings.openai_base_url is None:
        raise StepError(
            "OPENAI_API_KEY is not set. Set it, or point OPENAI_BASE_URL at an "
            "OpenAI-compatible server (Ollama, vLLM, or `reportsvc fake-llm`).",
            retryable=False,
        )
    return AsyncOpenAI(
        api_key=api_key or NO_KEY,
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout,
        max_retries=settings.openai_max_retries,
        # aiohttp costs about a third of the CPU per call of the default httpx transport,
        # which matters when hundreds of section calls run at once on a small machine.
        http_client=DefaultAioHttpClient(),
    )


class OpenAIChatModel:
    """`ChatModel` over `AsyncOpenAI`."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def close(self) -> None:
        await self._client.close()

    async def chat(self, request: ChatRequest) -> ChatReply:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.response_format is not None:
            kwargs["response_format"] = request.response_format
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        try:
            completion = await self._client.chat.completions.create(**kwargs)
        except openai.APIError as exc:
            raise classify_error(exc) from exc
        if not completion.choices:
            raise StepError("the model returned no choices", retryable=True)
        choice = completion.choices[0]
        usage = completion.usage
        return ChatReply(
            content=choice.message.content or "",
            finish_reason=choice.finish_reason or "stop",
            usage=Usage(
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            ),
        )


# SDK errors that need no more words than these, and whether another attempt may help.
_KNOWN_ERRORS: tuple[tuple[type[openai.APIError], str, bool], ...] = (
    (openai.APITimeoutError, "the model did not answer in time", True),
    (openai.APIConnectionError, "could not connect to the model service", True),
    (
        openai.RateLimitError,
        "the model service is rate limiting requests (429) and retries ran out",
        True,
    ),
    (
        openai.AuthenticationError,
        "the model service rejected the API key (401); check OPENAI_API_KEY",
        False,
    ),
    (openai.PermissionDeniedError, "the API key may not use this model (403)", False),
    (
        openai.NotFoundError,
        (
            "the model service does not know this model or endpoint (404); "
            "check OPENAI_MODEL and OPENAI_BASE_URL"
        ),
        False,
    ),
)


def classify_error(exc: openai.APIError) -> StepError:
    """Turn an SDK error (after the SDK's own retries) into a message a user understands."""
    for kind, message, retryable in _KNOWN_ERRORS:
        if isinstance(exc, kind):
            return StepError(message, retryable=retryable)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _short(exc.message)
        if status >= 500 or status in (408, 409):
            return StepError(f"the model service failed ({status}): {detail}", retryable=True)
        return StepError(
            f"the model service refused the request ({status}): {detail}", retryable=False
        )
    return StepError(f"the model call failed: {_short(str(exc))}", retryable=True)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
