"""Data exports: two distinct approvals, a file with no more than the requester may see,
fetched once, every step in the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import os
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain import pagination
from domain.access import Action, FieldAccess, PolicyDecisionPoint
from domain.actor import SYSTEM_ORIGIN, Actor
from domain.audit import service as audit
from domain.audit.chain import canonical_json
from domain.audit.service import Outcome, Subject
from domain.catalog import service as stock_service
from domain.catalog.models import StockItem
from domain.catalog.service import StockFilter
from domain.csvfiles import SafeWriter
from domain.customers import service as customers_service
from domain.customers.models import Customer
from domain.customers.service import CustomerFilter
from domain.errors import BadInput, Conflict, Forbidden, NotFound, SeparationOfDuties
from domain.exports.models import ExportEntity, ExportRequest, ExportStatus
from domain.orders import service as orders_service
from domain.orders.models import Order
from domain.orders.rules import OrderStatus
from domain.orders.service import OrderFilter
from domain.readers import READERS
from domain.users.models import User
from domain.values import clean_text, parse_int_id, parse_time

APPROVAL_WINDOW = dt.timedelta(hours=24)
DOWNLOAD_WINDOW = dt.timedelta(minutes=15)
MAX_REASON = 500
MAX_FILTER_TEXT = 200
log = logging.getLogger("ordergate.exports")
ORDERING = "exports:ID:DESC"
PENDING = (ExportStatus.PENDING_L1, ExportStatus.PENDING_L2)

# Which type each entity exports, and its fields that can be columns (scalars only).
TYPES = {
    ExportEntity.ORDERS: "Order",
    ExportEntity.CUSTOMERS: "Customer",
    ExportEntity.STOCK: "StockItem",
}
MODELS = {
    ExportEntity.ORDERS: Order,
    ExportEntity.CUSTOMERS: Customer,
    ExportEntity.STOCK: StockItem,
}
COLUMNS: Mapping[ExportEntity, tuple[str, ...]] = {
    entity: tuple(c.split(".", 1)[1] for c in READERS if c.startswith(f"{type_name}."))
    for entity, type_name in TYPES.items()
}


@dataclass(frozen=True)
class ExportSettings:
    directory: Path
    link_secret: bytes  # keys the one-time download links
    timezone: zoneinfo.ZoneInfo  # times in the file are written in the business timezone
    retention: dt.timedelta  # how long a produced file is kept
    max_attempts: int = 5  # producing a file is tried this often, then the export is FAILED
    retry_delay: dt.timedelta = dt.timedelta(seconds=30)  # doubled after each failure


# ---- the frozen scope -------------------------------------------------------------------------


def _time(value: Any, name: str) -> dt.datetime:
    return parse_time(value, what=f"filter.{name}")


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"filter.{name} is a list of strings")
    return tuple(value)


def _filter(
    entity: ExportEntity, raw: Mapping[str, Any]
) -> OrderFilter | CustomerFilter | StockFilter:
    """The entity's filter, from the same names the GraphQL filters use."""
    known = {
        ExportEntity.ORDERS: {
            "status",
            "channel",
            "createdFrom",
            "createdTo",
            "customerId",
            "customerPhone",
            "minTotal",
            "maxTotal",
        },
        ExportEntity.CUSTOMERS: {"nameContains", "phone", "email"},
        ExportEntity.STOCK: {"sku", "warehouse", "belowSafetyThreshold"},
    }[entity]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BadInput(f"unknown filter field(s) for {entity}: {', '.join(unknown)}")
    # Amounts are decimal strings as everywhere in the API: a JSON number went through a float.
    for name in (
        "customerPhone",
        "minTotal",
        "maxTotal",
        "nameContains",
        "phone",
        "email",
        "sku",
        "warehouse",
    ):
        if name in raw:
            if not isinstance(raw[name], str):
                raise BadInput(f"filter.{name} is a string")
            clean_text(raw[name], what=f"filter.{name}", max_length=MAX_FILTER_TEXT)
    if entity is ExportEntity.ORDERS:
        statuses = _strings(raw.get("status", []), "status")
        bad = [s for s in statuses if s not in set(OrderStatus)]
        if bad:
            raise BadInput(f"unknown order status(es): {', '.join(bad)}")
        customer_id = raw.get("customerId")
        if customer_id is not None:
            if not isinstance(customer_id, str | int) or isinstance(customer_id, bool):
                raise BadInput("filter.customerId is an id")
            customer_id = parse_int_id(customer_id, what="filter.customerId")
        return OrderFilter(
            statuses=tuple(OrderStatus(s) for s in statuses),
            channels=_strings(raw.get("channel", []), "channel"),
            created_from=_time(raw["createdFrom"], "createdFrom") if "createdFrom" in raw else None,
            created_to=_time(raw["createdTo"], "createdTo") if "createdTo" in raw else None,
            customer_id=customer_id,
            customer_phone=raw.get("customerPhone"),
            min_total=raw.get("minTotal"),
            max_total=raw.get("maxTotal"),
        )
    if entity is ExportEntity.CUSTOMERS:
        return CustomerFilter(
            name_contains=raw.get("nameContains"), phone=raw.get("phone"), email=raw.get("email")
        )
    below = raw.get("belowSafetyThreshold")
    if below is not None and not isinstance(below, bool):
        raise BadInput("filter.belowSafetyThreshold is true or false")
    return StockFilter(
        sku=raw.get("sku"), warehouse=raw.get("warehouse"), below_safety_threshold=below
    )


