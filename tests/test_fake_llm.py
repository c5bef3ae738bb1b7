"""The stand-in model speaks OpenAI's wire format to the official SDK, and misbehaves on cue."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from reportsvc.llm.fake import PLACEHOLDER_NOTICE, FakeConfig, FakeLLMThread, Faults
from reportsvc.pipeline.prompts import OUTLINE_JSON_SCHEMA

REQUEST = 'Report topic: "Rome"\n\nWrite section 1 of 3: "I. A"'


def sdk(fake: FakeLLMThread, retries: int = 0, timeout: float = 5.0) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="x", base_url=fake.base_url, max_retries=retries, timeout=timeout)


async def test_structured_outline_and_plain_section(fake_llm: FakeLLMThread) -> None:
    client = sdk(fake_llm)
    outline = await client.chat.completions.create(  # type: ignore[call-overload]
        model="m",
        messages=[
            {"role": "system", "content": "Produce exactly 3 sections."},
            {"role": "user", "content": 'Topic: "Rome"'},
        ],
        response_format=OUTLINE_JSON_SCHEMA,
    )
    assert outline.choices[0].message.content is not None
    assert '"sections"' in outline.choices[0].message.content
    assert outline.usage is not None
    assert outline.usage.total_tokens > 0
    section = await client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": 'Report topic: "Rome"\n\nWrite section 1 of 3: "I. A"'}
        ],
    )
    assert section.choices[0].message.content is not None
    assert section.choices[0].message.content.startswith(PLACEHOLDER_NOTICE)
    assert fake_llm.stats().calls == {"outline": 1, "section": 1}
    await client.close()


async def test_429_with_retry_after_is_honoured_by_the_sdk(fake_llm: FakeLLMThread) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(fail_first=1, error_status=429, retry_after=0.3)))
    client = sdk(fake_llm, retries=2)
    started = time.monotonic()
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started >= 0.3
    assert fake_llm.stats().statuses == {"429": 1, "200": 1}
    await client.close()


async def test_500_then_hang(fake_llm: FakeLLMThread) -> None:
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0)))
    client = sdk(fake_llm)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    await client.close()
    fake_llm.configure(FakeConfig(outline=Faults(hang_rate=1.0, hang_seconds=1)))
    client = sdk(fake_llm, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    await client.close()


async def test_control_endpoints(fake_llm: FakeLLMThread) -> None:
    async with httpx.AsyncClient(base_url=fake_llm.base_url.removesuffix("/v1")) as http:
        response = await http.put("/fake/config", json={"section": {"latency": 0.01}})
        assert response.status_code == 200
        assert response.json()["section"]["latency"] == 0.01
        assert (await http.put("/fake/config", json={"section": 3})).status_code == 400
        assert (await http.get("/fake/stats")).json()["calls"] == {}
        assert (await http.post("/fake/reset")).status_code == 200
