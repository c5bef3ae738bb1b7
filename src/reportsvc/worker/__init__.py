"""The worker process: claims steps from the queue, runs them, writes their results."""

from reportsvc.worker.config import WorkerConfig
from reportsvc.worker.outages import DATABASE_ERRORS
from reportsvc.worker.worker import Worker

__all__ = ["DATABASE_ERRORS", "Worker", "WorkerConfig"]
