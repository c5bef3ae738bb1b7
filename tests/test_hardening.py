"""What an attacker or a careless client can send, against real `reportsvc serve` processes:
never a 5xx, never a secret in the logs, no way around the limits."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reportsvc.llm.fake import FakeLLMThread
from tests.processes import Cluster, cluster

pytestmark = pytest.mark.slow

TOKEN = "rsk_hardening-secret-token-value"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

CONTENT_TYPES: tuple[str | bytes | None, ...] = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    b"application/json; charset=\xff",
    "*/*",
)


def _bodies() -> st.SearchStrategy[bytes]:
    """Raw bytes, and JSON-ish bytes with the hard cases spliced in."""
    nasty = st.sampled_from(
        [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe9", b"\x00", b"\\ud800", b'"', b"\\"]
    )
    spliced = st.builds(
        lambda head, bad, tail: b'{"topic":"' + head + bad + tail + b'"}',
        st.binary(max_size=20),
        nasty,
        st.binary(max_size=20),
    )
    nested = st.integers(1, 60_000).map(
        lambda depth: b'{"topic":"x","language":' + b"[" * depth + b"]" * depth + b"}"
    )
    return st.one_of(st.binary(max_size=2000), spliced, nested)


@pytest.fixture(scope="module")
def open_api(
    postgres_url: str,
    template_database: str,
    fake_llm_server: FakeLLMThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    yield from _api(postgres_url, template_database, fake_llm_server, tmp_path_factory, {})


@pytest.fixture(scope="module")
def locked_api(
    postgres_url: str,
    template_database: str,
    fake_llm_server: FakeLLMThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    yield from _api(
        postgres_url, template_database, fake_llm_server, tmp_path_factory, {"API_TOKENS": TOKEN}
    )


def _api(
    postgres_url: str,
    template: str,
    fake: FakeLLMThread,
    tmp: pytest.TempPathFactory,
    env: dict[str, str],
) -> Iterator[Cluster]:
    import asyncio  # noqa: PLC0415

    from tests.conftest import with_database  # noqa: PLC0415

    name = f"reportsvc_h_{abs(hash(frozenset(env.items()))) % 10**8}_{time.monotonic_ns() % 10**6}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        with cluster(
            with_database(postgres_url, name), fake.base_url, tmp.mktemp("api"), **env
        ) as running:
            running.start_api()
            yield running
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _post(
    api: Cluster, body: bytes, content_type: str | bytes | None, headers: dict[str, str]
) -> httpx.Response:
    sent = {name.encode(): value.encode() for name, value in headers.items()}
    if content_type is not None:
        sent[b"Content-Type"] = (
            content_type if isinstance(content_type, bytes) else content_type.encode()
        )
    return httpx.post(f"{api.api_url}/reports", content=body, headers=sent, timeout=30)


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(body=_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
def test_no_body_of_any_bytes_or_type_is_a_server_error(
    open_api: Cluster, body: bytes, content_type: str | bytes | None
) -> None:
    response = _post(open_api, body, content_type, {})
    assert response.status_code < 500, (body[:80], content_type, response.text)
    if response.status_code != 202:
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["code"]


@FUZZ
@given(body=_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
def test_without_a_token_nothing_is_parsed_and_every_answer_is_401(
    locked_api: Cluster, body: bytes, content_type: str | bytes | None
) -> None:
    response = _post(locked_api, body, content_type, {})
    assert response.status_code == 401, (body[:80], content_type, response.text)


def test_the_server_log_holds_no_traceback_for_bad_bodies(open_api: Cluster) -> None:
    for body in (b'{"topic":"abc\xffdef"}', b'{"topic":"x","language":' + b"[" * 30_000):
        assert _post(open_api, body, "application/json", {}).status_code == 400
    assert "Traceback" not in open_api.services[0].output()


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00+14:00|00000000-0000-0000-0000-000000000000",
        "9999-12-31T23:59:59-14:00|00000000-0000-0000-0000-000000000000",
        "2026-01-01T00:00:00+02:00|00000000-0000-0000-0000-000000000000",
        "2026-01-01T00:00:00|00000000-0000-0000-0000-000000000000",
        "not a time|nor an id",
        "",
    ],
)
def test_crafted_cursors_are_400(open_api: Cluster, raw: str) -> None:
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=") or "x"
    response = httpx.get(f"{open_api.api_url}/reports", params={"cursor": cursor}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_cursor"


def test_console_logs_hold_no_token_even_when_a_request_fails(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """A request that fails inside the server (here, a table the code expects is gone)
    is logged once, compactly, without the caller's headers or any frame's locals."""
    import asyncio  # noqa: PLC0415

    async def break_schema() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ALTER TABLE steps RENAME TO steps_gone")
        finally:
            await conn.close()

    with cluster(
        database_url, fake_llm.base_url, tmp_path, LOG_FORMAT="console", API_TOKENS=TOKEN
    ) as running:
        api = running.start_api()
        job = httpx.post(f"{running.api_url}/reports", json={"topic": "x"}, headers=BEARER)
        assert job.status_code == 202
        asyncio.run(break_schema())
        for _ in range(3):
            failed = httpx.get(f"{running.api_url}/reports/{job.json()['jobId']}", headers=BEARER)
            assert failed.status_code == 500
            assert failed.json() == {
                "status": 500,
                "code": "internal_error",
                "error": "internal server error",
            }
        output = api.output()
    assert TOKEN not in output
    assert "unexpected error" in output
    assert output.count("unexpected error") == 3
    assert len(output) < 6000, output[-3000:]


def test_x_forwarded_for_from_an_untrusted_address_is_ignored(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    with cluster(database_url, fake_llm.base_url, tmp_path, RATE_LIMIT_PER_MINUTE="1") as running:
        running.start_api()
        codes = [
            httpx.post(
                f"{running.api_url}/reports",
                json={"topic": "x"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(3)
        ]
    # One client (this process), whatever the header claims: one report a minute.
    assert codes == [202, 429, 429]


def test_a_trusted_proxy_names_the_client(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    with cluster(
        database_url,
        fake_llm.base_url,
        tmp_path,
        RATE_LIMIT_PER_MINUTE="1",
        FORWARDED_ALLOW_IPS="127.0.0.1",
    ) as running:
        running.start_api()
        codes = [
            httpx.post(
                f"{running.api_url}/reports",
                json={"topic": "x"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(3)
        ]
    assert codes == [202, 202, 202]


def test_a_client_that_never_finishes_its_headers_is_disconnected(
    database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    with cluster(
        database_url, fake_llm.base_url, tmp_path, REQUEST_HEADER_TIMEOUT_SECONDS="1"
    ) as running:
        running.start_api()
        port = int(running.api_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            closed = False
            # A byte now and then: enough to defeat a keep-alive timer, not this deadline.
            for _ in range(60):
                try:
                    slow.sendall(b"X-Slow: 1\r\n")
                    slow.settimeout(0.5)
                    if slow.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
        assert closed, "the server kept a half-sent request open"
        # Clients that do send their headers are unaffected.
        assert httpx.get(f"{running.api_url}/healthz").status_code == 200
