"""When the database is down or too slow: a clean `503 UNAVAILABLE` for the client, and one
log line per interval for the operator instead of a traceback per request.

What counts as "unavailable" is decided by walking the exception and its causes: connection
refused or lost, a connect, statement or pool-checkout timeout, SQLite's "database is locked"
after its busy timeout. Anything else stays INTERNAL.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

from sqlalchemy import exc as sa_exc

log = logging.getLogger("ordergate.outage")

_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # pool checkout
    asyncio.TimeoutError,
    TimeoutError,
    ConnectionError,
    socket.gaierror,  # the database's host name does not resolve
)
_POSTGRES_UNAVAILABLE = {
    "QueryCanceledError",  # statement_timeout
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "CannotConnectNowError",
    "TooManyConnectionsError",
    "AdminShutdownError",
    "CrashShutdownError",
    "InterfaceError",
    "InternalClientError",
}


def is_unavailable(error: BaseException | None) -> bool:
    """True when `error`, or anything that caused it, says the database cannot answer now."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, _UNAVAILABLE_TYPES):
            return True
        if type(error).__name__ in _POSTGRES_UNAVAILABLE:
            return True
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
    return False


def is_overloaded(error: BaseException | None) -> bool:
    """True when the database answers but this process has no connection free for the request
    within its wait: every pooled connection is busy (SQLAlchemy's pool checkout timeout).
    That is overload, not an outage, and is answered and logged as such (issue #29)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa_exc.TimeoutError):
            return True
        error = error.__cause__ or error.__context__
    return False


class OutageLog:
    """Logs an outage once per interval, with how many failures it stands for."""

    def __init__(
        self, interval_seconds: float = 30.0, message: str = "database unavailable"
    ) -> None:
        self.interval = interval_seconds
        self.message = message
        self._last = -float("inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def failed(self, error: BaseException, **extra: Any) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        log.error(
            self.message,
            extra={
                "error": f"{type(error).__name__}: {error}"[:300],
                "failures_since_last_line": suppressed,
                "next_line_within_seconds": self.interval,
                **extra,
            },
        )
