"""reportsvc: durable AI report generation on a PostgreSQL-backed queue."""

__version__ = "0.1.0"
