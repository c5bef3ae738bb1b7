"""The one place that talks to the model: the official `openai` SDK's `AsyncOpenAI`.

The SDK already retries connection errors, 408/409 and 5xx with exponential backoff; we
configure it (`OPENAI_MAX_RETRIES`, `OPENAI_TIMEOUT`) rather than wrap a second retry loop
around it. 429s are the exception: each call first takes its share of the model's quota,
shared by every worker (a `RateGate`), and a 429 pauses the model for all of them instead
of being retried by the SDK. What is left after its retries becomes a `StepError` whose
`retryable` flag tells the worker whether to schedule another attempt of the step.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Final

import httpx2
import msgspec
import openai
import structlog
from openai import AsyncOpenAI, DefaultAioHttpClient

from reportsvc.domain import Usage
from reportsvc.errors import StepError
from reportsvc.metrics import (
    MODEL_CALL_ERRORS,
    MODEL_CALL_SECONDS,
    MODEL_RATE_LIMITED,
    MODEL_TOKENS,
    QUOTA_WAIT_SECONDS,
)
from reportsvc.pipeline.model import ChatReply, ChatRequest
from reportsvc.quota import (
    Grant,
    RateGate,
    Unlimited,
    estimate_prompt_tokens,
    rate_limits,
    retry_after,
)
from reportsvc.settings import Settings

log = structlog.get_logger("reportsvc.llm")

# Used when OPENAI_BASE_URL points at a server that needs no key (Ollama, vLLM, the
# built-in stand-in model). The SDK refuses to start without some key.
NO_KEY = "not-needed"


# Tokens booked for an answer when a request sets no max_tokens.
COMPLETION_BOOKING: Final = 1024
# How long the cluster leaves a model alone after a 429 that does not say.
DEFAULT_PAUSE_SECONDS: Final = 1.0


class QuotaAwareOpenAI(AsyncOpenAI):
    """The SDK's client, but a 429 is not retried inside the call: the shared quota
    (`RateGate`) pauses the model for every worker instead, so retries do not multiply
    429s (each of which a provider counts against the limit). Every other retry (408,
    409, 5xx, connection errors) stays the SDK's."""

    def _should_retry(self, response: httpx2.Response) -> bool:
        return response.status_code != 429 and super()._should_retry(response)


def create_openai_client(settings: Settings) -> AsyncOpenAI:
    """One client per process, shared by every call (one connection pool)."""
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if api_key is None and settings.openai_base_url is None:
        raise StepError(
            "OPENAI_API_KEY is not set. Set it, or point OPENAI_BASE_URL at an "
            "OpenAI-compatible server (Ollama, vLLM, or `reportsvc fake-llm`).",
            retryable=False,
        )
    return QuotaAwareOpenAI(
        api_key=api_key or NO_KEY,
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout,
        max_retries=settings.openai_max_retries,
        # aiohttp costs about a third of the CPU per call of the default httpx transport,
        # which matters when hundreds of section calls run at once on a small machine.
        http_client=DefaultAioHttpClient(),
    )


