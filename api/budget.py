"""The per-account request budget in Redis, through the `limits` library (sliding window
counter), when `ORDERGATE_RATE_LIMIT_STORAGE` names one.

Every request spends from this budget, so it is the one rate limit on the hot path: in the
database it costs an upsert and a commit per request (`bench/ratelimit_cost.py`), in Redis a
fraction of a millisecond. Logins and refused anonymous requests stay in the database (rare,
and their summaries go to the audit log). When Redis does not answer, the budget falls back to
the database for that request and the outage is logged once per interval: limits keep
holding, nothing stops.

What an account spent in Redis goes with it to the database (issue #29: with Redis killed, the
fallback started every account at zero, 134 requests of a budget of 100 went through, and an
account that had spent its budget got 20 more). Each process remembers what it spent in Redis
per account in this minute and the last (`spent`, bounded), and hands that to the database
counter at the account's first request counted there. Across processes each hands over its own
share, so the database sees what all of them spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict

from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from domain.errors import RateLimited

log = logging.getLogger("ordergate.app")
# How long a Redis call may take before the request counts in the database instead, and how
# long Redis is then left alone before it is asked again.
REDIS_SECONDS = 0.25
RETRY_AFTER_FAILURE_SECONDS = 5.0
# Accounts whose Redis spending a process remembers for the hand-over (the least recently
# active go first past it).
REMEMBERED_ACCOUNTS = 10_000


def storage_uri(value: str) -> str:
    """`redis://…` as the async storage `limits` expects."""
    return value if value.startswith("async+") else f"async+{value}"


class RedisBudget:
    def __init__(self, uri: str, per_minute: int) -> None:
        self.storage = storage_from_string(storage_uri(uri))
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.item = RateLimitItemPerMinute(per_minute)
        self._items = {per_minute: self.item}
        self._failing_since: float | None = None
        self._skip_until = 0.0
        # account -> {minute window: requests this process let through in Redis}
        self._spent: OrderedDict[str, dict[int, int]] = OrderedDict()

    def _remember(self, account: str, window: int) -> None:
        windows = self._spent.pop(account, {})
        windows = {w: n for w, n in windows.items() if w >= window - 1}
        windows[window] = windows.get(window, 0) + 1
        self._spent[account] = windows
        while len(self._spent) > REMEMBERED_ACCOUNTS:
            self._spent.popitem(last=False)

    def hand_over(self, account: str, window: int) -> dict[int, int]:
        """What this process let `account` spend in Redis in `window` and the one before, to be
        counted in the database now that Redis does not answer; forgotten here once taken."""
        windows = self._spent.pop(account, {})
        return {w: n for w, n in windows.items() if window - 1 <= w <= window}

    async def close(self) -> None:
        """Drop the pooled Redis connections (at shutdown). `limits` has no public way to,
        so this reaches its client through the storage bridge, and tolerates its absence."""
        with contextlib.suppress(Exception):  # a newer `limits` may arrange this otherwise
            self.storage.bridge.get_connection().connection_pool.disconnect()
        await asyncio.sleep(0.01)  # let the closing transports finish on the loop

    async def spend(
        self, account: str, per_minute: int | None = None, *, window: int | None = None
    ) -> bool | None:
        """True when within budget (`per_minute`, else the default), RateLimited past it, None
        when Redis did not answer (the caller then counts in the database, with `hand_over`).
        `window` is the minute the request falls in by the app's clock, under which an
        allowed request is remembered."""
        item = self.item
        if per_minute is not None:
            item = self._items.setdefault(per_minute, RateLimitItemPerMinute(per_minute))
        if time.monotonic() < self._skip_until:
            return None  # Redis failed a moment ago: count in the database without waiting
        try:
            # Redis answers in well under a millisecond; one that does not answer in
            # REDIS_SECONDS (frozen, partitioned) must not hold the request (issue #29: a
            # SIGSTOPped Redis held every request for 60 s).
            async with asyncio.timeout(REDIS_SECONDS):
                allowed = await self.limiter.hit(item, "ordergate-queries", account)
                if not allowed:
                    stats = await self.limiter.get_window_stats(item, "ordergate-queries", account)
        except Exception as exc:  # any storage error: degrade to the database, say so once
            now = time.monotonic()
            self._skip_until = now + RETRY_AFTER_FAILURE_SECONDS
            if self._failing_since is None or now - self._failing_since > 30:
                log.warning(
                    "rate-limit storage unavailable; counting in the database",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                self._failing_since = now
            return None
        self._failing_since = None
        if allowed:
            if window is not None:
                self._remember(account, window)
            return True
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many requests for this account; try again in {retry_after} s",
            retry_after=retry_after,
        )