def _rows(entity: ExportEntity, actor: Actor, flt: Any) -> Any:
    """The rows the actor may see that match: the same queries the API lists use."""
    if entity is ExportEntity.ORDERS:
        return orders_service.matching(actor, flt)
    if entity is ExportEntity.CUSTOMERS:
        return customers_service.matching(actor, flt)
    return stock_service.matching(actor, flt)


def _columns(entity: ExportEntity, actor: Actor, fields: Sequence[str]) -> list[str]:
    """Coordinates of the requested columns; a field the actor cannot read is FORBIDDEN."""
    if not fields:
        raise BadInput("name at least one field")
    if len(set(fields)) != len(fields):
        raise BadInput("a field is named twice")
    type_name = TYPES[entity]
    coordinates = []
    for name in fields:
        if name not in COLUMNS[entity]:
            raise BadInput(
                f"{name!r} is not an exportable field of {type_name}; "
                f"choose from {', '.join(COLUMNS[entity])}"
            )
        coordinate = f"{type_name}.{name}"
        if actor.access.field_access(coordinate) is FieldAccess.NONE:
            raise Forbidden(f"your role may not read {coordinate}", field=coordinate)
        coordinates.append(coordinate)
    return coordinates


# ---- requesting and approving -----------------------------------------------------------------


