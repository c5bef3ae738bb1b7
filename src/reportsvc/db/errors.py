"""Which database errors mean "not reachable right now" (wait and retry, or answer 503)."""

from __future__ import annotations

import asyncpg

from reportsvc.errors import DatabaseUnavailableError

DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,
    OSError,  # connection refused or reset, host unreachable
    TimeoutError,  # connect or command timeout
    asyncpg.PostgresConnectionError,  # the connection broke or was never made
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.OperatorInterventionError,  # shutdown, crash recovery, "starting up"
    asyncpg.TooManyConnectionsError,
    # Every host of a multi-host URL answered, none accepts writes (target_session_attrs=
    # read-write mid-failover: the old primary gone or demoted, the standby not yet promoted).
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)

# Transient conflicts: the same statement will succeed when run again.
RETRYABLE_CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