class _Message(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    """The parts of a chat completion we read; the rest of the answer is ignored."""

    choices: list[_Choice]
    usage: _Usage | None = None


class OpenAIChatModel:
    """`ChatModel` over `AsyncOpenAI`.

    Calls go through the client's generic `post` (the SDK's documented way to send a request
    body as given) rather than `chat.completions.create`: the SDK still provides the
    connection pool, authentication, timeouts, retries with `Retry-After` and its error
    classes, but skips re-validating our already-typed request against its TypedDicts and
    building pydantic models for the answer, which msgspec decodes. Measured on this
    machine with 400 concurrent calls: 0.56 ms CPU per call instead of 1.4 ms
    (DEVLOG.md, "The model client").
    """

    def __init__(self, client: AsyncOpenAI, gate: RateGate | None = None) -> None:
        self._client = client
        self._gate = gate or Unlimited()

    async def close(self) -> None:
        await self._gate.close()
        await self._client.close()

    @property
    def server(self) -> str:
        """The base URL calls go to."""
        return str(self._client.base_url)

    async def chat(self, request: ChatRequest) -> ChatReply:
        """One call, sent when the model's shared quota has a share for it (`RateGate`);
        `QuotaExhausted` when it will not have one soon."""
        prompt = estimate_prompt_tokens([m.content for m in request.messages])
        grant = await self._gate.acquire(request.model, prompt + _booked_completion(request))
        if grant.wait > 0:
            QUOTA_WAIT_SECONDS.labels(request.model).observe(grant.wait)
            await asyncio.sleep(grant.wait)
        started = time.perf_counter()
        try:
            reply = await self._chat(request, grant)
        except StepError as exc:
            MODEL_CALL_ERRORS.labels(request.purpose, exc.kind).inc()
            # The service's own words are for operators only: the message a client reads
            # names the kind of failure, the detail says what the service said.
            log.warning(
                "model call failed",
                purpose=request.purpose,
                model=request.model,
                kind=exc.kind,
                status=exc.status,
                error=exc.message,
                detail=exc.detail,
            )
            raise
        finally:
            MODEL_CALL_SECONDS.labels(request.purpose).observe(time.perf_counter() - started)
        MODEL_TOKENS.labels(request.model, "prompt").inc(reply.usage.prompt_tokens)
        MODEL_TOKENS.labels(request.model, "completion").inc(reply.usage.completion_tokens)
        return reply

    async def _chat(self, request: ChatRequest, grant: Grant) -> ChatReply:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.temperature is not None:
            body["temperature"] = request.temperature
        try:
            response = await self._client.post(
                "/chat/completions", cast_to=httpx2.Response, body=body
            )
        except openai.RateLimitError as exc:
            raise await self._rate_limited(request, exc) from exc
        except openai.APIError as exc:
            # The call is over: what the provider said about its limits still counts, and
            # a call learning a model's limits must let the next one try.
            headers = exc.response.headers if isinstance(exc, openai.APIStatusError) else {}
            await self._gate.settle(request.model, grant, grant.tokens, rate_limits(headers))
            raise classify_error(exc, structured=request.response_format is not None) from exc
        try:
            completion = _decode(response.content)
        except msgspec.DecodeError as exc:
            raise StepError(
                "the model service sent an answer that is not a chat completion",
                retryable=True,
                kind="malformed",
                detail=str(exc),
            ) from None
        if not completion.choices:
            raise StepError("the model returned no choices", retryable=True, kind="malformed")
        choice = completion.choices[0]
        if choice.message.refusal:
            raise StepError(
                "the model refused to answer",
                retryable=False,
                kind="rejected",
                detail=choice.message.refusal,
            )
        usage = completion.usage or _Usage()
        # What the provider counts against its token limit: the prompt, and max_tokens
        # when the request set it (providers book it when the call arrives).
        counted = usage.prompt_tokens + (request.max_tokens or usage.completion_tokens)
        await self._gate.settle(request.model, grant, counted, rate_limits(response.headers))
        return ChatReply(
            content=choice.message.content or "",
            finish_reason=choice.finish_reason or "stop",
            usage=Usage(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
            ),
        )

    async def _rate_limited(self, request: ChatRequest, exc: openai.RateLimitError) -> StepError:
        """A 429: every worker leaves the model alone until the provider says; this step
        tries again then (the attempt counts: the call was made)."""
        headers = exc.response.headers
        limits = rate_limits(headers)
        asked = retry_after(headers)
        if asked is None:
            asked = limits.spent_until
        pause = await self._gate.rate_limited(
            request.model, DEFAULT_PAUSE_SECONDS if asked is None else asked, limits
        )
        MODEL_RATE_LIMITED.labels(request.model).inc()
        return StepError(
            "the model service is rate limiting requests (429)",
            retryable=True,
            kind="rate_limited",
            status=429,
            detail=_short_detail(exc),
            not_before=pause,
        )


def _booked_completion(request: ChatRequest) -> int:
    return request.max_tokens or COMPLETION_BOOKING


def _short_detail(exc: openai.APIError) -> str:
    return " ".join(str(exc).split())[:500]


_decode = msgspec.json.Decoder(_Completion).decode


# SDK errors that need no more words than these: kind (for metrics), message, retryable.
_KNOWN_ERRORS: tuple[tuple[type[openai.APIError], str, str, bool], ...] = (
    (openai.APITimeoutError, "timeout", "the model did not answer in time", True),
    (openai.APIConnectionError, "connection", "could not connect to the model service", True),
    (
        openai.RateLimitError,
        "rate_limited",
        "the model service is rate limiting requests (429) and retries ran out",
        True,
    ),
    (
        openai.AuthenticationError,
        "rejected",
        "the model service rejected the API key (401); check OPENAI_API_KEY",
        False,
    ),
    (openai.PermissionDeniedError, "rejected", "the API key may not use this model (403)", False),
    (
        openai.NotFoundError,
        "rejected",
        (
            "the model service does not know this model or endpoint (404); "
            "check OPENAI_MODEL and OPENAI_BASE_URL"
        ),
        False,
    ),
)


# How servers word a refusal of `response_format`: OpenAI and LM Studio name the field,
# vLLM's and llama-cpp-python's request validation name its path, llama.cpp's server says
# "response_format type must be one of ...". Statuses differ (README, "Model servers").
_FORMAT_REFUSAL: Final = re.compile(
    r"response[_ .]?format|json[_ ]schema|json[_ ]object", re.IGNORECASE
)
_FORMAT_REFUSAL_STATUSES: Final = frozenset({400, 422, 500})


def classify_error(exc: openai.APIError, *, structured: bool = False) -> StepError:
    """Turn an SDK error (after the SDK's own retries) into a message a user understands.

    `structured` says the request carried a `response_format`: a 400, 422 or 500 whose text
    names it is then a refusal of that format (kind `format_refused`), which the outline
    writer answers by asking in a simpler one. Only the kind of failure goes into the
    message; what the service said goes into the error's `detail`.
    """
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    detail = _service_words(exc)
    for error_type, kind, message, retryable in _KNOWN_ERRORS:
        if isinstance(exc, error_type):
            return StepError(message, retryable=retryable, kind=kind, status=status, detail=detail)
    if status is None:
        return StepError("the model call failed", retryable=True, detail=str(exc))
    if structured and status in _FORMAT_REFUSAL_STATUSES and _FORMAT_REFUSAL.search(detail):
        return StepError(
            f"the model service refused the requested response format ({status})",
            retryable=False,
            kind="format_refused",
            status=status,
            detail=detail,
        )
    if status >= 500 or status in (408, 409):
        return StepError(
            f"the model service failed ({status})",
            retryable=True,
            kind="server_error",
            status=status,
            detail=detail,
        )
    return StepError(
        f"the model service refused the request ({status})",
        retryable=False,
        kind="rejected",
        status=status,
        detail=detail,
    )


def _service_words(exc: openai.APIError) -> str:
    """What the service said. The SDK's message holds only an error object's `message`;
    LM Studio's error is a bare string and some proxies answer plain text, which the SDK
    keeps in `body` alone."""
    body = exc.body
    if body is None or (isinstance(body, dict) and isinstance(body.get("message"), str)):
        return exc.message
    said = body if isinstance(body, str) else json.dumps(body, default=str)
    return f"{exc.message} - {said}"
