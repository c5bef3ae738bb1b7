"""The `StepRunner` for webhook steps: one signed POST per attempt.

An attempt sends the event's body (taken from the job by the first attempt, stored, and
sent unchanged by every later one), signed for this attempt's time, with a timeout
(`WEBHOOK_TIMEOUT_SECONDS`), following no redirect. Only a 2xx answer delivers it. `410
Gone` and a refused address end it at once; any other failure is retried, with jittered
exponential backoff (never sooner than a `Retry-After` asks), until the retry window
(`WEBHOOK_RETRY_FOR`, counted from the first attempt) or `WEBHOOK_MAX_ATTEMPTS` runs out.
The sender names the delay itself (`StepError.retry_in`), so the worker keeps its own
schedule for model steps.

Unless WEBHOOK_ALLOW_PRIVATE_NETWORKS is set, the connection is checked against the
address actually dialled: the resolver drops refused addresses, and the socket factory
refuses to open a socket to one (which also covers a URL whose host is an IP address).
"""

from __future__ import annotations

import email.utils
import socket
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Final

import aiohttp
import msgspec
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import AddrInfoType

from reportsvc import __version__, failures
from reportsvc.backoff import retry_delay
from reportsvc.db.errors import DATABASE_UNAVAILABLE
from reportsvc.domain import Delivery, Step, StepResult
from reportsvc.errors import StepError
from reportsvc.job_view import Prices
from reportsvc.metrics import WEBHOOK_DELIVERIES
from reportsvc.queue.reports import ReportStore
from reportsvc.queue.steps import StepQueue
from reportsvc.webhooks.addresses import AddressRefusedError, refusal
from reportsvc.webhooks.events import event_body, webhook_id
from reportsvc.webhooks.signing import Signer

log = structlog.get_logger("reportsvc.webhooks")

USER_AGENT: Final = f"reportsvc-webhooks/{__version__}"
_DELIVERED = WEBHOOK_DELIVERIES.labels("delivered")
_RETRYING = WEBHOOK_DELIVERIES.labels("retrying")
_FAILED = WEBHOOK_DELIVERIES.labels("failed")


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True):
    secrets: list[str]
    allow_private_networks: bool = False
    timeout_seconds: float = 15.0
    retry_for_seconds: float = 3 * 86_400.0
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 21_600.0
    max_attempts: int = 40
    # For the job's estimatedCostUsd in the body, as GET shows it.
    prices: Prices = msgspec.field(default_factory=dict)
    # OUTLINE_REVIEW_TIMEOUT, for reviewDueAt in the body, as GET shows it.
    review_timeout_seconds: float | None = None


