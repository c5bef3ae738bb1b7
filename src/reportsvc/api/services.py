"""What handlers need, created once per process and injected as one dependency."""

from __future__ import annotations

import asyncpg

from reportsvc.api.events import EventHub
from reportsvc.api.guard import Authenticator, RateLimiter
from reportsvc.api.metrics import QueueMetrics
from reportsvc.db.migrate import head_revision
from reportsvc.queue.notifications import Publisher
from reportsvc.queue.operations import OperationsStore
from reportsvc.queue.reports import ReportStore
from reportsvc.queue.sources import SourceStore
from reportsvc.queue.tokens import TokenStore
from reportsvc.settings import Settings


class Services:
    """What handlers need, created once per process at start-up and injected."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events = EventHub(
            listen_url=settings.require_listen_url() if settings.listens else None,
            poll_interval=settings.event_poll_interval_seconds,
        )
        self.schema_head = head_revision()
        self.rate_limit = RateLimiter(settings.rate_limit_per_minute)
        self._reports: ReportStore | None = None

    def connect(self, pool: asyncpg.Pool) -> None:
        """Build the stores on the process's pool (at start-up)."""
        self.events.use_pool(pool)
        self.publisher = Publisher(pool)
        self._reports = ReportStore(
            pool,
            self.publisher,
            max_pending=self.settings.max_pending_jobs,
            max_pending_per_owner=self.settings.max_pending_jobs_per_owner,
        )
        self.sources = SourceStore(pool)
        self.operations = OperationsStore(pool, self.publisher)
        self.queue_metrics = QueueMetrics(self.operations)
        self.auth = Authenticator(self.settings, TokenStore(pool))

    @property
    def reports(self) -> ReportStore:
        assert self._reports is not None, "the application has not started"
        return self._reports