async def request_export(
    *,
    session: AsyncSession,
    actor: Actor,
    entity: ExportEntity,
    filter: Mapping[str, Any] | None,
    fields: Sequence[str],
    reason: str,
    now: dt.datetime,
) -> ExportRequest:
    actor.access.require(Action.EXPORT_REQUEST)
    reason = clean_text(reason, what="reason", max_length=MAX_REASON, required=True)
    raw_filter = dict(filter or {})
    columns = _columns(entity, actor, fields)
    stmt = _rows(entity, actor, _filter(entity, raw_filter))
    expected = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    frozen_filter = canonical_json(raw_filter)
    digest = hashlib.sha256(
        canonical_json(
            {"entity": entity.value, "filter": raw_filter, "fields": list(fields)}
        ).encode()
    ).hexdigest()
    same_scope = (
        await session.scalars(
            select(ExportRequest)
            .where(
                ExportRequest.requested_by_id == actor.user_id,
                ExportRequest.scope_digest == digest,
                ExportRequest.status.in_(PENDING),
            )
            .with_for_update(of=ExportRequest)
        )
    ).all()
    for earlier in same_scope:
        if earlier.expires_at > now:
            raise Conflict(f"export request {earlier.id} with the same scope is still pending")
        # Past its window but not yet swept: it ends now, so the new request can take its place.
        earlier.status = ExportStatus.EXPIRED
        await _system_event(session, earlier, "export.expire", now)
    request = ExportRequest(
        entity=entity,
        filter=frozen_filter,
        fields=canonical_json(list(fields)),
        reason=reason,
        scope_digest=digest,
        expected_rows=expected,
        status=ExportStatus.PENDING_L1,
        requested_by_id=actor.user_id,
        created_at=now,
        expires_at=now + APPROVAL_WINDOW,
    )
    session.add(request)
    try:
        # A unique index allows one pending request per requester and scope: of concurrent
        # identical requests, one is inserted and the others fail here.
        await session.flush()
    except IntegrityError:
        raise Conflict("an export request with the same scope is already pending") from None
    await session.refresh(request, ["requested_by"])
    await audit.record(
        session=session,
        who=actor,
        action="export.request",
        operation="requestExport",
        target_type="ExportRequest",
        target_id=request.id,
        at=now,
        details={
            "entity": entity.value,
            "filter": raw_filter,
            "fields": list(fields),
            "columns": columns,
            "expectedRows": expected,
            "scopeDigest": digest,
            "reason": reason,
        },
    )
    return request


def _visible(actor: Actor) -> Any:
    if actor.access.can(Action.EXPORT_APPROVE_L1) or actor.access.can(Action.EXPORT_APPROVE_L2):
        return None
    return ExportRequest.requested_by_id == actor.user_id


async def get_export(
    *, session: AsyncSession, actor: Actor, export_id: int, for_update: bool = False
) -> ExportRequest:
    stmt = select(ExportRequest).where(ExportRequest.id == export_id)
    if (condition := _visible(actor)) is not None:
        stmt = stmt.where(condition)
    if for_update:
        stmt = stmt.with_for_update(of=ExportRequest)
    request = await session.scalar(stmt)
    if request is None:
        raise NotFound("no such export request")
    return request


async def list_exports(
    *,
    session: AsyncSession,
    actor: Actor,
    status: ExportStatus | None,
    first: int | None = None,
    after: str | None = None,
    want_total: bool = True,
) -> pagination.Page[ExportRequest]:
    base = select(ExportRequest)
    if (condition := _visible(actor)) is not None:
        base = base.where(condition)
    if status is not None:
        base = base.where(ExportRequest.status == status)
    return await pagination.by_id(
        session,
        base,
        ExportRequest.id,
        ordering=ORDERING,
        first=first,
        after=after,
        descending=True,
        want_total=want_total,
    )


class ExportExpired(Conflict):
    """Not approved within its window: it is marked expired, and stays so."""

    persist = True


async def _refuse_if_expired(
    session: AsyncSession, request: ExportRequest, now: dt.datetime
) -> None:
    if request.status in PENDING and request.expires_at <= now:
        request.status = ExportStatus.EXPIRED
        await _system_event(session, request, "export.expire", now)
        raise ExportExpired(f"export request {request.id} expired before it was approved")


