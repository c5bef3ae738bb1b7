"""Typed configuration, read once from the environment (and `.env`), validated at start-up.

Every field maps to the upper-case environment variable of the same name; `.env.example`
documents each one. A bad value stops the process with a message naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reportsvc.errors import ConfigError

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


_RATE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*(rpm|tpm)$")
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS_PER: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


# The longest duration accepted: a century, far past any retention anyone means, and well
# inside what PostgreSQL's intervals and timestamps can hold.
MAX_DURATION_SECONDS: Final = 100 * 365 * 86_400


def parse_duration(text: str) -> float:
    """Seconds in "90s", "30m", "12h", "7d" or "2w" (at most a century)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 12h, 7d or 2w")
    seconds = float(match.group(1)) * _SECONDS_PER[match.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than a century; give a shorter duration")
    return seconds


# Standard Webhooks: a symmetric secret is random, at least 24 bytes, at most 64.
_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix every secret starts with
_SECRET_BYTES: Final = (24, 64)


def check_webhook_secret(secret: str, number: int = 1) -> None:
    """A `whsec_` secret as Standard Webhooks defines it; the error never shows it."""
    if not secret.startswith(_SECRET_PREFIX):
        raise ValueError(f"secret {number} does not start with {_SECRET_PREFIX}")
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:  # padding is often left out, and the signing library accepts that
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"secret {number} is not base64 after {_SECRET_PREFIX}") from None
    low, high = _SECRET_BYTES
    if not low <= len(raw) <= high:
        raise ValueError(
            f"secret {number} holds {len(raw)} bytes; Standard Webhooks asks for {low} to {high}"
        )


