"""Prometheus metrics. The API serves them at /metrics (with the queue's state, read from
the database at scrape time); a worker serves its own on WORKER_METRICS_PORT."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

# --- from the database, refreshed when the API is scraped ------------------------------------
JOBS: Final = Gauge(
    "reportsvc_jobs",
    "Jobs under way by status (internal states: outlining, writing, awaiting_review).",
    ["status"],
)
QUEUE_READY: Final = Gauge(
    "reportsvc_queue_ready", "Steps ready to run now, waiting for a worker.", ["step"]
)
QUEUE_OLDEST_SECONDS: Final = Gauge(
    "reportsvc_queue_oldest_ready_seconds",
    "How long the oldest step ready to run has been waiting.",
    ["step"],
)
QUEUE_RETRYING: Final = Gauge(
    "reportsvc_queue_retrying", "Steps waiting out a retry backoff.", ["step"]
)
QUEUE_RUNNING: Final = Gauge("reportsvc_queue_running", "Steps leased to a worker.", ["step"])

# --- counted by the process itself -------------------------------------------------------------
JOBS_CREATED: Final = Counter("reportsvc_jobs_created", "Jobs created by this API process.")
JOBS_FINISHED: Final = Counter(
    "reportsvc_jobs_finished",
    "Jobs this process ended, by status: completed and failed (workers), cancelled (API).",
    ["status"],
)
STEPS_FINISHED: Final = Counter(
    "reportsvc_steps_finished",
    "Steps this worker finished, by outcome: done, error (to be retried or failed), released "
    "(given back on shutdown or abandoned).",
    ["step", "outcome"],
)
STEPS_IN_FLIGHT: Final = Gauge("reportsvc_steps_in_flight", "Steps this worker is running now.")
MODEL_CALL_SECONDS: Final = Histogram(
    "reportsvc_model_call_seconds",
    "Duration of model calls (the SDK's own retries included).",
    ["purpose"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 240),
)
MODEL_CALL_ERRORS: Final = Counter(
    "reportsvc_model_call_errors",
    "Failed model calls by kind (rate_limited, timeout, connection, server_error, rejected, "
    "malformed).",
    ["purpose", "kind"],
)
MODEL_TOKENS: Final = Counter(
    "reportsvc_model_tokens", "Tokens used, as the model service reported them.", ["model", "type"]
)
WEBHOOK_DELIVERIES: Final = Counter(
    "reportsvc_webhook_deliveries",
    "Webhook delivery attempts this worker made, by outcome: delivered (the receiver "
    "answered 2xx), retrying (it failed; another attempt is scheduled), failed (given up: "
    "410 Gone, a refused address, or the retry window ran out).",
    ["outcome"],
)

OUTLINE_REVIEWS: Final = Counter(
    "reportsvc_outline_reviews",
    "Outline reviews by outcome: approved (the owner's PUT queued the sections; counted by "
    "the API) and expired (OUTLINE_REVIEW_TIMEOUT passed; counted by workers).",
    ["outcome"],
)
SECTION_REWRITES: Final = Counter(
    "reportsvc_section_rewrites",
    "Section rewrites this API process queued (POST /reports/{jobId}/sections/{index}/rewrite).",
)

# --- the shared model quota (workers) ---------------------------------------------------
QUOTA_WAIT_SECONDS: Final = Histogram(
    "reportsvc_quota_wait_seconds",
    "How long model calls waited for their share of the model's quota, by model.",
    ["model"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
QUOTA_EXHAUSTED: Final = Counter(
    "reportsvc_quota_exhausted",
    "Steps given back to the queue because their model's quota was spent for longer than "
    "QUOTA_WAIT_SECONDS, by model.",
    ["model"],
)
MODEL_RATE_LIMITED: Final = Counter(
    "reportsvc_model_rate_limited", "Answers 429 from the model service, by model.", ["model"]
)
# --- read from the database by the API -----------------------------------------------------
QUOTA_LIMIT: Final = Gauge(
    "reportsvc_model_quota_limit",
    "A model's limit per minute (configured or learned), by unit: requests, tokens.",
    ["model", "unit"],
)
QUOTA_REMAINING: Final = Gauge(
    "reportsvc_model_quota_remaining",
    "What the provider's last answer said is left, by model and unit.",
    ["model", "unit"],
)
QUOTA_PAUSED_SECONDS: Final = Gauge(
    "reportsvc_model_quota_paused_seconds",
    "How long a model is still paused for after a 429, by model.",
    ["model"],
)

# --- sources -------------------------------------------------------------------------------
RETRIEVAL_SECONDS: Final = Histogram(
    "reportsvc_retrieval_seconds",
    "Duration of a section's search of its job's passages (reports with sources).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)
SECTION_PASSAGES: Final = Counter(
    "reportsvc_section_passages",
    "Passages given to section prompts (reports with sources).",
)
SECTIONS_WITHOUT_PASSAGES: Final = Counter(
    "reportsvc_sections_without_passages",
    "Sections of reports with sources that no passage was relevant to.",
)
CITATIONS: Final = Counter(
    "reportsvc_citations",
    "Citations in section answers, by outcome: kept (a passage the section was given), "
    "removed (a number it was not given).",
    ["outcome"],
)