async def approve_export(
    *, session: AsyncSession, actor: Actor, export_id: int, now: dt.datetime
) -> ExportRequest:
    """First approval by an L1 approver, second by an L2 approver: two people, neither of
    them the requester."""
    request = await get_export(session=session, actor=actor, export_id=export_id, for_update=True)
    await _refuse_if_expired(session, request, now)
    if request.status is ExportStatus.PENDING_L1:
        level, action = 1, Action.EXPORT_APPROVE_L1
    elif request.status is ExportStatus.PENDING_L2:
        level, action = 2, Action.EXPORT_APPROVE_L2
    else:
        raise Conflict(
            f"export request {request.id} is {request.status.value.lower()}, not pending"
        )
    actor.access.require(action)
    # Persons, not accounts: a second account of the same person counts as that person.
    if request.requested_by.person == actor.person_key:
        raise SeparationOfDuties("you cannot approve your own export request")
    if level == 2 and request.l1_by is not None and request.l1_by.person == actor.person_key:
        raise SeparationOfDuties("the second approval must come from another person")
    if level == 1:
        request.l1_by_id, request.l1_at, request.status = (
            actor.user_id,
            now,
            ExportStatus.PENDING_L2,
        )
    else:
        request.l2_by_id, request.l2_at, request.status = actor.user_id, now, ExportStatus.APPROVED
    await session.flush()
    await session.refresh(request, ["l1_by", "l2_by"])
    await audit.record(
        session=session,
        who=actor,
        action="export.approve",
        operation="approveExport",
        target_type="ExportRequest",
        target_id=request.id,
        at=now,
        details={"level": level, "scopeDigest": request.scope_digest},
    )
    return request


async def reject_export(
    *, session: AsyncSession, actor: Actor, export_id: int, reason: str, now: dt.datetime
) -> ExportRequest:
    """A rejection at either level is final."""
    reason = clean_text(reason, what="reason", max_length=MAX_REASON, required=True)
    request = await get_export(session=session, actor=actor, export_id=export_id, for_update=True)
    await _refuse_if_expired(session, request, now)
    if request.status not in PENDING:
        raise Conflict(
            f"export request {request.id} is {request.status.value.lower()}, not pending"
        )
    level = 1 if request.status is ExportStatus.PENDING_L1 else 2
    actor.access.require(Action.EXPORT_APPROVE_L1 if level == 1 else Action.EXPORT_APPROVE_L2)
    request.status = ExportStatus.REJECTED
    request.rejected_by_id, request.rejected_at, request.rejection_reason = (
        actor.user_id,
        now,
        reason,
    )
    await session.flush()
    await session.refresh(request, ["rejected_by"])
    await audit.record(
        session=session,
        who=actor,
        action="export.reject",
        operation="rejectExport",
        target_type="ExportRequest",
        target_id=request.id,
        at=now,
        details={"level": level, "reason": reason},
    )
    return request


async def _locked(session: AsyncSession, export_id: int) -> ExportRequest | None:
    stmt = select(ExportRequest).where(ExportRequest.id == export_id)
    return await session.scalar(stmt.with_for_update(of=ExportRequest))


# ---- producing the file -----------------------------------------------------------------------

SERVER = Subject(None, "ordergate-server", (), SYSTEM_ORIGIN)


async def _system_event(
    session: AsyncSession,
    request: ExportRequest,
    action: str,
    now: dt.datetime,
    details: Mapping[str, Any] | None = None,
    outcome: Outcome = Outcome.SUCCESS,
) -> None:
    await audit.record(
        session=session,
        who=SERVER,
        action=action,
        target_type="ExportRequest",
        target_id=request.id,
        outcome=outcome,
        at=now,
        details=details or {},
    )


