"""What the pipeline needs from a language model, independent of any SDK.

`reportsvc.llm.client.OpenAIChatModel` implements `ChatModel` with the official SDK; the
pipeline only sees these types, so it can be read (and tested) without the network layer.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from reportsvc.domain import Usage


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str


class ChatRequest(msgspec.Struct, frozen=True):
    model: str
    messages: list[ChatMessage]
    # What the call is for (outline, section, ...): labels its metrics.
    purpose: str = "other"
    max_tokens: int | None = None
    # An OpenAI `response_format` object, passed through as given.
    response_format: dict[str, Any] | None = None
    temperature: float | None = None


class ChatReply(msgspec.Struct, frozen=True):
    content: str
    finish_reason: str
    usage: Usage


class ChatModel(Protocol):
    @property
    def server(self) -> str:
        """Where the model is served (its base URL): what a server accepts is remembered
        per server and model."""
        ...

    async def chat(self, request: ChatRequest) -> ChatReply:
        """Send one chat completion; raise `StepError` on failure."""
        ...
