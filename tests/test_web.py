"""The web page's files and its JSON helpers, in-process (the browser tests are in
test_page.py)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from importlib import resources

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from reportsvc.api.web import CONTENT_SECURITY_POLICY
from reportsvc.llm.fake import FakeConfig, FakeLLMThread
from reportsvc.settings import Settings
from tests.conftest import api_client

WEB = resources.files("reportsvc") / "web"


class Tags(HTMLParser):
    """Every start tag of a document, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def page_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


async def test_the_page_is_served_at_the_root_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["require-trusted-types-for"] == "'script'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "<title>" in response.text


async def test_the_page_has_no_inline_script_style_or_handler(client: httpx.AsyncClient) -> None:
    tags = page_tags((await client.get("/")).text)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts
    assert all(attrs.get("src") for attrs in scripts)  # every script is a file
    assert not [tag for tag, _ in tags if tag == "style"]
    for tag, attrs in tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag


async def test_every_file_the_page_refers_to_is_served_with_the_policy(
    client: httpx.AsyncClient,
) -> None:
    tags = page_tags((await client.get("/")).text)
    referenced = [
        attrs.get("src") or attrs.get("href") for tag, attrs in tags if tag in ("script", "link")
    ]
    assert "assets/app.js" in referenced
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in referenced:
        assert path is not None
        response = await client.get(f"/{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(types[path[path.rfind(".") :]]), path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    # The page's modules import each other by relative path; those are served too.
    app_js = (await client.get("/assets/app.js")).text
    for module in re.findall(r'from "\./([\w.]+)"', app_js):
        assert (await client.get(f"/assets/{module}")).status_code == 200, module


async def test_unchanged_files_are_not_sent_again(client: httpx.AsyncClient) -> None:
    first = await client.get("/assets/style.css")
    etag = first.headers["etag"]
    again = await client.get("/assets/style.css", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert first.headers["cache-control"] == "no-cache"  # always revalidated


async def test_only_the_page_files_are_served(client: httpx.AsyncClient) -> None:
    for path in ("/assets/nothing.js", "/assets/../api/web.py", "/assets/%2e%2e/index.html",
                 "/assets/vendor", "/index.html"):  # fmt: skip
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


async def test_json_endpoints_keep_their_headers(client: httpx.AsyncClient) -> None:
    for path in ("/reports", "/healthz"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert "content-security-policy" not in response.headers, path
        assert "etag" not in response.headers, path


async def test_page_options_follow_the_settings(settings: Settings, pool: asyncpg.Pool) -> None:
    configured = settings.model_copy(
        update={
            "openai_model": "small",
            "openai_allowed_models": ["large", "small"],
            "max_sections": 9,
            "default_sections": 4,
            "max_topic_length": 120,
        }
    )
    async with api_client(configured, pool) as client:
        options = (await client.get("/ui/options")).json()
    assert options == {
        "models": ["small", "large"],
        "defaultModel": "small",
        "details": ["brief", "standard", "deep"],
        "defaultSections": 4,
        "maxSections": 9,
        "maxTopicLength": 120,
    }


@pytest.fixture
async def locked(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    tokens = [SecretStr("alpha-secret"), SecretStr("beta-secret")]
    async with api_client(settings.model_copy(update={"api_tokens": tokens}), pool) as client:
        yield client


async def test_a_job_item_has_its_topic_for_its_own_token_only(locked: httpx.AsyncClient) -> None:
    alpha = {"Authorization": "Bearer alpha-secret"}
    beta = {"Authorization": "Bearer beta-secret"}
    created = await locked.post("/reports", json={"topic": "  Tides "}, headers=alpha)
    job_id = created.json()["jobId"]
    item = await locked.get(f"/ui/jobs/{job_id}", headers=alpha)
    assert item.status_code == 200
    assert item.json()["topic"] == "Tides"
    assert item.json()["status"] == "processing"
    assert item.json()["progress"] == 0.0
    # As in the list: what GET /reports shows for the same job.
    listed = (await locked.get("/reports", headers=alpha)).json()["jobs"]
    assert listed == [item.json()]
    theirs = await locked.get(f"/ui/jobs/{job_id}", headers=beta)
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "job_not_found"
    assert (await locked.get(f"/ui/jobs/{job_id}")).status_code == 401
    assert (await locked.get("/ui/jobs/not-a-job", headers=alpha)).status_code == 404


def test_vendored_libraries_are_the_published_files() -> None:
    """The table in vendor/README.md names each file's sha256; it must stay true."""
    vendor = WEB / "assets" / "vendor"
    table = (vendor / "README.md").read_text()
    listed = dict(re.findall(r"\| `([\w.-]+\.js)` \|.*\| `([0-9a-f]{64})` \|", table))
    assert set(listed) == {"markdown-it.min.js", "purify.min.js"}
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    licences = {entry.name for entry in (vendor / "licenses").iterdir()}
    assert {"markdown-it.txt", "dompurify.txt"} <= licences


def test_the_stand_in_model_can_write_markup_when_asked(fake_llm: FakeLLMThread) -> None:
    assert FakeConfig().section_markup == ""  # off unless a test asks
    markup = '<img src=x onerror="alert(1)">'
    fake_llm.configure(FakeConfig(section_markup=markup))
    response = httpx.post(
        f"{fake_llm.base_url}/chat/completions",
        json={
            "model": "m",
            "messages": [
                {"role": "user", "content": 'Report topic: "Rome"\n\nWrite section 1 of 2: "A"'}
            ],
        },
    )
    content = response.json()["choices"][0]["message"]["content"]
    assert content.endswith(f"\n\n{markup}")