def _cell(value: Any, timezone: zoneinfo.ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(timezone).isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def _file_name(request: ExportRequest) -> str:
    return f"export-{request.id}-{request.entity.value.lower()}.csv"


async def _requester_actor(
    session: AsyncSession, request: ExportRequest, pdp: PolicyDecisionPoint
) -> Actor:
    """The requester as they are now: a role lost since the request narrows the file."""
    user = await session.get(User, request.requested_by_id)
    assert user is not None
    roles = frozenset(user.roles)
    return Actor(
        user_id=user.id,
        username=user.username,
        roles=roles,
        channels=frozenset(user.channels),
        access=pdp.profile(roles),
        origin=SYSTEM_ORIGIN,
        person=user.person,
    )


async def produce(
    *,
    sessions: async_sessionmaker[AsyncSession],
    export_id: int,
    pdp: PolicyDecisionPoint,
    settings: ExportSettings,
    now: dt.datetime,
) -> ExportRequest | None:
    """Produce an approved export, or record why it could not be produced.

    A failure (an unwritable directory, a full disk, the database going away mid-file) never
    escapes: the attempt is counted and audited with its reason, the partial file removed, and
    the export is tried again by the housekeeping sweep after a backoff that doubles each time
    (`retry_delay`, then twice, four times that…). After `max_attempts` failures it is FAILED,
    with the reason visible to the requester and the approvers. Each export is handled on its
    own: one that fails does not stop the others.
    """
    try:
        return await _write(
            sessions=sessions, export_id=export_id, pdp=pdp, settings=settings, now=now
        )
    except asyncio.CancelledError:
        raise  # shutdown: the export stays APPROVED and is resumed by the next sweep
    except Exception as exc:
        log.warning(
            "export production failed", extra={"export_id": export_id, "error": repr(exc)[:300]}
        )
        with contextlib.suppress(OSError):
            for leftover in settings.directory.glob(f"export-{export_id}-*.partial"):
                leftover.unlink(missing_ok=True)
        return await _record_failed_attempt(
            sessions=sessions, export_id=export_id, settings=settings, now=now, error=exc
        )


def _reason(error: Exception) -> str:
    """Why an attempt failed, as requesters, approvers and the audit log read it: the kind of
    failure, never the server's paths (a file error's text names the export directory; issue
    #29). The full error goes to the server log."""
    if isinstance(error, OSError):
        cause = os.strerror(error.errno) if error.errno else "the file system refused"
        return f"{type(error).__name__}: the export file could not be written ({cause})"
    return f"{type(error).__name__}: the export could not be produced"


async def _record_failed_attempt(
    *,
    sessions: async_sessionmaker[AsyncSession],
    export_id: int,
    settings: ExportSettings,
    now: dt.datetime,
    error: Exception,
) -> ExportRequest | None:
    reason = _reason(error)
    async with sessions() as session:
        request = await _locked(session, export_id)
        if request is None or request.status is not ExportStatus.APPROVED:
            return request
        request.attempts += 1
        details: dict[str, Any] = {"attempt": request.attempts, "error": reason}
        if request.attempts >= settings.max_attempts:
            request.status = ExportStatus.FAILED
            request.failure_reason = reason
            request.next_attempt_at = None
            details["final"] = True
        else:
            delay = settings.retry_delay * 2 ** (request.attempts - 1)
            request.next_attempt_at = now + delay
            details["nextAttemptAt"] = request.next_attempt_at.isoformat()
        await _system_event(session, request, "export.produce", now, details, Outcome.FAILURE)
        await session.commit()
        return request


async def _write(
    *,
    sessions: async_sessionmaker[AsyncSession],
    export_id: int,
    pdp: PolicyDecisionPoint,
    settings: ExportSettings,
    now: dt.datetime,
) -> ExportRequest | None:
    """Write the approved export's CSV, streaming rows so memory does not grow with them.

    UTF-8 with a BOM so Excel reads Chinese text; first the request, requester, approvers and
    time as `#` lines, then a header row and one row per record, every value passed through
    the requester's access (masked fields masked). The SHA-256 of the bytes is recorded.
    """
    async with sessions() as session:
        request = await _locked(session, export_id)
        if request is None or request.status is not ExportStatus.APPROVED:
            return None
        try:
            requester = await _requester_actor(session, request, pdp)
            fields = json.loads(request.fields)
            columns = _columns(request.entity, requester, fields)
            stmt = _rows(
                request.entity, requester, _filter(request.entity, json.loads(request.filter))
            )
        except (Forbidden, BadInput) as exc:
            request.status = ExportStatus.FAILED
            request.failure_reason = exc.message
            await _system_event(
                session, request, "export.produce", now, {"error": exc.message}, Outcome.FAILURE
            )
            await session.commit()
            return request

        settings.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = settings.directory / _file_name(request)
        partial = final.with_suffix(".partial")
        digest = hashlib.sha256()
        rows = 0
        present, readers = requester.access.present, [READERS[c] for c in columns]
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            buffer = io.StringIO()
            writer = SafeWriter(buffer)  # starts with the BOM

            def flush() -> None:
                data = buffer.getvalue().encode("utf-8")
                digest.update(data)
                out.write(data)
                buffer.seek(0)
                buffer.truncate()

            approvers = ", ".join(u.username for u in (request.l1_by, request.l2_by) if u)
            for line in (
                f"ordergate export {request.id}: {request.entity.value}",
                f"requested by {request.requested_by.username}: {request.reason}",
                f"approved by {approvers}",
                f"produced at {_cell(now, settings.timezone)}",
                f"scope {request.scope_digest}",
            ):
                writer.writerow([f"# {line}"])
            writer.writerow(fields)
            result = await session.stream_scalars(
                stmt.order_by(MODELS[request.entity].id).execution_options(yield_per=1000)
            )
            async for model in result:
                writer.writerow(
                    [
                        _cell(present(c, read(model)), settings.timezone)
                        for c, read in zip(columns, readers, strict=True)
                    ]
                )
                rows += 1
                if rows % 1000 == 0:
                    flush()  # the session's identity map is weak: written rows are let go
            flush()
            out.flush()
            os.fsync(out.fileno())
        partial.rename(final)

        request = await session.get(ExportRequest, export_id)
        assert request is not None
        request.status = ExportStatus.READY
        request.file_name = final.name
        request.file_sha256 = digest.hexdigest()
        request.row_count = rows
        request.produced_at = now
        request.download_expires_at = now + DOWNLOAD_WINDOW
        await _system_event(
            session,
            request,
            "export.produce",
            now,
            {"rows": rows, "sha256": request.file_sha256, "file": final.name},
        )
        await session.commit()
        return request


# ---- the one download -------------------------------------------------------------------------


def download_token(request: ExportRequest, secret: bytes) -> str:
    """The link's token: derived, never stored, and different for every produced file."""
    message = f"{request.id}:{request.file_sha256}:{request.produced_at}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def download_path(request: ExportRequest, secret: bytes) -> str:
    return f"/exports/{request.id}/download?token={download_token(request, secret)}"


class DownloadRefused(Conflict):
    pass


async def open_download(
    *,
    session: AsyncSession,
    actor: Actor,
    export_id: int,
    token: str,
    settings: ExportSettings,
    now: dt.datetime,
) -> Path:
    """Check a download and mark it done: the requester only, once, within the window.

    "Once" is decided by the database, not by a read followed by a write: one conditional
    UPDATE claims the download, and of any number of parallel requests exactly one sees its
    row count be 1 (on SQLite as on PostgreSQL, where no row lock would help a reader). The
    claim is the transaction's first statement, so SQLite takes its write lock before reading.
    A claim whose link then turns out wrong is rolled back with the refusal.
    """
    claimed = await session.execute(
        update(ExportRequest)
        .where(
            ExportRequest.id == export_id,
            ExportRequest.requested_by_id == actor.user_id,
            ExportRequest.status == ExportStatus.READY,
            ExportRequest.file_name.is_not(None),
            ExportRequest.download_expires_at > now,
        )
        .values(status=ExportStatus.DOWNLOADED, downloaded_at=now)
        .execution_options(synchronize_session=False)
    )
    request = await session.get(ExportRequest, export_id, populate_existing=True)
    if request is None:
        raise NotFound("no such export")
    if request.requested_by_id != actor.user_id:
        raise Forbidden("only the requester may download this export")
    if claimed.rowcount != 1:
        if request.status is ExportStatus.DOWNLOADED:
            raise DownloadRefused("this export was already downloaded; exports can be fetched once")
        if request.status is not ExportStatus.READY or request.file_name is None:
            raise DownloadRefused(f"this export is {request.status.value.lower()}, not ready")
        raise DownloadRefused("this download link has expired; request the export again")
    if not hmac.compare_digest(token, download_token(request, settings.link_secret)):
        raise Forbidden("this download link is not valid")
    path = settings.directory / request.file_name
    if not path.exists():
        raise DownloadRefused("the file is no longer kept")
    await _download_event(
        session, actor, request, now, {"sha256": request.file_sha256, "rows": request.row_count}
    )
    return path


async def _download_event(
    session: AsyncSession,
    actor: Actor,
    request: ExportRequest,
    now: dt.datetime,
    details: dict[str, Any],
    *,
    action: str = "export.download",
    outcome: Outcome = Outcome.SUCCESS,
) -> None:
    await audit.record(
        session=session,
        who=actor,
        action=action,
        operation="download",
        target_type="ExportRequest",
        target_id=request.id,
        outcome=outcome,
        at=now,
        details=details,
    )


async def finish_download(
    *,
    session: AsyncSession,
    actor: Actor,
    export_id: int,
    delivered: bool,
    sent_bytes: int,
    now: dt.datetime,
) -> None:
    """After the transfer: a file sent in full stays consumed. An interrupted transfer gives
    the download back once (status READY again, within the same window), so a dropped
    connection does not lose the export; a second interruption consumes it. Both attempts are
    in the audit log."""
    request = await _locked(session, export_id)
    if request is None:
        return
    if delivered:
        await _download_event(
            session,
            actor,
            request,
            now,
            {"sentBytes": sent_bytes},
            action="export.download.delivered",
        )
        return
    resumable = request.download_attempts == 0 and request.status is ExportStatus.DOWNLOADED
    request.download_attempts += 1
    if resumable:
        request.status = ExportStatus.READY
        request.downloaded_at = None
    await _download_event(
        session,
        actor,
        request,
        now,
        {
            "interrupted": True,
            "sentBytes": sent_bytes,
            "attempt": request.download_attempts,
            "downloadGivenBack": resumable,
        },
        outcome=Outcome.FAILURE,
    )


# ---- housekeeping -----------------------------------------------------------------------------


async def sweep(*, session: AsyncSession, settings: ExportSettings, now: dt.datetime) -> list[int]:
    """Expire what waited too long, remove files past retention (the record stays), and
    return approved exports that still need producing (after a crash, say)."""
    stale = (
        await session.scalars(
            select(ExportRequest)
            .where(ExportRequest.status.in_(PENDING), ExportRequest.expires_at <= now)
            .with_for_update(of=ExportRequest)
        )
    ).all()
    for request in stale:
        request.status = ExportStatus.EXPIRED
        await _system_event(session, request, "export.expire", now)
    unfetched = (
        await session.scalars(
            select(ExportRequest)
            .where(
                ExportRequest.status == ExportStatus.READY, ExportRequest.download_expires_at <= now
            )
            .with_for_update(of=ExportRequest)
        )
    ).all()
    for request in unfetched:
        request.status = ExportStatus.EXPIRED
        await _system_event(session, request, "export.expire", now, {"download": "not fetched"})
    old_files = (
        await session.scalars(
            select(ExportRequest)
            .where(
                ExportRequest.file_name.is_not(None),
                ExportRequest.file_removed_at.is_(None),
                ExportRequest.produced_at <= now - settings.retention,
            )
            .with_for_update(of=ExportRequest)
        )
    ).all()
    for request in old_files:
        (settings.directory / str(request.file_name)).unlink(missing_ok=True)
        request.file_removed_at = now
        await _system_event(
            session, request, "export.file_removed", now, {"file": request.file_name}
        )
    await session.flush()
    waiting = await session.scalars(
        select(ExportRequest.id)
        .where(
            ExportRequest.status == ExportStatus.APPROVED,
            (ExportRequest.next_attempt_at.is_(None)) | (ExportRequest.next_attempt_at <= now),
        )
        .order_by(ExportRequest.id)
    )
    return list(waiting.all())
