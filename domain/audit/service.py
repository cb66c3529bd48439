"""Recording, reading and verifying the audit log."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from domain import pagination, pending
from domain.access import Action
from domain.actor import Actor, Origin
from domain.audit.chain import (
    AT_INDEX,
    FIELDS,
    GENESIS,
    SORTED_FIELDS,
    canonical_json,
    compute_hash,
    digest_around_seq,
    format_time,
    hash_of_row,
    stored_time,
)
from domain.audit.keys import CheckpointKey
from domain.audit.models import AuditCheckpoint, AuditEvent, AuditHead, AuditPending
from domain.db import utcnow
from domain.errors import BadInput

ORDERING = "audit:SEQ:DESC"
VERIFY_BATCH = 10_000


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


@dataclass(frozen=True)
class Subject:
    """Who an event is about when there may be no authenticated actor (a failed login)."""

    user_id: int | None
    username: str | None
    roles: Sequence[str] = ()
    origin: Origin = field(default_factory=Origin)

    @classmethod
    def of(cls, actor: Actor) -> Subject:
        return cls(actor.user_id, actor.username, sorted(actor.roles), actor.origin)


def _clip(value: str | None, size: int) -> str | None:
    """Fit a value into its column. A longer one keeps its start and a digest of the whole,
    so two long values stay distinguishable and nothing overflows the column (an overflow
    would fail the transaction, and with it the event)."""
    if value is None or len(value) <= size:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{value[: size - 17]}~{digest}"


# Core statements on the tables, built once: the ORM's bulk paths would re-evaluate them for
# session synchronisation on every call, which costs more than the writes themselves.
_HEAD = AuditHead.__table__
_CLAIM_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + bindparam("n"))
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)
_INSERT_EVENT = insert(AuditEvent.__table__)
_QUEUE_EVENT = insert(AuditPending.__table__)
_PENDING = "audit"

# Called with the seconds each append took (the API feeds its metrics with it); the domain
# knows nothing of how it is measured.
append_observers: list[Callable[[float], None]] = []


async def record(
    *,
    session: AsyncSession,
    who: Actor | Subject,
    action: str,
    outcome: Outcome = Outcome.SUCCESS,
    operation: str | None = None,
    target_type: str | None = None,
    target_id: object = None,
    code: str | None = None,
    details: Mapping[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> None:
    """Add one event to the chain in the caller's transaction.

    The event is appended when that transaction commits, and only then: the head row is
    claimed, every event of the transaction inserted and the transaction committed together
    (`_append_pending`), so the head's lock (PostgreSQL: a row lock; SQLite: the write lock)
    is held for two statements and the commit — not across the business work before them.
    A rolled-back transaction appends nothing, so the sequence has no gaps and the chain no
    forks.
    """
    subject = who if isinstance(who, Subject) else Subject.of(who)
    event = {
        "at": at or utcnow(),
        "actor_id": subject.user_id,
        "username": _clip(subject.username, 64),
        "roles": canonical_json(sorted(subject.roles)),
        "client_ip": _clip(subject.origin.client_ip, 64),
        "peer_ip": _clip(subject.origin.peer_ip, 64),
        "user_agent": _clip(subject.origin.user_agent, 512),
        "request_id": _clip(subject.origin.request_id, 64),
        "operation": _clip(operation, 64),
        "action": _clip(action, 64),
        "target_type": _clip(target_type, 64),
        "target_id": None if target_id is None else _clip(str(target_id), 64),
        "outcome": str(outcome),
        "code": _clip(code, 32),
        "details": canonical_json(dict(details or {})),
    }
    pending.add(session.sync_session, _PENDING, event)


async def write_pending(session: AsyncSession) -> None:
    """Write the events this transaction has recorded so far now rather than at COMMIT
    (PostgreSQL: queued for the deferred trigger, which still chains them inside COMMIT;
    SQLite: chained now, under the write lock the transaction holds anyway). For a transaction
    about to lock a contended row: what is written before the lock is not written while
    holding it. A rollback still takes them away; later events go at COMMIT as usual."""
    await session.run_sync(_append_pending)


@sa_event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    """Chain every event the transaction recorded. PostgreSQL: queue them in audit_pending,
    where a deferred trigger numbers, hashes and moves them while the commit runs, so the
    head's lock never waits on the app (migration 0009). SQLite: claim the head, chain and
    insert here (its write lock serialises writers anyway)."""
    events = pending.take(session, _PENDING)
    if not events:
        return
    started = time.perf_counter()
    if session.get_bind().dialect.name == "postgresql":
        rows = []
        for event in events:
            head, tail = digest_around_seq(event)
            rows.append({**event, "digest_head": head, "digest_tail": tail})
        session.execute(_QUEUE_EVENT, rows)
        _observe(started, len(rows))
        return
    last_seq, prev_hash = session.execute(_CLAIM_HEAD, {"n": len(events)}).one()
    rows = []
    for seq, event in enumerate(events, start=last_seq - len(events) + 1):
        ordered = {"seq": seq, **event}
        digest = compute_hash(prev_hash, ordered)
        rows.append({**ordered, "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest
    # The insert trigger moves audit_head.hash to each event's hash (see migration 0002).
    session.execute(_INSERT_EVENT, rows)
    _observe(started, len(rows))


def _observe(started: float, count: int) -> None:
    elapsed = (time.perf_counter() - started) / count
    for observe in append_observers:
        for _ in range(count):
            observe(elapsed)


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    ip: str | None = None
    outcome: str | None = None
    time_from: dt.datetime | None = None
    time_to: dt.datetime | None = None


def _filtered(stmt: Any, flt: AuditFilter) -> Any:
    if flt.time_from and flt.time_to and flt.time_from > flt.time_to:
        raise BadInput("`from` is after `to`")
    conditions = {
        AuditEvent.username: flt.actor,
        AuditEvent.action: flt.action,
        AuditEvent.target_type: flt.target_type,
        AuditEvent.target_id: flt.target_id,
        AuditEvent.client_ip: flt.ip,
        AuditEvent.outcome: flt.outcome,
    }
    for column, value in conditions.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if flt.time_from is not None:
        stmt = stmt.where(AuditEvent.at >= flt.time_from)
    if flt.time_to is not None:
        stmt = stmt.where(AuditEvent.at < flt.time_to)
    return stmt


async def list_events(
    *,
    session: AsyncSession,
    actor: Actor,
    flt: AuditFilter | None = None,
    first: int | None = None,
    after: str | None = None,
    want_total: bool = True,
) -> pagination.Page[AuditEvent]:
    """Newest first. Reading the log is itself recorded, in the caller's transaction."""
    actor.access.require(Action.AUDIT_READ)
    flt = flt or AuditFilter()
    if flt.outcome is not None and flt.outcome not in set(Outcome):
        raise BadInput(f"outcome is one of {', '.join(Outcome)}")
    page = await pagination.by_id(
        session,
        _filtered(select(AuditEvent), flt),
        AuditEvent.seq,
        ordering=ORDERING,
        first=first,
        after=after,
        descending=True,
        want_total=want_total,
    )
    await record(
        session=session,
        who=actor,
        action="audit.read",
        operation="auditEvents",
        details={
            "filter": {
                k: (format_time(v) if isinstance(v, dt.datetime) else v)
                for k, v in vars(flt).items()
                if v is not None
            },
            "returned": len(page.items),
        },
    )
    return page


