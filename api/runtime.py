"""The long-lived parts of a running app, built once from settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth.tokens import TokenService
from api.door import Door
from api.feed import EventFeed
from api.outage import OutageLog
from api.settings import Settings, checkpoint_key, sealer
from api.sockets import SocketLimits
from domain import ratelimit
from domain.access import PolicyDecisionPoint
from domain.approvals.service import Deployment
from domain.audit.batcher import AuditBatcher
from domain.audit.keys import CheckpointKey
from domain.db import create_engine, database_timeouts, session_factory, utcnow
from domain.exports.service import ExportSettings
from domain.notify.mail import Mailer
from domain.sealed import Sealer


@dataclass
class PolicyWatch:
    """What the policy watcher has already reported, so it reports each thing once."""

    refused: set[str] = field(default_factory=set)  # versions refused so far
    missing: bool = False


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pdp: PolicyDecisionPoint
    tokens: TokenService
    checkpoint_key: CheckpointKey
    # Seals webhook secrets at rest and opens them to sign deliveries (domain/sealed.py).
    sealer: Sealer
    deployment: Deployment
    exports: ExportSettings
    # Work started by a request that outlives it (producing an export file).
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    policy_watch: PolicyWatch = field(default_factory=PolicyWatch)
    # One log line per interval while the database is down, not one per request.
    outage: OutageLog = field(default_factory=OutageLog)
    # Every pooled connection busy: overload, logged apart from an outage.
    overload: OutageLog = field(
        default_factory=lambda: OutageLog(message="database pool exhausted: requests waited")
    )
    # The time rate limits count in; tests pin it so a run never straddles a window.
    clock: Callable[[], dt.datetime] = utcnow
    # The per-account request budget in Redis (api/budget.py), when configured.
    budget: Any = None
    # Otherwise (and while Redis is down) in the database, written in batches (ratelimit.py).
    counters: ratelimit.BatchedCounter = field(default_factory=ratelimit.BatchedCounter)
    # Streaming replicas for queries (DATABASE_REPLICA_URLS), and for read-your-writes the WAL
    # position of each account's last committed write, which a replica must have replayed
    # before it serves that account (api/context.py).
    replicas: list[async_sessionmaker[AsyncSession]] = field(default_factory=list)
    replica_engines: list[AsyncEngine] = field(default_factory=list)
    written_at: dict[int, tuple[str, float]] = field(default_factory=dict)
    replica_turn: int = 0
    # A replica that did not answer is left alone until this monotonic time (one entry per
    # replica): a frozen one costs one request its connect timeout, not every read (#29).
    replica_resting: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.replicas = [session_factory(engine) for engine in self.replica_engines]
        # Events recorded on their own (sensitive reads, refusals), committed in groups.
        self.audit_batch = AuditBatcher(self.sessions)
        # Wakes `orderEvents` subscribers when events commit (api/feed.py).
        self.feed = EventFeed(
            self.sessions, interval=self.settings.event_poll_seconds, outage=self.outage
        )
        # Addresses past their budget, turned away before their requests are read.
        self.door = Door(lambda: self.clock(), token_ok=self._token_ok)
        # Bounds on subscription sockets (api/sockets.py).
        self.sockets = SocketLimits(
            max_sockets=self.settings.ws_max_sockets,
            pending_per_ip=self.settings.ws_pending_per_ip,
            per_account=self.settings.ws_sockets_per_account,
            subscriptions_per_account=self.settings.subscriptions_per_account,
        )
        # Low-stock alerts go out by mail (domain/notify/mail.py).
        self.mailer = Mailer(
            sender=self.settings.mail_from,
            smtp_url=self.settings.smtp_url,
            outbox_dir=self.settings.data_dir / "mail",
        )

    def _token_ok(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        try:
            self.tokens.verify(token.strip())
        except Exception:  # any refusal: not a token of ours
            return False
        return True

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain(self, grace: float | None = None) -> None:
        """Wait for background work (tests, and shutdown). With a timeout, work still running
        then is cancelled: an export being written stays APPROVED and the next start's sweep
        produces it again."""
        try:
            async with asyncio.timeout(grace):
                while self.background:
                    await asyncio.gather(*list(self.background), return_exceptions=True)
        except TimeoutError:
            for task in list(self.background):
                task.cancel()
            await asyncio.gather(*list(self.background), return_exceptions=True)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = create_engine(
            settings.database_url,
            pool_pre_ping=True,
            **database_timeouts(
                settings.database_url,
                connect=settings.db_connect_timeout_seconds,
                statement=settings.db_statement_timeout_seconds,
                pool=settings.db_pool_timeout_seconds,
                pool_size=settings.db_pool_size,
            ),
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            pdp=PolicyDecisionPoint(settings.policy_dir),
            checkpoint_key=checkpoint_key(settings),
            sealer=sealer(settings),
            exports=ExportSettings(
                directory=settings.data_dir / "exports",
                link_secret=hashlib.sha256(
                    b"export-links:" + settings.token_keys[settings.signing_kid].encode()
                ).digest(),
                timezone=settings.timezone,
                retention=dt.timedelta(seconds=settings.export_retention_seconds),
                max_attempts=settings.export_max_attempts,
                retry_delay=dt.timedelta(seconds=settings.export_retry_seconds),
            ),
            deployment=Deployment(
                audience=settings.audience,
                ttl=dt.timedelta(seconds=settings.approval_ttl_seconds),
            ),
            tokens=TokenService(
                keys=settings.token_keys,
                issuer=settings.issuer,
                audience=settings.audience,
                ttl_seconds=settings.token_ttl_seconds,
            ),
            budget=_budget(settings),
            replica_engines=[
                create_engine(
                    url,
                    pool_pre_ping=True,
                    **database_timeouts(
                        url,
                        connect=settings.db_connect_timeout_seconds,
                        statement=settings.db_statement_timeout_seconds,
                        pool=settings.db_pool_timeout_seconds,
                        pool_size=settings.db_pool_size,
                    ),
                )
                for url in settings.replica_urls
            ],
        )


def _budget(settings: Settings) -> Any:
    if settings.rate_limit_storage is None:
        return None
    from api.budget import RedisBudget  # `limits` is needed only with Redis configured

    return RedisBudget(settings.rate_limit_storage, settings.queries_per_account_per_minute)