def normalize_database_url(url: str) -> str:
    """Return `url` as a plain `postgresql://` URL that both asyncpg and psql accept.

    Accepts the spellings people paste: `postgres://`, `postgresql://` and SQLAlchemy's
    `postgresql+asyncpg://`.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in _POSTGRES_SCHEMES:
        raise ValueError(
            f"must be a PostgreSQL URL such as postgresql://user:password@host:5432/dbname "
            f"(got scheme {parts.scheme or 'none'!r})"
        )
    return urlunsplit(("postgresql", *parts[1:]))


def redact_database_url(url: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, *parts[2:]))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- database ---------------------------------------------------------------------
    database_url: str | None = None
    # What sits between us and PostgreSQL on DATABASE_URL: nothing, or a pooler in
    # transaction mode (PgBouncer, or any that hands each transaction to any server
    # connection), which rules out named prepared statements and LISTEN.
    database_pooler: Literal["none", "pgbouncer"] = "none"
    # A URL straight to PostgreSQL, for the connections that LISTEN; unset: DATABASE_URL.
    database_listen_url: str | None = None
    # Connections each API process keeps in its pool (opened as needed).
    database_pool_size: Annotated[int, Field(ge=1, le=1000)] = 10
    database_connect_timeout: PositiveFloat = 5.0

    # --- model ------------------------------------------------------------------------
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: PositiveFloat = 60.0
    openai_max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    openai_allowed_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # USD per million tokens, input/output, by model: "gpt-4o-mini=0.15/0.60,gpt-4o=2.5/10".
    openai_prices: Annotated[dict[str, tuple[float, float]], NoDecode] = Field(default_factory=dict)
    # Each model's rate limit, shared by every worker: "MODEL=500rpm/200000tpm,MODEL2=60rpm"
    # (requests and tokens per minute, each optional). Unset: learned from the provider's
    # x-ratelimit headers.
    model_rate_limits: Annotated[dict[str, tuple[float | None, float | None]], NoDecode] = Field(
        default_factory=dict
    )
    # A call may wait this long for its share of the quota while its step holds a lease;
    # a longer wait sends the step back to the queue until then.
    quota_wait_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # How outlines are asked for: strict json_schema, json_object_schema (llama.cpp's
    # json_object with a schema), json_object (JSON mode), or text (a list); auto starts
    # with json_schema and steps down when a server refuses it.
    outline_format: Literal["auto", "json_schema", "json_object_schema", "json_object", "text"] = (
        "auto"
    )

    # --- reports ----------------------------------------------------------------------
    max_topic_length: Annotated[int, Field(ge=10, le=10_000)] = 300
    default_sections: Annotated[int, Field(ge=1, le=20)] = 6
    max_sections: Annotated[int, Field(ge=1, le=20)] = 12
    max_title_length: Annotated[int, Field(ge=20, le=1000)] = 120
    section_max_tokens: Annotated[int, Field(ge=16, le=32_000)] = 900
    # A final pass writes a short summary from the finished sections.
    summary_pass: bool = False
    # A job created with reviewOutline fails when its outline waits longer than this for
    # the owner's review (PUT /reports/{jobId}/outline): 90s, 30m, 24h, 7d.
    outline_review_timeout: str = "24h"
    # The longest instruction a section rewrite may carry.
    max_instruction_length: Annotated[int, Field(ge=20, le=10_000)] = 500

    # --- sources ----------------------------------------------------------------------
    # Documents one report may be written from (given in the request or uploaded).
    sources_max_documents: Annotated[int, Field(ge=1, le=1000)] = 20
    # Characters of all of one report's documents together; also the most one uploaded
    # document may have.
    sources_max_characters: Annotated[int, Field(ge=1000, le=10_000_000)] = 200_000
    # Uploaded sources one API token (or, without tokens, everyone) may store; 0: no bound.
    sources_max_stored: Annotated[int, Field(ge=0, le=10_000_000)] = 1000
    # Passages a section's prompt carries at most.
    passages_per_section: Annotated[int, Field(ge=1, le=20)] = 4

    # --- the door ---------------------------------------------------------------------
    # API tokens (comma-separated); with any token here or in the api_tokens table, every
    # /reports endpoint needs Authorization: Bearer <token>.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Request bodies carry documents (sources), hence 1 MiB rather than a topic's few KiB.
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # POST /reports per minute per API token (or client address); 0: no limit.
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 0
    # Keep the API locked even with no token configured or stored (every call needs one).
    auth_required: bool = False
    # POST /reports answers 503 while this many jobs are pending; 0: no limit.
    max_pending_jobs: Annotated[int, Field(ge=0, le=100_000_000)] = 100_000
    # POST /reports answers 429 to an API token with this many jobs pending; 0: no limit.
    max_pending_jobs_per_owner: Annotated[int, Field(ge=0, le=100_000_000)] = 10_000
    # GET /metrics needs Authorization: Bearer <this> when set.
    metrics_token: SecretStr | None = None
    # Addresses of proxies whose X-Forwarded-For/-Proto the API trusts (comma-separated;
    # "*" for any). Empty: none, the connection's own address is the client's.
    forwarded_allow_ips: str = ""
    # A request whose headers have not all arrived this long after it began is dropped.
    request_header_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0

    # --- worker -----------------------------------------------------------------------
    worker_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    # The most steps of one owner (API token) running at once in the cluster; 0: no bound.
    max_running_steps_per_owner: Annotated[int, Field(ge=0, le=100_000)] = 0
    claim_batch_size: Annotated[int, Field(ge=1, le=1000)] = 32
    lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 15.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    retry_base_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0
    retry_max_seconds: Annotated[float, Field(ge=0, le=86_400)] = 120.0
    step_timeout_seconds: PositiveFloat = 240.0
    job_timeout_seconds: PositiveFloat = 3600.0
    poll_interval_seconds: Annotated[float, Field(ge=0.01, le=60)] = 1.0
    rescue_interval_seconds: Annotated[float, Field(ge=0.05, le=600)] = 2.0
    shutdown_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # Wake workers and event streams with LISTEN/NOTIFY; unset: yes, unless DATABASE_URL
    # goes through PgBouncer without a DATABASE_LISTEN_URL beside it.
    listen_notify: bool | None = None
    # Connections each worker keeps in its pool (claims, results, heartbeats, rescues).
    worker_pool_size: Annotated[int, Field(ge=1, le=1000)] = 6
    # Finished jobs older than this are deleted by workers (e.g. "7d"); unset: kept forever.
    prune_after: str | None = None
    worker_metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    worker_metrics_host: str = "127.0.0.1"

    # --- webhooks ---------------------------------------------------------------------
    # Signing secrets (`whsec_` + base64), space-separated: every delivery is signed with
    # each, so receivers can move from one to the next without missing a delivery.
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Allow webhook URLs on loopback, private and link-local addresses (development, tests).
    webhook_allow_private_networks: bool = False
    # One delivery attempt, connection included.
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    # Failed deliveries are retried for this long after their first attempt ("3d").
    webhook_retry_for: str = "3d"
    webhook_retry_base_seconds: Annotated[float, Field(gt=0, le=86_400)] = 10.0
    webhook_retry_max_seconds: Annotated[float, Field(gt=0, le=7 * 86_400)] = 21_600.0
    # At most this many attempts per delivery; the retry window normally ends one first.
    webhook_max_attempts: Annotated[int, Field(ge=1, le=1000)] = 40

    # --- event streams -----------------------------------------------------------------
    # Without LISTEN, each API process looks for changes to the jobs its clients watch this
    # often (one query for all of them).
    event_poll_interval_seconds: Annotated[float, Field(ge=0.05, le=60)] = 1.0

    # --- logging ----------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("database_url", "database_listen_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return normalize_database_url(value)

    @field_validator("prune_after", "webhook_retry_for", "outline_review_timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _space_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return value.split()
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, secret in enumerate(value, start=1):
            check_webhook_secret(secret.get_secret_value(), number)
        return value

    @field_validator(
        "openai_base_url",
        "openai_api_key",
        "metrics_token",
        "worker_metrics_port",
        "prune_after",
        "database_listen_url",
        "listen_notify",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("openai_allowed_models", "api_tokens", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("openai_prices", mode="before")
    @classmethod
    def _prices(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        prices: dict[str, tuple[float, float]] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            model, sep, pair = item.partition("=")
            prompt, slash, completion = pair.partition("/")
            if not (sep and slash and model.strip()):
                raise ValueError(f"{item!r} is not MODEL=INPUT/OUTPUT (USD per 1M tokens)")
            prices[model.strip()] = (float(prompt), float(completion))
        return prices

    @field_validator("model_rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        limits: dict[str, tuple[float | None, float | None]] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            model, sep, spec = item.partition("=")
            rpm = tpm = None
            for part in filter(None, (p.strip().lower() for p in spec.split("/"))):
                match = _RATE.match(part)
                if match is None:
                    raise ValueError(
                        f"{item!r} is not MODEL=<n>rpm/<n>tpm (requests, tokens per minute)"
                    )
                number, unit = float(match.group(1)), match.group(2)
                if unit == "rpm":
                    rpm = number
                else:
                    tpm = number
            if not (sep and model.strip() and (rpm or tpm)):
                raise ValueError(
                    f"{item!r} is not MODEL=<n>rpm/<n>tpm (requests, tokens per minute)"
                )
            limits[model.strip()] = (rpm, tpm)
        return limits

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.default_sections > self.max_sections:
            raise ValueError(
                f"DEFAULT_SECTIONS ({self.default_sections}) must not exceed "
                f"MAX_SECTIONS ({self.max_sections})"
            )
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("RETRY_MAX_SECONDS must be at least RETRY_BASE_SECONDS")
        if self.webhook_retry_max_seconds < self.webhook_retry_base_seconds:
            raise ValueError(
                "WEBHOOK_RETRY_MAX_SECONDS must be at least WEBHOOK_RETRY_BASE_SECONDS"
            )
        if self.listen_notify and self.behind_pooler and self.database_listen_url is None:
            raise ValueError(
                "LISTEN_NOTIFY=true needs DATABASE_LISTEN_URL (a direct URL to PostgreSQL) "
                "when DATABASE_POOLER=pgbouncer: a pooler in transaction mode hands the "
                "LISTEN to a server connection the notifications never reach"
            )
        return self

    # --- derived values -----------------------------------------------------------------
    @property
    def heartbeat_seconds(self) -> float:
        """Leases are renewed three times per lease, so one slow renewal never loses one."""
        return self.lease_seconds / 3

    @property
    def behind_pooler(self) -> bool:
        """DATABASE_URL reaches PostgreSQL through a pooler in transaction mode."""
        return self.database_pooler != "none"

    @property
    def prepared_statements(self) -> bool:
        """Named prepared statements live on one server connection; behind a transaction
        pooler the next statement may run on another, where the name is unknown or, worse,
        another client's statement."""
        return not self.behind_pooler

    @property
    def listens(self) -> bool:
        """Whether workers and event streams LISTEN (otherwise they poll)."""
        if self.listen_notify is not None:
            return self.listen_notify
        return not self.behind_pooler or self.database_listen_url is not None

    @property
    def api_connections(self) -> int:
        """The most connections one API process opens: its pool, and one LISTEN connection
        while anyone watches an event stream."""
        return self.database_pool_size + int(self.listens)

    @property
    def worker_connections(self) -> int:
        """The most connections one worker process opens: its pool and its LISTEN."""
        return self.worker_pool_size + int(self.listens)

    def require_listen_url(self) -> str:
        """Where LISTEN connections go: DATABASE_LISTEN_URL, else DATABASE_URL."""
        return self.database_listen_url or self.require_database_url()

    @property
    def prune_after_seconds(self) -> float | None:
        return None if self.prune_after is None else parse_duration(self.prune_after)

    @property
    def outline_review_timeout_seconds(self) -> float:
        return parse_duration(self.outline_review_timeout)

    @property
    def webhook_retry_for_seconds(self) -> float:
        return parse_duration(self.webhook_retry_for)

    @property
    def allowed_models(self) -> list[str]:
        """The models a request may ask for; the default model is always allowed."""
        return [
            self.openai_model,
            *(m for m in self.openai_allowed_models if m != self.openai_model),
        ]

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigError(
                "DATABASE_URL is not set. Set it to a PostgreSQL URL, for example "
                "postgresql://postgres@127.0.0.1:5432/reportsvc (see .env.example)."
            )
        return self.database_url


def _shown(name: str, value: object) -> str:
    """A rejected value as it may appear in a message: secrets hidden, passwords redacted."""
    if any(word in name for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
        return "'***'"
    if isinstance(value, str) and "URL" in name:
        return repr(redact_database_url(value))
    return repr(value)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one readable `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"  {name}: {error['msg']} (got {_shown(name, error.get('input'))})")
        raise ConfigError("Invalid configuration:\n" + "\n".join(problems)) from None