async def iter_events(
    session: AsyncSession,
    *,
    time_from: dt.datetime | None = None,
    time_to: dt.datetime | None = None,
    batch: int = 5000,
) -> AsyncIterator[dict[str, Any]]:
    """Every event in sequence order as plain dicts, streamed in batches."""
    columns = [getattr(AuditEvent, name) for name in (*FIELDS, "prev_hash", "hash")]
    last = 0
    while True:
        stmt = select(*columns).where(AuditEvent.seq > last)
        if time_from is not None:
            stmt = stmt.where(AuditEvent.at >= time_from)
        if time_to is not None:
            stmt = stmt.where(AuditEvent.at < time_to)
        rows = (await session.execute(stmt.order_by(AuditEvent.seq).limit(batch))).all()
        if not rows:
            return
        for row in rows:
            yield row._asdict()
        last = rows[-1].seq


# ---- checkpoints and verification -------------------------------------------------------------


def _checkpoint_message(seq: int, digest: str, created_at: dt.datetime) -> bytes:
    return canonical_json(
        {"seq": seq, "hash": digest, "created_at": format_time(created_at)}
    ).encode()


async def create_checkpoint(
    *, session: AsyncSession, key: CheckpointKey, now: dt.datetime | None = None
) -> AuditCheckpoint | None:
    """Sign the current head; None when nothing was appended since the last checkpoint."""
    head = await session.scalar(select(AuditHead).where(AuditHead.id == 1))
    assert head is not None, "audit_head is seeded by the migrations"
    last = await session.scalar(select(func.max(AuditCheckpoint.seq)))
    if head.seq == 0 or (last is not None and last >= head.seq):
        return None
    now = now or utcnow()
    checkpoint = AuditCheckpoint(
        seq=head.seq,
        hash=head.hash,
        created_at=now,
        key_fingerprint=key.fingerprint,
        signature=key.sign(_checkpoint_message(head.seq, head.hash, now)),
    )
    session.add(checkpoint)
    await session.flush()
    return checkpoint


