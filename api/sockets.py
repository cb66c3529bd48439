"""Bounds on subscription sockets, per process (issue #30, M3).

Without them one token held 400 subscriptions (everyone else's reads 14x slower) and 2,000
idle authenticated sockets held 116 MB for ever. Every socket now counts against:

- the process: at most `ORDERGATE_WS_MAX_SOCKETS` open at once (default 1,000); one more is
  closed at once with 1013 (try again later, the token stays good);
- its client IP until it has authenticated: at most `ORDERGATE_WS_PENDING_PER_IP` (default
  20) sockets that have not sent a valid `connection_init`, and a quarter of the process's
  sockets from all addresses together (anonymous sockets cannot fill the process);
- its account once authenticated: at most `ORDERGATE_WS_SOCKETS_PER_ACCOUNT` sockets
  (default 5) and `ORDERGATE_SUBSCRIPTIONS_PER_ACCOUNT` running subscriptions over all of
  them (default 20); one more socket is closed with 4429, one more subscription is answered
  RATE_LIMITED and the socket stays open;
- time: a socket that carries no subscription for `ORDERGATE_WS_IDLE_SECONDS` (default 60) is
  closed with 1000 `idle` (clients such as graphql-ws reconnect when they next subscribe).

The counts are plain dictionaries owned by the event loop's thread, each entry removed when
its count drops to zero, so they are bounded by the sockets themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from domain.errors import RateLimited

# RFC 6455 1013 "Try Again Later" (also used when the database cannot check a token), and
# 4429 for "too many of this account's sockets" (as HTTP 429).
PROCESS_FULL = 1013
TOO_MANY = 4429
IDLE = 1000


def _down(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


@dataclass
class SocketLimits:
    max_sockets: int = 1000
    pending_per_ip: int = 20
    per_account: int = 5
    subscriptions_per_account: int = 20
    open: int = 0
    waiting: int = 0  # sockets not yet logged in, from every address
    pending: dict[str, int] = field(default_factory=dict)
    sockets: dict[str, int] = field(default_factory=dict)
    subscriptions: dict[str, int] = field(default_factory=dict)

    def admit(self, client_ip: str) -> str | None:
        """A new socket from `client_ip`: None when admitted (count it until `leave`), or why
        not."""
        if self.open >= self.max_sockets:
            return "this server has too many open sockets; try again shortly"
        if self.pending.get(client_ip, 0) >= self.pending_per_ip:
            return "too many sockets from this address are waiting to log in"
        if self.waiting >= max(2, self.max_sockets // 4):
            # Many addresses each under their own bound could still fill the process with
            # sockets that never log in: at most a quarter of it may be waiting.
            return "too many sockets are waiting to log in; try again shortly"
        self.open += 1
        self.waiting += 1
        self.pending[client_ip] = self.pending.get(client_ip, 0) + 1
        return None

    def authenticate(self, client_ip: str, account: str) -> str | None:
        """The socket from `client_ip` logged in as `account`: None when it may stay, or
        why not (it keeps counting as pending until it leaves)."""
        if self.sockets.get(account, 0) >= self.per_account:
            return (
                f"this account already has {self.per_account} open sockets; "
                "subscribe over one of them"
            )
        _down(self.pending, client_ip)
        self.waiting -= 1
        self.sockets[account] = self.sockets.get(account, 0) + 1
        return None

    def leave(self, client_ip: str, account: str | None) -> None:
        self.open -= 1
        if account is None:
            _down(self.pending, client_ip)
            self.waiting -= 1
        else:
            _down(self.sockets, account)

    @contextmanager
    def subscription(self, account: str) -> Iterator[None]:
        """One running subscription of `account`; RateLimited past the account's bound."""
        if self.subscriptions.get(account, 0) >= self.subscriptions_per_account:
            raise RateLimited(
                f"this account already runs {self.subscriptions_per_account} subscriptions; "
                "end one first"
            )
        self.subscriptions[account] = self.subscriptions.get(account, 0) + 1
        try:
            yield
        finally:
            _down(self.subscriptions, account)
