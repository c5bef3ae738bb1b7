"""What handlers need, created once per process and injected as one dependency."""

from __future__ import annotations

from reportsvc.api.events import EventHub
from reportsvc.api.guard import Admission, Authenticator, RateLimiter
from reportsvc.db.migrate import head_revision
from reportsvc.queue.store import Store
from reportsvc.settings import Settings


class Services:
    """What handlers need, created once per process at start-up and injected."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events = EventHub(settings.require_database_url())
        self.schema_head = head_revision()
        self.rate_limit = RateLimiter(settings.rate_limit_per_minute)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None, "the application has not started"
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        self._store = store
        self.auth = Authenticator(self.settings, store)
        self.admission = Admission(self.settings.max_pending_jobs, store)
