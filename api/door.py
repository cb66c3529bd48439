"""Addresses past their budget are turned away at the door (issue #30: the anonymous flood).

An address that has spent its minute's budget of refused anonymous requests
(`ORDERGATE_REFUSED_PER_IP_PER_MINUTE`) or of logins (`ORDERGATE_LOGIN_PER_IP_PER_MINUTE`)
would be refused anyway until the minute ends; but each refusal still read and parsed its
request, walked its document, touched the database and, for logins, wrote an audit event.
Under a flood from one address that kept the event loop so busy that `/healthz` waited
0.5 s (p99) and the audit chain grew by one event per wrong password. From the moment the
budget runs out, the edge middleware answers the address's unauthenticated requests
(`/graphql` without a valid token — any `Authorization` header is not enough — and
`/exports/…/download`) with 429
`RATE_LIMITED` and `Retry-After` before reading their body: no parsing, no database, no
audit event and no access-log line each. The middleware counts them instead; the
housekeeping job records one `auth.refusals` event per address and minute with the count,
and logs one line when an address is shut out. Requests with a token are the account's
business (its own budget) and pass.

The map is bounded (`CAPACITY` addresses; expired entries go first, then the oldest), per
process, and follows the injectable clock, as the budgets themselves do.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

log = logging.getLogger("ordergate.access")

CAPACITY = 10_000


class Door:
    def __init__(
        self,
        clock: Callable[[], dt.datetime],
        token_ok: Callable[[str], bool] = lambda _header: False,
    ) -> None:
        self.clock = clock
        # Whether an Authorization header carries a token this server signed and that has
        # not expired (a signature check, no database): any header would otherwise pass.
        self.token_ok = token_ok
        self._shut: dict[str, dt.datetime] = {}
        self._turned_away: dict[str, int] = {}

    def shut(self, address: str | None, retry_after: object) -> None:
        """Turn `address` away for `retry_after` seconds (the budget's own answer)."""
        if not address or not isinstance(retry_after, int) or retry_after <= 0:
            return
        now = self.clock()
        if address not in self._shut and len(self._shut) >= CAPACITY:
            for ip in [ip for ip, until in self._shut.items() if until <= now]:
                del self._shut[ip]
            if len(self._shut) >= CAPACITY:
                del self._shut[next(iter(self._shut))]
        until = now + dt.timedelta(seconds=retry_after)
        if self._shut.get(address, now) <= now:
            log.warning(
                "address turned away at the door",
                extra={"client_ip": address, "until": until.isoformat()},
            )
        self._shut[address] = until

    def turned_away(self, address: str | None, authorization: str | None = None) -> int | None:
        """Seconds left when a request from `address` is to be turned away now (and count
        it), else None. A request with a valid token passes: its account's budget applies."""
        if not address:
            return None
        until = self._shut.get(address)
        if until is None:
            return None
        left = (until - self.clock()).total_seconds()
        if left <= 0:
            del self._shut[address]
            return None
        if authorization is not None and self.token_ok(authorization):
            return None
        if address in self._turned_away or len(self._turned_away) < CAPACITY:
            self._turned_away[address] = self._turned_away.get(address, 0) + 1
        return max(1, int(left + 0.999))

    def drain(self) -> dict[str, int]:
        """The counts since the last drain, per address (for the per-minute audit summary)."""
        counts, self._turned_away = self._turned_away, {}
        return counts
