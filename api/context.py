"""The typed request context every resolver gets: session, actor, client IP, loaders."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from strawberry.dataloader import DataLoader

from api import metrics
from api.errors import DENIAL_CODES, error_code
from api.graphql.relay import row_id
from api.outage import is_unavailable
from domain import ratelimit
from domain.access import AccessProfile
from domain.actor import Actor, Origin
from domain.audit import service as audit
from domain.audit.service import Outcome, Subject
from domain.errors import DomainError, RateLimited, Unauthenticated

log = logging.getLogger("ordergate.audit")
MINUTE = dt.timedelta(minutes=1)
REFUSED_PREFIX = "refused:ip:"
# How long a replica that did not answer is left alone before a request tries it again.
REPLICA_REST_SECONDS = 30.0

if TYPE_CHECKING:
    from api.runtime import Runtime


def origin_of(request: Request) -> Origin:
    """Where a request came from, as the edge middleware resolved it."""
    return Origin(
        client_ip=request.state.client_ip,
        peer_ip=request.state.peer_ip,
        user_agent=request.headers.get("user-agent"),
        request_id=request.state.request_id,
    )


async def record_failure(
    session: AsyncSession,
    who: Actor | Subject,
    exc: Exception,
    *,
    action: str,
    operation: str,
    target_type: str | None,
    target_id: object,
) -> None:
    """After a rollback: record that an act was denied or failed, with its contract code, in a
    transaction of its own. Used by every mutation and by the download route."""
    code = error_code(exc)
    try:
        await audit.record(
            session=session,
            who=who,
            action=action,
            operation=operation,
            outcome=Outcome.DENIED if code in DENIAL_CODES else Outcome.FAILURE,
            code=code,
            target_type=target_type,
            target_id=target_id,
            details={"message": exc.message} if isinstance(exc, DomainError) else {},
        )
        await session.commit()
    except Exception:
        await session.rollback()
        log.exception("could not record a failed act", extra={"action": action})


@dataclass
class RequestContext:
    request: Request  # a WebSocket for subscriptions
    runtime: Runtime
    session: AsyncSession
    origin: Origin
    actor: Actor | None = None
    auth_error: Unauthenticated | None = None
    # Coordinates the operation asks for that the caller may not read; reported once each.
    denied_fields: list[str] = field(default_factory=list)
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)
    # GraphQL resolves sibling fields concurrently, but one AsyncSession allows one operation at
    # a time: every resolver that touches the database holds this lock while it does.
    _db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # A websocket's (api/view.py): the `connection_init` payload, the Authorization value it
    # authenticated with and when that token expires (Unix time); and per subscription, the
    # governed fields it asks for (api/graphql/extension.py).
    connection_params: Any = None
    token_header: str | None = None
    token_expires: float | None = None
    read_scope: Any = None
    # The account the socket counts against once logged in, its running subscriptions and
    # since when (monotonic) it has had none (api/sockets.py).
    socket_account: str | None = None
    subscriptions: int = 0
    idle_since: float = 0.0
    _replica_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _replica: AsyncSession | None = None

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise self.auth_error or Unauthenticated("log in first")
        return self.actor

    @property
    def access(self) -> AccessProfile:
        return self.require_actor().access

    @asynccontextmanager
    async def read(self, *, replica: bool = False) -> AsyncIterator[AsyncSession]:
        """The request's session, for one resolver at a time.

        With `replica=True` (read-only resolvers of queries) a streaming replica serves it when
        one is configured, has replayed the caller's own last write, and answers; otherwise
        the primary does. Resolvers that write (an audited read of the audit log) never ask."""
        session = await self._replica_session() if replica else None
        if session is None:
            async with self._db_lock:
                yield self.session
        else:
            async with self._replica_lock:
                yield session

    async def _replica_session(self) -> AsyncSession | None:
        runtime = self.runtime
        if not runtime.replicas or self.actor is None:
            return None
        async with self._replica_lock:
            if self._replica is not None:
                return self._replica
            now = time.monotonic()
            count = len(runtime.replicas)
            turns = [(runtime.replica_turn + 1 + k) % count for k in range(count)]
            awake = [n for n in turns if runtime.replica_resting.get(n, 0.0) <= now]
            if not awake:  # every replica failed lately: the primary, without waiting
                return None
            runtime.replica_turn = turn = awake[0]
            session = runtime.replicas[turn]()
            try:
                await session.connection()  # a replica that does not answer is skipped here
                runtime.replica_resting.pop(turn, None)
                lsn, until = runtime.written_at.get(self.actor.user_id or 0, (None, 0.0))
                if lsn is not None and time.monotonic() < until:
                    caught_up = await session.scalar(
                        text(
                            "SELECT pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS text) AS pg_lsn)"
                        ),
                        {"lsn": lsn},
                    )
                    if not caught_up:  # read your own writes: the primary has them
                        await session.close()
                        return None
                    runtime.written_at.pop(self.actor.user_id or 0, None)
            except Exception as exc:
                await session.close()
                if is_unavailable(exc) or isinstance(exc, OSError):
                    runtime.outage.failed(exc, check="replica")
                    runtime.replica_resting[turn] = time.monotonic() + REPLICA_REST_SECONDS
                    return None
                raise
            self._replica = session
            self.request.state.replica_session = session  # closed by the view
            return session

    async def _remember_write(self) -> None:
        """After a committed write: where the primary's WAL stands, so this account's next
        reads wait for a replica that has replayed it (or go to the primary)."""
        if not self.runtime.replicas or self.actor is None:
            return
        try:
            lsn = await self.session.scalar(text("SELECT pg_current_wal_lsn()::text"))
            await self.session.commit()
        except Exception as exc:  # the write stands; without its position, reads go primary
            log.warning("could not read the WAL position after a write", exc_info=exc)
            lsn = "FFFFFFFF/FFFFFFFF"
        # A replica further behind than this is not waited for: the primary serves meanwhile.
        self.runtime.written_at[self.actor.user_id or 0] = (lsn, time.monotonic() + 60)

    @asynccontextmanager
    async def write(
        self,
        *,
        action: str,
        operation: str,
        target_type: str | None = None,
        target_id: object = None,
    ) -> AsyncIterator[AsyncSession]:
        """One mutation, one transaction: commit on success, roll back on any error.

        The service records the success event inside the transaction. When the mutation fails
        its changes and any success event roll back together, and the failure — denied or
        failed, with the contract code — is recorded in a transaction of its own.
        """
        async with self._db_lock:
            try:
                yield self.session
                await self.session.commit()
                await self._remember_write()
            except Exception as exc:
                if isinstance(exc, DomainError) and exc.persist:
                    # e.g. a request voided because its order changed: the void stands.
                    await self.session.commit()
                else:
                    await self.session.rollback()
                await record_failure(
                    self.session,
                    self.audit_subject,
                    exc,
                    action=action,
                    operation=operation,
                    target_type=target_type,
                    target_id=row_id(target_id),
                )
                raise

    @property
    def audit_subject(self) -> Actor | Subject:
        return self.actor if self.actor is not None else Subject(None, None, (), self.origin)

    async def limit_logins(self, username: str, now: dt.datetime) -> None:
        """Login attempts per client IP and per account, on top of the account lock-out.
        Counted before the password is checked, so guessing costs attempts either way."""
        settings = self.runtime.settings
        async with self._db_lock:
            try:
                try:
                    await ratelimit.hit(
                        session=self.session,
                        key=f"login:ip:{self.origin.client_ip}",
                        limit=settings.login_per_ip_per_minute,
                        per=MINUTE,
                        now=now,
                        what="login attempts from this address",
                    )
                except RateLimited as exc:
                    # Its next attempts this minute are turned away before they are read.
                    self.runtime.door.shut(self.origin.client_ip, exc.details.get("retry_after"))
                    raise
                await ratelimit.hit(
                    session=self.session,
                    # Per account and address: an account-wide count let anyone keep the
                    # owner out with ten wrong passwords a minute from anywhere (issue #30,
                    # M5: no remote kill switch). Guessing from many addresses meets each
                    # address's lock-out after five failures (domain/users/service.py).
                    key=f"login:account:{username.lower()[:64]}:{self.origin.client_ip}",
                    limit=settings.login_per_account_per_minute,
                    per=MINUTE,
                    now=now,
                    what="login attempts for this account",
                )
            except RateLimited as exc:
                metrics.RATE_LIMITED.labels(limit="login").inc()
                await self.session.commit()
                await audit.record(
                    session=self.session,
                    who=Subject(None, username[:64], (), self.origin),
                    action="auth.login",
                    operation="login",
                    outcome=Outcome.DENIED,
                    code=exc.code,
                    details={"reason": "rate_limited"},
                )
                await self.session.commit()
                raise
            await self.session.commit()

    async def _spend(self, *, key: str, limit: int, what: str, label: str, now: dt.datetime) -> int:
        """One hit on a rate-limit counter, committed at once (also when it is refused)."""
        async with self._db_lock:
            try:
                return await ratelimit.hit(
                    session=self.session, key=key, limit=limit, per=MINUTE, now=now, what=what
                )
            except RateLimited as exc:
                metrics.RATE_LIMITED.labels(limit=label).inc()
                if label == "refused":  # an address's budget: the rest wait at the door
                    self.runtime.door.shut(self.origin.client_ip, exc.details.get("retry_after"))
                raise
            finally:
                await self.session.commit()

    async def count_refusal(self, now: dt.datetime) -> int:
        """Count a refused anonymous request against its client IP; returns the count in this
        minute (the first is audited, the rest are summed into one event when the minute
        ends), and raises RateLimited past the budget."""
        return await self._spend(
            key=f"{REFUSED_PREFIX}{self.origin.client_ip}",
            limit=self.runtime.settings.refused_per_ip_per_minute,
            what="refused requests from this address",
            label="refused",
            now=now,
        )

    async def spend_query_budget(self, now: dt.datetime) -> None:
        """Each authenticated operation spends one unit of its account's budget per minute:
        in Redis when configured (api/budget.py), otherwise (or while Redis is down) in the
        database."""
        budget = self.runtime.budget
        window = int(now.timestamp()) // int(MINUTE.total_seconds())
        carried: dict[int, int] = {}
        if budget is not None:
            account = str(self.require_actor().user_id)
            try:
                per_minute = self.runtime.settings.budget_for(self.require_actor().roles)
                if await budget.spend(account, per_minute, window=window):
                    return
            except RateLimited:
                metrics.RATE_LIMITED.labels(limit="account").inc()
                raise
            carried = budget.hand_over(account, window)  # spent in Redis: counts here too
        async with self._db_lock:
            wrote = False
            try:
                wrote = await self.runtime.counters.hit(
                    session=self.session,
                    key=f"queries:{self.require_actor().user_id}",
                    limit=self.runtime.settings.budget_for(self.require_actor().roles),
                    per=MINUTE,
                    now=now,
                    what="requests for this account",
                    carried=carried,
                )
            except RateLimited:
                metrics.RATE_LIMITED.labels(limit="account").inc()
                raise
            finally:
                if wrote:  # written hits are committed at once, also when refused
                    await self.session.commit()

    async def record(self, **event: Any) -> None:
        """Record an event that is not part of a mutation (reads), committed before this
        returns, in a transaction shared with concurrent requests' events (group commit,
        domain/audit/batcher.py). The request's own transaction ends first, so its connection
        is back in the pool for the batch."""
        async with self._db_lock:
            await self.session.commit()
        await self.runtime.audit_batch.record(who=self.audit_subject, **event)