def checkpoint_record(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as JSON, to be kept somewhere the database's administrators cannot write."""
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "created_at": format_time(checkpoint.created_at),
        "key_fingerprint": checkpoint.key_fingerprint,
        "signature": checkpoint.signature,
    }


_RAW_BATCH_SQL = (
    f"SELECT {', '.join(SORTED_FIELDS)}, prev_hash, hash FROM audit_events "  # noqa: S608
    "WHERE seq > {after:d} ORDER BY seq LIMIT {limit:d}"
)


def _raw_batch(connection: Connection, after: int) -> list[tuple[Any, ...]]:
    """The next batch of events as the driver's plain tuples, in sorted field order.

    Verification must keep up with logs of millions of events; going around SQLAlchemy's
    result rows and type conversion (a datetime built per event only to be formatted back)
    halves its cost. The statement is constant but for two integers.
    """
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_RAW_BATCH_SQL.format(after=int(after), limit=VERIFY_BATCH))
        return cursor.fetchall()
    finally:
        cursor.close()


@dataclass
class Verification:
    events: int = 0
    head_seq: int = 0
    checkpoints: int = 0
    last_checkpoint: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, seq: int | None, message: str) -> None:
        if seq is not None and self.first_bad_seq is None:
            self.first_bad_seq = seq
        self.problems.append(message)


async def verify(
    *,
    session: AsyncSession,
    key: CheckpointKey,
    external_checkpoints: Sequence[Mapping[str, Any]] = (),
) -> Verification:
    """Recompute the chain from the first event and check every checkpoint against it.

    Detects an edited event (its hash no longer matches), a deleted or reordered one (a gap or
    a broken link), and a truncated tail (a signed checkpoint beyond the last event, or one
    whose hash differs from the event's). `external_checkpoints` are copies kept elsewhere;
    they are checked the same way, so deleting checkpoint rows does not hide a truncation.
    """
    result = Verification()
    hashes: dict[int, str] = {}
    checkpoints = [
        checkpoint_record(c)
        for c in (
            await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
        ).all()
    ]
    wanted = {int(c["seq"]) for c in (*checkpoints, *external_checkpoints)}

    expected_seq, prev = 1, GENESIS
    seq_at = SORTED_FIELDS.index("seq")
    width = len(SORTED_FIELDS)
    connection = await session.connection()
    last = 0
    while True:
        rows = await connection.run_sync(_raw_batch, last)
        if not rows:
            break
        for row in rows:
            values, stored_prev, stored_hash = list(row[:width]), row[width], row[width + 1]
            values[AT_INDEX] = stored_time(values[AT_INDEX])
            seq = values[seq_at]
            if seq != expected_seq:
                result.fail(expected_seq, f"seq {expected_seq}: missing (next present is {seq})")
            if stored_prev != prev:
                result.fail(seq, f"seq {seq}: does not link to the event before it")
            if hash_of_row(stored_prev, values) != stored_hash:
                result.fail(seq, f"seq {seq}: contents do not match its hash (edited)")
            if seq in wanted:
                hashes[seq] = stored_hash
            prev = stored_hash
            expected_seq = seq + 1
            result.events += 1
        last = rows[-1][seq_at]
    result.head_seq = expected_seq - 1

    head = await session.scalar(select(AuditHead).where(AuditHead.id == 1))
    if head is not None and (head.seq, head.hash) != (result.head_seq, prev):
        result.fail(
            result.head_seq + 1 if head.seq > result.head_seq else None,
            f"head says seq {head.seq}, the chain ends at {result.head_seq} (truncated?)",
        )

    for source, items in (("stored", checkpoints), ("external", external_checkpoints)):
        for c in items:
            seq = int(c["seq"])
            created = dt.datetime.fromisoformat(str(c["created_at"]).replace("Z", "+00:00"))
            if not key.verify(
                str(c["signature"]), _checkpoint_message(seq, str(c["hash"]), created)
            ):
                result.fail(None, f"{source} checkpoint at seq {seq}: signature invalid")
                continue
            result.checkpoints += 1
            if seq > result.head_seq:
                result.fail(
                    result.head_seq + 1,
                    f"{source} checkpoint at seq {seq}: "
                    f"the chain ends at {result.head_seq} (truncated)",
                )
            elif hashes.get(seq) != c["hash"]:
                result.fail(seq, f"{source} checkpoint at seq {seq}: hash differs from the chain")
            if result.last_checkpoint is None or seq >= int(result.last_checkpoint["seq"]):
                result.last_checkpoint = dict(c)
    return result