class PublicResolver(AbstractResolver):
    """Resolves with `inner`, keeping only the addresses a webhook may be sent to."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        allowed: list[ResolveResult] = []
        refused: AddressRefusedError | None = None
        for result in await self._inner.resolve(host, port, family):
            address = ip_address(result["host"])
            reason = refusal(address)
            if reason is None:
                allowed.append(result)
            else:
                refused = AddressRefusedError(host, address, reason)
        if not allowed and refused is not None:
            raise refused
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def public_socket(addr_info: AddrInfoType) -> socket.socket:
    """The socket for one address about to be dialled, unless the address is refused."""
    family, type_, proto, _, sockaddr = addr_info
    address = ip_address(sockaddr[0])
    reason = refusal(address)
    if reason is not None:
        raise AddressRefusedError(str(sockaddr[0]), address, reason)
    return socket.socket(family=family, type=type_, proto=proto)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header (seconds, or an HTTP date) as seconds from `now`."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class WebhookSender:
    def __init__(
        self,
        queue: StepQueue,
        reports: ReportStore,
        config: WebhookConfig,
        *,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._queue = queue
        self._reports = reports
        self._config = config
        self._signer = Signer(config.secrets) if config.secrets else None
        # How host names are resolved (tests resolve names of their own).
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, step: Step) -> StepResult:
        delivery = step.delivery
        if delivery is None:
            raise StepError("a webhook step came without its delivery", retryable=False)
        if self._signer is None:
            raise self._retry_or_give_up(step, delivery, failures.WEBHOOK_UNSIGNED)
        body = delivery.body if delivery.body is not None else await self._snapshot(step)
        message_id = webhook_id(step.job_id, step.position)
        headers = self._signer.headers(message_id, body, datetime.now(UTC))
        ids = {"job_id": str(step.job_id), "webhook_id": message_id, "attempt": step.attempt}
        try:
            status, retry_after = await self._post(delivery.url, body, headers)
        except TimeoutError:
            reason = failures.webhook_timed_out(self._config.timeout_seconds)
            log.warning("webhook attempt timed out", **ids)
            raise self._retry_or_give_up(step, delivery, reason) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefusedError):
                refused = exc.os_error
                log.warning(
                    "webhook refused: its host resolves to an address it may not reach",
                    address=str(refused.address),
                    why=refused.reason,
                    **ids,
                )
                _FAILED.inc()
                raise StepError(failures.WEBHOOK_REFUSED_ADDRESS, retryable=False) from None
            why = exc.os_error.strerror or type(exc.os_error).__name__
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                why = "its host name could not be resolved"
            log.warning("webhook attempt could not connect", error=str(exc), **ids)
            raise self._retry_or_give_up(
                step, delivery, failures.webhook_unreachable(why)
            ) from None
        except aiohttp.ClientError as exc:
            log.warning("webhook attempt failed", error=f"{type(exc).__name__}: {exc}", **ids)
            reason = failures.webhook_unreachable(type(exc).__name__)
            raise self._retry_or_give_up(step, delivery, reason) from None
        if 200 <= status < 300:
            log.info("webhook delivered", status=status, **ids)
            _DELIVERED.inc()
            return StepResult(content=body, status_code=status)
        log.warning("webhook refused by its receiver", status=status, **ids)
        if status == 410:
            _FAILED.inc()
            raise StepError(failures.WEBHOOK_GONE, retryable=False, status=status)
        raise self._retry_or_give_up(
            step,
            delivery,
            failures.webhook_answered(status),
            status=status,
            retry_after=retry_after,
        )

    async def _snapshot(self, step: Step) -> str:
        """The first attempt takes the job as GET shows it now, and stores the body before
        sending it, so that every retry sends the very same bytes."""
        assert step.delivery is not None
        delivery = step.delivery
        try:
            job = await self._reports.get_job(step.job_id)
            if job is None:
                _FAILED.inc()
                raise StepError(failures.WEBHOOK_JOB_GONE, retryable=False)
            body = event_body(
                delivery.event,
                delivery.occurred_at,
                job,
                self._config.prices,
                review_timeout_seconds=self._config.review_timeout_seconds,
            )
            stored = await self._queue.keep_webhook_body(step, body)
        except DATABASE_UNAVAILABLE as exc:
            reason = "the database was unreachable before the first attempt"
            log.warning("webhook snapshot failed", error=str(exc), job_id=str(step.job_id))
            raise self._retry_or_give_up(step, delivery, reason) from None
        if stored is None:  # the lease was lost: whatever this attempt does is refused
            raise StepError("the step was taken over by another worker", retryable=True)
        return stored

    async def _post(self, url: str, body: str, headers: dict[str, str]) -> tuple[int, float | None]:
        async with self._client().post(
            url, data=body.encode(), headers=headers, allow_redirects=False
        ) as response:
            return response.status, retry_after_seconds(
                response.headers.get("Retry-After"), datetime.now(UTC)
            )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver: AbstractResolver = self._resolver or aiohttp.ThreadedResolver()
            guard = not self._config.allow_private_networks
            connector = aiohttp.TCPConnector(
                resolver=PublicResolver(resolver) if guard else resolver,
                socket_factory=public_socket if guard else None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
                trust_env=False,  # no proxy from the environment: we dial what we checked
            )
        return self._session

    def _retry_or_give_up(
        self,
        step: Step,
        delivery: Delivery,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> StepError:
        """Another attempt after a backoff (never sooner than `retry_after`), unless that
        would fall after the retry window or the attempts are used up."""
        config = self._config
        delay = retry_delay(step.attempt, config.retry_base_seconds, config.retry_max_seconds)
        if retry_after is not None:
            delay = max(delay, retry_after)
        window_ends = delivery.first_attempt_at + timedelta(seconds=config.retry_for_seconds)
        too_late = datetime.now(UTC) + timedelta(seconds=delay) > window_ends
        if too_late or step.attempt >= config.max_attempts:
            _FAILED.inc()
            message = failures.webhook_gave_up(reason, step.attempt)
            return StepError(message, retryable=False, status=status)
        _RETRYING.inc()
        return StepError(reason, retryable=True, retry_in=delay, status=status)
