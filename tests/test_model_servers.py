"""The model servers people run: how each answers response_format, and what we do about it.

The stand-in model copies each server's handling of response_format (README, "Model
servers"); llama-cpp-python's real server is exercised in test_llama_cpp.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, get_args
from uuid import UUID

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from reportsvc.domain import JobOptions
from reportsvc.errors import DETAIL_LIMIT, StepError
from reportsvc.llm.client import OpenAIChatModel, create_openai_client
from reportsvc.llm.fake import (
    PLACEHOLDER_NOTICE,
    SERVER_PATH,
    FakeConfig,
    FakeLLMThread,
    Faults,
    Server,
)
from reportsvc.pipeline.model import ChatMessage, ChatRequest
from reportsvc.pipeline.outline import outline_max_tokens
from reportsvc.pipeline.prompts import OutlineFormat, outline_messages, outline_response_format
from reportsvc.settings import Settings
from tests.conftest import api_client
from tests.helpers import Stores, run_report, running_worker, wait_for_job

Client = httpx.AsyncClient
FORMATS: tuple[OutlineFormat, ...] = get_args(OutlineFormat)

# What each server does with each outline format: "ok", or the status of its refusal.
ANSWERS: dict[Server, dict[OutlineFormat, Literal["ok", 400, 500]]] = {
    "openai": dict.fromkeys(FORMATS, "ok"),
    "ollama": dict.fromkeys(FORMATS, "ok"),
    "vllm": dict.fromkeys(FORMATS, "ok"),
    "vllm-0.5": {**dict.fromkeys(FORMATS, "ok"), "json_schema": 400, "json_object_schema": 400},
    "llama.cpp": dict.fromkeys(FORMATS, "ok"),
    "llama-cpp-python": {**dict.fromkeys(FORMATS, "ok"), "json_schema": 500},
    "lm-studio": {**dict.fromkeys(FORMATS, "ok"), "json_object_schema": 400, "json_object": 400},
}
# The format OUTLINE_FORMAT=auto ends up with, and the outline calls it takes to get there.
SETTLES_ON: dict[Server, tuple[OutlineFormat, int]] = {
    "openai": ("json_schema", 1),
    "ollama": ("json_schema", 1),
    "vllm": ("json_schema", 1),
    "vllm-0.5": ("json_object", 3),
    "llama.cpp": ("json_schema", 1),
    "llama-cpp-python": ("json_object_schema", 2),
    "lm-studio": ("json_schema", 1),
}
# Words of the servers' own refusals that must never reach an API client.
UPSTREAM_WORDS = (SERVER_PATH, "literal_error", "Input should be", "Error code", "must be")


def wire_type(fmt: OutlineFormat) -> str | None:
    return {"text": None, "json_object_schema": "json_object"}.get(fmt, fmt)


@pytest.fixture
async def model(settings: Settings) -> AsyncIterator[OpenAIChatModel]:
    chat_model = OpenAIChatModel(create_openai_client(settings))
    yield chat_model
    await chat_model.close()


def outline_request(fmt: OutlineFormat, model: str = "m") -> ChatRequest:
    options = JobOptions(sections=3)
    return ChatRequest(
        model=model,
        messages=outline_messages("Tides", options, fmt),
        response_format=outline_response_format(fmt, sections=3, max_title_length=120),
        purpose="outline",
    )


@pytest.mark.parametrize("server", list(ANSWERS))
async def test_each_server_takes_or_refuses_each_format_as_documented(
    fake_llm: FakeLLMThread, model: OpenAIChatModel, server: Server
) -> None:
    fake_llm.configure(FakeConfig(server=server))
    for fmt, expected in ANSWERS[server].items():
        if expected == "ok":
            reply = await model.chat(outline_request(fmt))
            assert reply.content, (server, fmt)
            continue
        with pytest.raises(StepError) as refused:
            await model.chat(outline_request(fmt))
        error = refused.value
        assert (error.kind, error.status, error.retryable) == ("format_refused", expected, False)
        assert error.message == (
            f"the model service refused the requested response format ({expected})"
        )
        assert error.detail is not None
        assert "response_format" in error.detail


async def test_a_refusal_keeps_the_services_words_out_of_the_message_and_logs_them(
    fake_llm: FakeLLMThread, model: OpenAIChatModel
) -> None:
    fake_llm.configure(FakeConfig(server="llama-cpp-python"))
    with capture_logs() as logs, pytest.raises(StepError) as refused:
        await model.chat(outline_request("json_schema"))
    error = refused.value
    for words in UPSTREAM_WORDS:
        assert words not in error.message
    assert error.detail is not None
    assert SERVER_PATH in error.detail
    assert len(error.detail) <= DETAIL_LIMIT
    [logged] = [entry for entry in logs if entry["event"] == "model call failed"]
    assert logged["log_level"] == "warning"
    assert logged["detail"] == error.detail
    assert logged["kind"] == "format_refused"


async def test_other_failures_are_named_by_kind_only(
    fake_llm: FakeLLMThread, model: OpenAIChatModel
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(error_rate=1.0, error_status=503)))
    request = ChatRequest(model="m", messages=[ChatMessage("user", 'Write section 1 of 1: "A"')])
    with pytest.raises(StepError) as failed:
        await model.chat(request)
    assert failed.value.message == "the model service failed (503)"
    assert failed.value.retryable
    assert failed.value.detail is not None
    assert "injected failure" in failed.value.detail
    # A 500 that names no response_format is not taken for a refusal of one.
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0, error_status=500)))
    with pytest.raises(StepError) as server_error:
        await model.chat(outline_request("json_schema"))
    assert server_error.value.kind == "server_error"
    fake_llm.configure(FakeConfig(outline=Faults(error_rate=1.0, error_status=422)))
    with pytest.raises(StepError) as rejected:
        await model.chat(outline_request("json_schema"))
    assert rejected.value.message == "the model service refused the request (422)"
    assert not rejected.value.retryable


@pytest.mark.parametrize("server", list(SETTLES_ON))
async def test_auto_settles_on_the_strictest_format_each_server_takes(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread, server: Server
) -> None:
    fake_llm.configure(FakeConfig(server=server))
    job = await run_report(client, stores, settings, {"topic": "Tides", "sections": 3})
    assert job["status"] == "completed"
    assert len(job["report"]["outline"]) == 3
    fmt, calls = SETTLES_ON[server]
    stats = fake_llm.stats()
    assert stats.calls["outline"] == calls
    sent = stats.last_requests["outline"].get("response_format") or {}
    assert sent.get("type") == wire_type(fmt)
    if fmt == "json_object_schema":
        # llama.cpp's form holds the model to exactly the titles asked for.
        titles = sent["schema"]["properties"]["sections"]
        assert (titles["minItems"], titles["maxItems"]) == (3, 3)
        assert titles["items"]["maxLength"] == settings.max_title_length


async def test_what_worked_is_remembered_per_server_and_model(
    stores: Stores, settings: Settings, fake_llm: FakeLLMThread, pool: asyncpg.Pool
) -> None:
    fake_llm.configure(FakeConfig(server="llama-cpp-python"))
    settings = settings.model_copy(update={"openai_allowed_models": ["other-model"]})
    async with api_client(settings, pool) as api:
        first = await run_report(api, stores, settings, {"topic": "Tides", "sections": 2})
        assert fake_llm.stats().calls["outline"] == 2  # refused, then json_object + schema
        # run_report starts a new worker (a new process's memory) for each job; one worker
        # is needed to show the memory, so both jobs go to one.
        fake_llm.reset()
        ids = [
            (await api.post("/reports", json=body)).json()["jobId"]
            for body in (
                {"topic": "Waves", "sections": 2},
                {"topic": "Currents", "sections": 2},
            )
        ]
        async with running_worker(stores, settings, concurrency=1):
            for job_id in ids:
                await wait_for_job(stores, UUID(job_id))
            assert fake_llm.stats().calls["outline"] == 3  # one refusal, then remembered
            other = (
                await api.post(
                    "/reports", json={"topic": "Eddies", "sections": 2, "model": "other-model"}
                )
            ).json()["jobId"]
            await wait_for_job(stores, UUID(other))
    assert first["status"] == "completed"
    stats = fake_llm.stats()
    # Another model on the same server is asked from the top again.
    assert stats.calls["outline"] == 5
    assert stats.statuses["500"] == 2


@pytest.mark.parametrize(
    ("server", "pinned", "status"),
    [("llama-cpp-python", "json_schema", 500), ("lm-studio", "json_object", 400)],
)
async def test_a_pinned_format_the_server_refuses_fails_the_job_in_plain_words(
    client: Client,
    stores: Stores,
    settings: Settings,
    fake_llm: FakeLLMThread,
    server: Server,
    pinned: OutlineFormat,
    status: int,
    pool: asyncpg.Pool,
) -> None:
    fake_llm.configure(FakeConfig(server=server))
    pinned_settings = settings.model_copy(update={"outline_format": pinned})
    job = await run_report(client, stores, pinned_settings, {"topic": "Tides", "sections": 2})
    assert job["status"] == "failed"
    assert job["error"] == (
        "The outline could not be written after 1 attempt: "
        f"the model service refused the requested response format ({status})"
    )
    for words in UPSTREAM_WORDS:
        assert words not in job["error"]
    assert fake_llm.stats().calls["outline"] == 1  # not retryable: asked once
    # What the server said is kept for operators, on the step, in psql.
    last_error = await pool.fetchval(
        "SELECT last_error FROM steps WHERE job_id = $1 AND kind = 'outline'",
        UUID(job["jobId"]),
    )
    assert "response_format" in last_error


async def test_the_outline_call_is_bounded_and_the_prompt_fits_the_format(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    job = await run_report(client, stores, settings, {"topic": "Tides", "sections": 4})
    assert job["status"] == "completed"
    sent = fake_llm.stats().last_requests["outline"]
    assert sent["max_tokens"] == outline_max_tokens(4, settings.max_title_length)
    system = sent["messages"][0]["content"]
    assert "JSON only" in system
    assert "first title" not in system
    text_settings = settings.model_copy(update={"outline_format": "text"})
    job = await run_report(client, stores, text_settings, {"topic": "Tides", "sections": 4})
    assert job["status"] == "completed"
    sent = fake_llm.stats().last_requests["outline"]
    assert "response_format" not in sent
    assert "JSON" not in sent["messages"][0]["content"]
    assert "one per line" in sent["messages"][0]["content"]


async def test_placeholder_titles_and_the_bare_topic_are_refused(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    titles = ["first title", "Title 2", "The Tides", ", ", "Spring and Neap Tides", "Tidal Power"]
    fake_llm.configure(FakeConfig(outline_titles=titles))
    job = await run_report(client, stores, settings, {"topic": "Tides", "sections": 2})
    assert job["report"]["outline"] == ["I. Spring and Neap Tides", "II. Tidal Power"]
    assert "outlineShortfall" not in job


async def test_a_short_outline_is_reported_as_a_shortfall(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(outline_titles=["Second title", "Tidal Power"]))
    job = await run_report(client, stores, settings, {"topic": "Tides", "sections": 3})
    assert job["status"] == "completed"
    assert job["report"]["outline"] == ["I. Tidal Power"]
    assert job["outlineShortfall"] == {"asked": 3, "outlined": 1}
    assert fake_llm.stats().calls["outline"] == settings.max_attempts


@pytest.mark.parametrize("bad", ["outline", "title", "empty"])
async def test_a_section_that_is_not_a_section_is_asked_for_once_more(
    client: Client,
    stores: Stores,
    settings: Settings,
    fake_llm: FakeLLMThread,
    pool: asyncpg.Pool,
    bad: Literal["outline", "title", "empty"],
) -> None:
    body = {"topic": "Tides", "sections": 3}
    plain = await run_report(client, stores, settings, body)
    fake_llm.configure(FakeConfig(bad_sections=bad))
    fake_llm.reset()
    job = await run_report(client, stores, settings, body)
    assert job["status"] == "completed"
    assert all(text.startswith(PLACEHOLDER_NOTICE) for text in job["report"]["sections"].values())
    stats = fake_llm.stats()
    assert sorted(stats.section_calls.values()) == [2, 2, 2]
    problem = {
        "outline": "the outline repeated back",
        "title": "only the section's title",
        "empty": "empty",
    }[bad]
    reminder = stats.last_requests["section"]["messages"][0]["content"]
    assert f"Your previous answer was {problem}, which is not a section." in reminder
    # One attempt each, and the tokens of both calls counted.
    query = """SELECT max(attempts), sum(prompt_tokens) FROM steps
               WHERE job_id = $1 AND kind = 'section'"""
    _, plain_tokens = await pool.fetchrow(query, UUID(plain["jobId"]))
    attempts, tokens = await pool.fetchrow(query, UUID(job["jobId"]))
    assert attempts == 1
    assert tokens > 2 * plain_tokens


async def test_a_stubborn_answer_is_kept_after_one_reminder_unless_empty(
    client: Client, stores: Stores, settings: Settings, fake_llm: FakeLLMThread
) -> None:
    fake_llm.configure(FakeConfig(bad_sections="outline", stubborn=True))
    job = await run_report(client, stores, settings, {"topic": "Tides", "sections": 2})
    assert job["status"] == "completed"
    assert sorted(fake_llm.stats().section_calls.values()) == [2, 2]
    fake_llm.configure(FakeConfig(bad_sections="empty", stubborn=True))
    fake_llm.reset()
    job = await run_report(client, stores, settings, {"topic": "Shoals", "sections": 1})
    assert job["status"] == "failed"
    assert "empty section" in job["error"]
    assert list(fake_llm.stats().section_calls.values()) == [2 * settings.max_attempts]


def test_every_server_in_the_readme_table_is_emulated() -> None:
    assert set(get_args(Server)) == set(ANSWERS) == set(SETTLES_ON)


async def test_refusal_bodies_reach_the_sdk_as_sent(fake_llm: FakeLLMThread) -> None:
    """LM Studio's error is a bare string, llama.cpp's has a code: the SDK must see both."""
    async with httpx.AsyncClient(base_url=fake_llm.base_url) as http:
        fake_llm.configure(FakeConfig(server="lm-studio"))
        body: dict[str, Any] = {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        }
        lm_studio = await http.post("/chat/completions", json=body)
        assert lm_studio.status_code == 400
        assert lm_studio.json() == {
            "error": "'response_format.type' must be 'json_schema' or 'text'"
        }
        fake_llm.configure(FakeConfig(server="llama.cpp"))
        body["response_format"] = {"type": "regex"}
        llama_cpp = await http.post("/chat/completions", json=body)
        assert llama_cpp.status_code == 400
        assert llama_cpp.json()["error"]["type"] == "invalid_request_error"
