"""The OpenAPI document and the interactive docs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import jsonschema_rs
import msgspec
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from reportsvc.api.errors import ApiError
from reportsvc.api.schemas import MAX_LANGUAGE_LENGTH
from reportsvc.api.validation import (
    LANGUAGE_PATTERN,
    TOPIC_PATTERN,
    clean_topic,
    job_options,
    strict_request,
)
from reportsvc.settings import Settings
from tests.conftest import api_client
from tests.helpers import make_settings


async def test_every_response_of_every_endpoint_has_an_example(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    operations = [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    assert {(m, p) for m, p, _ in operations} >= {
        ("post", "/reports"),
        ("get", "/reports"),
        ("get", "/reports/{job_id}"),
        ("delete", "/reports/{job_id}"),
        ("get", "/reports/{job_id}/events"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    }
    for method, path, op in operations:
        assert op.get("summary"), (method, path)
        for status, answer in op["responses"].items():
            media = next(iter(answer["content"].values()))
            assert media.get("examples"), (method, path, status)


async def test_interactive_docs_are_served(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/docs/swagger"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]


async def test_the_request_schema_carries_the_running_settings(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tight = settings.model_copy(
        update={
            "max_topic_length": 123,
            "max_sections": 7,
            "default_sections": 5,
            "openai_allowed_models": ["other-model"],
        }
    )
    async with api_client(tight, pool) as client:
        document = (await client.get("/docs/openapi.json")).json()
    body = document["components"]["schemas"]["CreateReport"]
    assert body["required"] == ["topic"]
    assert body["additionalProperties"] is False
    fields = body["properties"]
    assert fields["topic"]["maxLength"] == 123
    assert fields["topic"]["pattern"] == TOPIC_PATTERN
    assert (fields["sections"]["minimum"], fields["sections"]["maximum"]) == (1, 7)
    assert fields["language"]["pattern"] == LANGUAGE_PATTERN
    assert fields["model"]["enum"] == [settings.openai_model, "other-model"]
    assert fields["detail"]["enum"] == ["brief", "standard", "deep"]
    # Without WEBHOOK_SECRET a webhookUrl is refused, as any field the document does not name.
    assert "webhookUrl" not in fields


async def test_webhook_url_is_documented_when_webhooks_can_be_sent(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    signing = settings.model_copy(update={"webhook_secret": [SecretStr("whsec_" + "A" * 32)]})
    async with api_client(signing, pool) as client:
        document = (await client.get("/docs/openapi.json")).json()
    field = document["components"]["schemas"]["CreateReport"]["properties"]["webhookUrl"]
    assert field["maxLength"] == 2048
    assert re.fullmatch(field["pattern"], "https://example.com/hooks/reports")
    for refused in ("ftp://example.com/", "https://user@example.com/", "https://a b/"):
        assert not re.fullmatch(field["pattern"], refused)


async def test_each_server_sent_event_is_described_with_its_data(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    answer = document["paths"]["/reports/{job_id}/events"]["get"]["responses"]["200"]
    events = answer["content"]["text/event-stream"]["schema"]["oneOf"]
    described = {}
    for event in events:
        assert event["required"] == ["event", "data"]
        data = event["properties"]["data"]
        assert data["type"] == "string"
        assert data["contentMediaType"] == "application/json"
        described[event["properties"]["event"]["const"]] = data["contentSchema"]
    assert described["progress"] == {"$ref": "#/components/schemas/ProgressEvent"}
    for final in ("completed", "failed", "cancelled"):
        job, status = described[final]["allOf"]
        assert job == {"$ref": "#/components/schemas/JobStatus"}
        assert status["properties"]["status"] == {"const": final}
    assert "ProgressEvent" in document["components"]["schemas"]


async def test_options_answers_with_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    for path, methods in [
        ("/reports", "GET, OPTIONS, POST"),
        ("/reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30", "DELETE, GET, OPTIONS"),
        ("/healthz", "GET, HEAD, OPTIONS"),
    ]:
        response = await client.options(path)
        assert response.status_code == 204
        assert response.headers["allow"] == methods


# What schemathesis validates with: the document's patterns read as JSON Schema (ECMA-262).
def _documented(schema: dict[str, Any]) -> Callable[[str], bool]:
    validator = jsonschema_rs.Draft202012Validator({"type": "string", **schema})
    return lambda value: bool(validator.is_valid(value))


def _accepted(check: Callable[[], object]) -> bool:
    try:
        check()
    except ApiError:
        return False
    return True


@given(st.text(max_size=40) | st.sampled_from(["\x85x", "\u3000", "a\x1fb", "x\x7f", " \t"]))
@hyp_settings(max_examples=500, deadline=None)
def test_the_documented_topic_is_exactly_what_the_handler_accepts(raw: str) -> None:
    documented = _documented({"pattern": TOPIC_PATTERN, "maxLength": 30})
    assert documented(raw) == _accepted(lambda: clean_topic(raw, 30)), repr(raw)


@given(
    st.text(max_size=45)
    | st.sampled_from(["Français", "Brazilian Portuguese", "日本語", "Old-Norse", "French ", "x1"])
)
@hyp_settings(max_examples=500, deadline=None)
def test_the_documented_language_is_exactly_what_the_handler_accepts(raw: str) -> None:
    settings = make_settings(database_url="postgresql://db/reports")
    documented = _documented({"pattern": LANGUAGE_PATTERN, "maxLength": MAX_LANGUAGE_LENGTH})

    def check() -> None:
        job_options(strict_request(msgspec.json.encode({"topic": "T", "language": raw})), settings)

    assert documented(raw) == _accepted(check), repr(raw)


async def test_every_cursor_the_document_allows_is_answered(client: httpx.AsyncClient) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    parameters = document["paths"]["/reports"]["get"]["parameters"]
    pattern = next(p for p in parameters if p["name"] == "cursor")["schema"]["pattern"]
    for cursor in ("0_" + "0" * 32, "9" * 17 + "_" + "f" * 32, "1764316800123456_" + "a" * 32):
        assert re.fullmatch(pattern, cursor)
        response = await client.get("/reports", params={"cursor": cursor})
        assert response.status_code == 200, response.text
    for cursor in ("", "x", "1_" + "A" * 32, "9" * 18 + "_" + "f" * 32):
        assert not re.fullmatch(pattern, cursor)
        response = await client.get("/reports", params={"cursor": cursor})
        assert response.json()["code"] == "invalid_cursor"
