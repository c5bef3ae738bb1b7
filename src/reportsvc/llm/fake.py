"""A stand-in model: a real HTTP server speaking OpenAI's chat-completions wire format.

It writes placeholder outlines and sections, and injects faults on demand: latency, 429s
with Retry-After, 5xx, hangs, malformed or duplicate-title outlines, reasoning tags,
truncated answers, sections that are not sections. It can answer `response_format` as
each server in README's "Model servers" table does (`server`: which types it takes, and
the status and body of its refusal). Tests, the benchmark and the local quick start
(`reportsvc dev` without an API key) all use it.

    reportsvc fake-llm --port 9100 --latency 0.5
    OPENAI_BASE_URL=http://127.0.0.1:9100/v1 reportsvc worker

Control endpoints (JSON): GET/PUT /fake/config, GET /fake/stats, POST /fake/reset, and
POST /fake/arrivals (when each outline request arrived, by topic; read and cleared).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

import msgspec
from aiohttp import web

PLACEHOLDER_NOTICE: Final = (
    "[Placeholder text from reportsvc's built-in stand-in model, not from a language model. "
    "Set OPENAI_API_KEY (or OPENAI_BASE_URL) to generate real reports.]"
)

_TITLE_STEMS: Final = (
    "Origins and Background",
    "Key Figures",
    "Major Events",
    "Institutions and Organisation",
    "Economy and Resources",
    "Culture and Ideas",
    "Technology and Innovation",
    "Conflicts and Challenges",
    "Turning Points",
    "Everyday Life",
    "International Context",
    "Decline and Transformation",
    "Legacy",
    "Historiography and Debates",
    "Open Questions",
    "Modern Relevance",
    "Comparisons",
    "Myths and Misconceptions",
    "Sources and Evidence",
    "Outlook",
)
_WANTED: Final = re.compile(r"exactly (\d+) sections")
_SECTION_REQUEST: Final = re.compile(r'Write section (\d+) of (\d+): "(.*)"\s*$', re.DOTALL)
# A numbered passage in a section prompt: `[n] from "title": "text"`.
_PASSAGE: Final = re.compile(r'^\[(\d+)\] from ".*?(?<!\\)": (".*")$', re.MULTILINE)
_TOPIC: Final = re.compile(r'^(?:Report topic|Topic): (".*?(?<!\\)")', re.MULTILINE)
# A rewrite request's instruction (its current text comes first, as "Current text ...").
_INSTRUCTION: Final = re.compile(r'^Instruction: (".*?(?<!\\)")$', re.MULTILINE)

_FILLER: Final = ("Lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

Kind = Literal["outline", "section", "summary"]
T = TypeVar("T")

# Model servers whose handling of response_format differs (README, "Model servers").
Server = Literal[
    "openai", "ollama", "vllm", "vllm-0.5", "llama.cpp", "llama-cpp-python", "lm-studio"
]
_ALL_TYPES: Final = frozenset({"text", "json_object", "json_schema"})
_STRUCTURED: Final = frozenset({"json_object", "json_schema"})
# The response_format types each server takes; None: it takes anything (ignoring what it
# does not know).
ACCEPTED_FORMATS: Final[dict[Server, frozenset[str] | None]] = {
    "openai": _ALL_TYPES,
    "ollama": None,
    "vllm": _ALL_TYPES,
    "vllm-0.5": frozenset({"text", "json_object"}),
    "llama.cpp": _ALL_TYPES,
    "llama-cpp-python": frozenset({"text", "json_object"}),
    "lm-studio": frozenset({"text", "json_schema"}),
}
# Servers whose request models forbid fields they do not know, such as llama.cpp's
# "schema" beside "type": "json_object" (vLLM's did before it took json_schema).
FORBIDS_EXTRA_FIELDS: Final[frozenset[Server]] = frozenset({"vllm-0.5"})
# A path on the model server's machine, as llama-cpp-python's refusals carry one.
SERVER_PATH: Final = "/opt/llm/venv/lib/python3.11/site-packages/llama_cpp/server/app.py"


class Faults(msgspec.Struct, kw_only=True):
    """How one kind of call (outline or section) misbehaves. Rates are 0..1."""

    latency: float = 0.0
    jitter: float = 0.0
    fail_first: int = 0  # the first N calls of this kind answer `error_status`
    error_rate: float = 0.0
    error_status: int = 500
    retry_after: float | None = None  # sent with error answers (use with 429)
    hang_rate: float = 0.0  # calls that never answer (until `hang_seconds`)
    hang_seconds: float = 3600.0
    empty_rate: float = 0.0  # answer with empty content


class FakeConfig(msgspec.Struct, kw_only=True):
    outline: Faults = msgspec.field(default_factory=Faults)
    section: Faults = msgspec.field(default_factory=Faults)
    # Outline answers that are not what was asked for:
    malformed_outline_rate: float = 0.0  # not JSON at all
    wrong_shape_outline_rate: float = 0.0  # JSON, but not {"sections": [...]}
    duplicate_titles: bool = False  # every title twice
    outline_items: int | None = None  # this many titles, whatever was asked
    outline_titles: list[str] | None = None  # exactly these titles, whatever was asked
    title_length: int | None = None  # pad titles to this many characters
    # Answer styles of some OpenAI-compatible servers:
    think_tags: bool = False  # wrap a <think>...</think> block before the answer
    truncate_sections: bool = False  # finish_reason "length"
    json_schema_supported: bool = True  # False: 400 on response_format json_schema
    json_object_supported: bool = True  # False: 400 on response_format json_object
    server: Server = "openai"  # whose response_format handling and refusals to copy
    # Section answers that are not sections: the outline repeated back, the title alone,
    # or nothing; after a reminder in the system prompt, a proper section unless stubborn.
    bad_sections: Literal["outline", "title", "empty"] | None = None
    stubborn: bool = False
    section_words: int = 60
    # A section prompt that carries numbered source passages is answered with sentences
    # citing some of them ([n]); with this, also one citing a number it was not given.
    cite_unknown: bool = False
    # Appended to every section, e.g. HTML, to test that clients show it as text.
    section_markup: str = ""
    # A provider's rate limit, requests and tokens a minute (None: none): token buckets
    # holding one second's worth, 429 with retry-after-ms and Retry-After beyond them, and
    # x-ratelimit-* headers on every answer when set (or when `limit_headers`).
    rpm: float | None = None
    tpm: float | None = None
    limit_headers: bool = False
    seed: int | None = None


class Stats(msgspec.Struct):
    calls: dict[str, int] = msgspec.field(default_factory=dict)
    answered: dict[str, int] = msgspec.field(default_factory=dict)
    statuses: dict[str, int] = msgspec.field(default_factory=dict)
    # Section calls per "topic :: title": shows exactly which work was done twice.
    section_calls: dict[str, int] = msgspec.field(default_factory=dict)
    # The user message of the latest call for each section, by "topic :: title".
    section_prompts: dict[str, str] = msgspec.field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    models: dict[str, int] = msgspec.field(default_factory=dict)
    last_request: dict[str, Any] | None = None
    # The last request of each kind (outline, section, summary).
    last_requests: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # Tokens counted against a tokens-per-minute limit by the requests served.
    booked_tokens: int = 0


class _Bucket:
    """A provider's token bucket: `per_minute` a minute, refilled continuously, holding one
    second's worth. A request that costs more than that goes when the bucket is full, and
    leaves it in debt."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.at = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` may be taken (0: now)."""
        needed = min(cost, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate

    def reset_in(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


def _reset(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:.3f}s"


class FakeLLM:
    """The server's state: configuration and call statistics. Thread-safe enough for tests:
    configuration is replaced whole, counters are only touched on the server's loop."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self._rng = random.Random(self.config.seed)  # noqa: S311 - test data
        self._calls: Counter[str] = Counter()
        self._answered: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._section_calls: Counter[str] = Counter()
        self._section_prompts: dict[str, str] = {}
        self._models: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        self._last_request: dict[str, Any] | None = None
        self._last_requests: dict[str, dict[str, Any]] = {}
        # (wall-clock time, topic) of each outline request, for the pickup benchmark.
        self._arrivals: list[tuple[float, str]] = []
        # (wall-clock time, kind, status) of every call, in order: what a provider saw.
        self._timeline: list[tuple[float, str, int]] = []
        self._hangs_released = asyncio.Event()
        self._buckets: dict[str, _Bucket] = {}
        self._booked_tokens = 0

    # --- control ----------------------------------------------------------------------

    def configure(self, config: FakeConfig) -> None:
        self.config = config
        if config.seed is not None:
            self._rng.seed(config.seed)
        self._buckets = {}

    def release_hangs(self) -> None:
        """End every hanging call now, and let future hangs hang again."""
        self._hangs_released.set()
        self._hangs_released = asyncio.Event()

    def reset(self) -> None:
        for counter in (
            self._calls,
            self._answered,
            self._statuses,
            self._section_calls,
            self._models,
        ):
            counter.clear()
        self._max_in_flight = self._in_flight
        self._section_prompts.clear()
        self._arrivals.clear()
        self._timeline.clear()
        self._booked_tokens = 0
        self._last_requests.clear()
        self._last_request = None

    def stats(self) -> Stats:
        return Stats(
            calls=dict(self._calls),
            answered=dict(self._answered),
            statuses=dict(self._statuses),
            section_calls=dict(self._section_calls),
            section_prompts=dict(self._section_prompts),
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            models=dict(self._models),
            last_request=self._last_request,
            last_requests=dict(self._last_requests),
            booked_tokens=self._booked_tokens,
        )

    def timeline(self) -> list[tuple[float, str, int]]:
        """When each call arrived (wall-clock), its kind, and the status it was answered."""
        return list(self._timeline)

    def take_arrivals(self) -> list[tuple[float, str]]:
        """`time.time()` and topic of each outline request since the last call."""
        arrivals, self._arrivals = self._arrivals, []
        return arrivals

    # --- the HTTP application ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models_list)
        app.router.add_get("/fake/config", self._get_config)
        app.router.add_put("/fake/config", self._put_config)
        app.router.add_get("/fake/stats", self._get_stats)
        app.router.add_post("/fake/reset", self._post_reset)
        app.router.add_post("/fake/arrivals", self._take_arrivals)
        app.router.add_get("/fake/timeline", self._get_timeline)
        return app

    async def _models_list(self, _request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _get_config(self, _request: web.Request) -> web.Response:
        return _json(self.config)

    async def _put_config(self, request: web.Request) -> web.Response:
        try:
            self.configure(msgspec.json.decode(await request.read(), type=FakeConfig))
        except msgspec.DecodeError as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(self.config)

    async def _get_stats(self, _request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _take_arrivals(self, _request: web.Request) -> web.Response:
        return _json(self.take_arrivals())

    async def _get_timeline(self, _request: web.Request) -> web.Response:
        return _json(self.timeline())

    async def _post_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return _json(self.stats())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        try:
            body = msgspec.json.decode(await request.read(), type=dict[str, Any])
            messages = body["messages"]
            system = next((m["content"] for m in messages if m["role"] == "system"), "")
            user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        except (msgspec.DecodeError, KeyError, TypeError, StopIteration):
            return _error(400, "invalid_request_error", "malformed chat completion request")
        self._last_request = body
        kind: Kind = "outline"
        if _SECTION_REQUEST.search(user):
            kind = "section"
        elif "Write the summary of this report" in user:
            kind = "summary"
        if kind == "outline":
            self._arrivals.append((arrived, _topic(user)))
            del self._arrivals[:-10_000]
        self._calls[kind] += 1
        self._last_requests[kind] = body
        self._models[str(body.get("model"))] += 1
        if kind == "section":
            self._section_calls[_section_key(user)] += 1
            self._section_prompts[_section_key(user)] = user
        limited, headers = self._rate_limit(body, system + user)
        if limited is not None:
            self._statuses["429"] += 1
            self._log(arrived, kind, 429)
            return limited
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            response = await self._answer(kind, body, system, user)
        finally:
            self._in_flight -= 1
        response.headers.update(headers)
        self._statuses[str(response.status)] += 1
        self._log(arrived, kind, response.status)
        if response.status == 200:
            self._answered[kind] += 1
        return response

    def _log(self, arrived: float, kind: str, status: int) -> None:
        self._timeline.append((arrived, kind, status))
        del self._timeline[:-20_000]

    async def _answer(
        self, kind: Kind, body: dict[str, Any], system: str, user: str
    ) -> web.Response:
        cfg = self.config
        faults = cfg.outline if kind == "outline" else cfg.section
        delay = faults.latency + (self._rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if refusal := self._refusal(kind, faults, body):
            return refusal
        if self._chance(faults.hang_rate):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hangs_released.wait(), faults.hang_seconds)
        finish_reason = "stop"
        if self._chance(faults.empty_rate):
            content = ""
        elif kind == "outline":
            structured = (body.get("response_format") or {}).get("type") in _STRUCTURED
            content = self._outline(system, user, structured=structured)
        elif kind == "summary":
            content = f"{PLACEHOLDER_NOTICE}\n\nA summary of the report on {_topic(user)}."
        else:
            content = self._section(user, reminded="previous answer was" in system)
            if cfg.truncate_sections:
                content = content[: len(content) // 2]
                finish_reason = "length"
        if cfg.think_tags:
            content = f"<think>\nLet me think about how to answer this.\n</think>\n{content}"
        model = str(body.get("model", "fake-model"))
        return _json(_completion(model, content, finish_reason, system + user))

    def _refusal(self, kind: Kind, faults: Faults, body: dict[str, Any]) -> web.Response | None:
        """An injected error, or the 400 a server gives for a response_format it lacks."""
        if self._calls[kind] <= faults.fail_first or self._chance(faults.error_rate):
            headers = {}
            if faults.retry_after is not None:
                headers["retry-after"] = f"{faults.retry_after:g}"
            return _error(faults.error_status, "server_error", "injected failure", headers)
        format_type = (body.get("response_format") or {}).get("type")
        if format_type is None:
            return None
        unsupported = (format_type == "json_schema" and not self.config.json_schema_supported) or (
            format_type == "json_object" and not self.config.json_object_supported
        )
        if unsupported:
            return _error(
                400, "invalid_request_error", f"response_format {format_type} is not supported"
            )
        server = self.config.server
        accepted = ACCEPTED_FORMATS[server]
        if accepted is not None and format_type not in accepted:
            return format_refusal(server, str(format_type))
        extra = sorted(set(body["response_format"]) - {"type", "json_schema"})
        if server in FORBIDS_EXTRA_FIELDS and extra:
            return _vllm_validation_error(
                f"{{'type': 'extra_forbidden', 'loc': ('body', 'response_format', '{extra[0]}'), "
                "'msg': 'Extra inputs are not permitted', 'input': {...}}"
            )
        return None

    def _rate_limit(
        self, body: dict[str, Any], prompt: str
    ) -> tuple[web.Response | None, dict[str, str]]:
        """A 429 when the request does not fit the provider's buckets; the x-ratelimit-*
        headers either way. A request costs one request and, in tokens, its prompt and its
        max_tokens (what providers book when a call arrives)."""
        cfg = self.config
        limits = {"requests": cfg.rpm, "tokens": cfg.tpm}
        if not (cfg.rpm or cfg.tpm or cfg.limit_headers):
            return None, {}
        max_tokens = body.get("max_tokens")
        costs = {
            "requests": 1.0,
            "tokens": float(max(1, len(prompt) // 4))
            + (max_tokens if isinstance(max_tokens, int) else 256),
        }
        now = time.monotonic()
        waits = {}
        for unit, per_minute in limits.items():
            if per_minute:
                bucket = self._buckets.get(unit)
                if bucket is None or bucket.per_minute != per_minute:
                    bucket = self._buckets[unit] = _Bucket(per_minute, now)
                bucket.refill(now)
                waits[unit] = bucket.wait_for(costs[unit])
        wait = max(waits.values(), default=0.0)
        if wait == 0:
            for unit in waits:
                self._buckets[unit].level -= costs[unit]
            self._booked_tokens += int(costs["tokens"])
        headers: dict[str, str] = {}
        for unit, bucket in self._buckets.items():
            headers[f"x-ratelimit-limit-{unit}"] = f"{bucket.per_minute:g}"
            headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, int(bucket.level)))
            headers[f"x-ratelimit-reset-{unit}"] = _reset(bucket.reset_in())
        if wait == 0:
            return None, headers
        headers["retry-after-ms"] = str(max(1, round(wait * 1000)))
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        unit = max(waits, key=lambda u: waits[u])
        refusal = _error(429, unit, f"Rate limit reached for {unit} (stand-in model)", headers)
        return refusal, headers

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _outline(self, system: str, user: str, *, structured: bool) -> str:
        cfg = self.config
        if self._chance(cfg.malformed_outline_rate):
            return '{"sections": ["An outline that never closes'
        if self._chance(cfg.wrong_shape_outline_rate):
            return '{"outline": {"title": "Not the requested shape"}}'
        match = _WANTED.search(system)
        wanted = cfg.outline_items or (int(match.group(1)) if match else 5)
        topic = _topic(user)
        titles = []
        for i in range(wanted):
            stem = _TITLE_STEMS[i % len(_TITLE_STEMS)]
            suffix = f" ({i // len(_TITLE_STEMS) + 1})" if i >= len(_TITLE_STEMS) else ""
            title = f"{stem}{suffix} of {topic}"
            if cfg.title_length is not None and len(title) < cfg.title_length:
                title = (title + " and more") * (cfg.title_length // len(title) + 1)
            titles.append(title)
        if cfg.duplicate_titles:
            titles = [t for title in titles for t in (title, title.upper())]
        if cfg.outline_titles is not None:
            titles = list(cfg.outline_titles)
        if structured:
            return msgspec.json.encode({"sections": titles}).decode()
        return "\n".join(f"{i + 1}. {t}" for i, t in enumerate(titles))

    def _section(self, user: str, *, reminded: bool) -> str:
        match = _SECTION_REQUEST.search(user)
        title = match.group(3) if match else "this section"
        bad = self.config.bad_sections
        if bad is not None and (self.config.stubborn or not reminded):
            if bad == "outline":
                return user[user.index("Outline:") : user.index("Write section")].strip()
            return title if bad == "title" else ""
        opening = f"This section covers {title}, as part of a report on {_topic(user)}."
        words = opening.split()
        while len(words) < self.config.section_words:
            words.extend(_FILLER)
        text = f"{PLACEHOLDER_NOTICE}\n\n{' '.join(words[: self.config.section_words])}"
        if cited := self._citing(user):
            text = f"{text}\n\n{cited}"
        if "Current text of this section:" in user:
            # A rewrite: say so, with the instruction, so a test can tell the versions apart.
            found = _INSTRUCTION.search(user)
            asked = str(msgspec.json.decode(found.group(1))) if found else "no instruction"
            text = f"{text}\n\nRewritten ({asked})."
        return f"{text}\n\n{self.config.section_markup}" if self.config.section_markup else text

    def _citing(self, user: str) -> str:
        """Sentences citing the first two passages the prompt numbers (and, with
        `cite_unknown`, a number it does not), each quoting the passage's first words."""
        given = [
            (int(m.group(1)), str(msgspec.json.decode(m.group(2)))) for m in _PASSAGE.finditer(user)
        ]
        if not given:
            return ""
        sentences = [
            f"The sources say: {' '.join(text.split()[:12])} [{number}]."
            for number, text in given[:2]
        ]
        if self.config.cite_unknown:
            unknown = max(number for number, _ in given) + 1
            sentences.append(f"Another source, never given, agrees [{unknown}].")
        return " ".join(sentences)


def _topic(user: str) -> str:
    match = _TOPIC.search(user)
    if not match:
        return "the topic"
    try:
        return str(msgspec.json.decode(match.group(1)))
    except msgspec.DecodeError:
        return "the topic"


def _section_key(user: str) -> str:
    match = _SECTION_REQUEST.search(user)
    return f"{_topic(user)} :: {match.group(3) if match else '?'}"


def _completion(model: str, content: str, finish_reason: str, prompt: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{random.getrandbits(48):012x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": max(1, len(prompt) // 4),
            "completion_tokens": max(1, len(content) // 4),
            "total_tokens": max(1, len(prompt) // 4) + max(1, len(content) // 4),
        },
    }


def _json(value: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def format_refusal(server: Server, format_type: str) -> web.Response:
    """The answer `server` gives to a response_format type it does not take: the status
    and body its code produces (README, "Model servers", says where each comes from)."""
    if server == "lm-studio":
        return _json({"error": "'response_format.type' must be 'json_schema' or 'text'"}, 400)
    if server == "openai":
        return _json(
            {
                "error": {
                    "message": f"Invalid value: '{format_type}'. Supported values are: "
                    "'json_object', 'json_schema', and 'text'.",
                    "type": "invalid_request_error",
                    "param": "response_format.type",
                    "code": "invalid_value",
                }
            },
            400,
        )
    if server == "llama.cpp":
        message = (
            'response_format type must be one of "text" or "json_object", but got: ' + format_type
        )
        return _json(
            {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}, 400
        )
    expected = " or ".join(f"'{t}'" for t in sorted(ACCEPTED_FORMATS[server] or ()))
    error = (
        f"{{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        f"'msg': \"Input should be {expected}\", 'input': '{format_type}', "
        f"'ctx': {{'expected': \"{expected}\"}}}}"
    )
    if server == "llama-cpp-python":
        # Its route handler turns every exception, request validation included, into a 500
        # whose message is the exception's text, which names the server's source file.
        message = (
            f'1 validation error:\n  {error}\n\n  File "{SERVER_PATH}", line 376, in '
            "create_chat_completion\n    POST /v1/chat/completions"
        )
        return _json(
            {"error": {"message": message, "type": "internal_server_error", "param": None,
                       "code": None}},
            500,
        )  # fmt: skip
    return _vllm_validation_error(error)


def _vllm_validation_error(error: str) -> web.Response:
    """vLLM answers a request that fails validation with 400 and the errors' text."""
    return _json(
        {"object": "error", "message": f"[{error}]", "type": "BadRequestError", "param": None,
         "code": 400},
        400,
    )  # fmt: skip


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json({"error": {"message": message, "type": kind, "code": None}}, status, headers)


# --- running it ---------------------------------------------------------------------------


async def serve(fake: FakeLLM, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on the running loop; returns the runner and the bound port."""
    runner = web.AppRunner(
        fake.app(),
        access_log=None,
        handle_signals=False,
        # A client that gives up (timeout, cancelled step) ends its request here too, as
        # it would on a real server; in-flight counts stay true.
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)


class FakeLLMThread:
    """The fake server on its own event loop in a background thread (for tests)."""

    def __init__(self, fake: FakeLLM | None = None, host: str = "127.0.0.1") -> None:
        self.fake = fake or FakeLLM()
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-llm", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeLLMThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(serve(self.fake, self.host, 0), self._loop)
        self._runner, self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        self.release_hangs()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def configure(self, config: FakeConfig) -> None:
        """Replace the configuration; applied before this returns."""
        future = asyncio.run_coroutine_threadsafe(
            _call(lambda: self.fake.configure(config)), self._loop
        )
        future.result(timeout=10)

    def reset(self) -> None:
        asyncio.run_coroutine_threadsafe(_call(self.fake.reset), self._loop).result(timeout=10)

    def release_hangs(self) -> None:
        future = asyncio.run_coroutine_threadsafe(_call(self.fake.release_hangs), self._loop)
        future.result(timeout=10)

    def stats(self) -> Stats:
        return asyncio.run_coroutine_threadsafe(_call(self.fake.stats), self._loop).result(
            timeout=10
        )

    def timeline(self) -> list[tuple[float, str, int]]:
        return asyncio.run_coroutine_threadsafe(_call(self.fake.timeline), self._loop).result(
            timeout=10
        )


async def _call(function: Callable[[], T]) -> T:
    return function()
