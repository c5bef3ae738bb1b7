"""The HTTP API: Litestar handlers over the queue store. Never imports the worker."""
