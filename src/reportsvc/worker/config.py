"""How a worker runs: its settings, as one value handed to every part."""

from __future__ import annotations

import msgspec


class WorkerConfig(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    concurrency: int = 64
    claim_batch_size: int = 32
    lease_seconds: float = 15.0
    max_attempts: int = 5
    # Webhook deliveries keep their own schedule; this bounds the attempts the rescuer
    # allows one whose worker keeps dying (WEBHOOK_MAX_ATTEMPTS).
    webhook_max_attempts: int = 30
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 120.0
    step_timeout_seconds: float = 240.0
    job_timeout_seconds: float = 3600.0
    # OUTLINE_REVIEW_TIMEOUT: how long a job's outline may wait for its owner's review.
    outline_review_timeout_seconds: float = 86_400.0
    poll_interval_seconds: float = 1.0
    rescue_interval_seconds: float = 2.0
    shutdown_grace_seconds: float = 10.0
    listen_notify: bool = True
    prune_after_seconds: float | None = None
    prune_every_seconds: float = 600.0
    # A claim passes over steps of an owner with this many running (0: no bound).
    max_running_steps_per_owner: int = 0

    @property
    def heartbeat_seconds(self) -> float:
        """Leases are renewed three times per lease, so one slow renewal never loses one."""
        return self.lease_seconds / 3
