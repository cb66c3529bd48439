"""Price changes and refunds that take effect only with an approver's signature."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from domain import pagination
from domain.access import Action
from domain.actor import Actor
from domain.approvals import signatures
from domain.approvals.models import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalStatus,
    ConsumedNonce,
    SigningKey,
)
from domain.audit import service as audit
from domain.audit.chain import canonical_json, format_time
from domain.audit.service import Outcome, Subject
from domain.errors import (
    BadInput,
    Conflict,
    NotFound,
    SeparationOfDuties,
    SignatureInvalid,
)
from domain.events import service as events
from domain.money import format_amount, to_minor
from domain.orders import service as orders_service
from domain.orders.models import Order, OrderLine
from domain.orders.rules import OrderStatus
from domain.users.changes import persons_of
from domain.users.models import User
from domain.values import INT4_MAX, check_minor, clean_text

PAYLOAD_VERSION = 1
DEFAULT_TTL = dt.timedelta(hours=24)
# Prices are edited only before payment. Once the customer has paid, what they paid is fixed:
# a lower price is a refund, a higher one a supplementary charge — never an edit of the order.
PRICE_CHANGEABLE = {OrderStatus.PENDING_PAYMENT}
MAX_REASON = 500
ORDERING = "approvals:ID:DESC"
KID = re.compile(r"[1-9][0-9]{0,9}")


class RequestVoided(Conflict):
    """The order changed after the request was made; the request is void, and stays so."""

    persist = True


class RequestExpired(SignatureInvalid):
    """The request's signature window has closed; it is marked expired, and stays so."""

    persist = True


@dataclass(frozen=True)
class Deployment:
    """What ties a signature to this installation and how long a request may wait."""

    audience: str
    ttl: dt.timedelta = DEFAULT_TTL


# ---- keys -------------------------------------------------------------------------------------


async def register_key(*, session: AsyncSession, actor: Actor, public_key_pem: str) -> SigningKey:
    actor.access.require(Action.APPROVAL_SIGN)
    key = signatures.load_public_key(public_key_pem)
    fingerprint = signatures.fingerprint(key)
    taken = await session.scalar(select(SigningKey.id).where(SigningKey.fingerprint == fingerprint))
    if taken is not None:
        raise Conflict("this key is already registered")
    owner = await session.get(User, actor.user_id) if actor.user_id is not None else None
    # After another person set this account's password, whoever registers a key may be that
    # person: the key signs nothing until an administrator who is neither confirms it
    # (issue #30, M4).
    held = owner is not None and owner.password_set_by not in (None, owner.person)
    signing_key = SigningKey(
        user_id=actor.user_id,
        public_key_pem=signatures.normalised_pem(key),
        fingerprint=fingerprint,
        awaiting_confirmation=held,
    )
    session.add(signing_key)
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="key.register",
        operation="registerSigningKey",
        target_type="SigningKey",
        target_id=signing_key.id,
        details={"fingerprint": fingerprint, "awaitingConfirmation": held},
    )
    return signing_key


async def confirm_key(
    *, session: AsyncSession, actor: Actor, key_id: int, now: dt.datetime
) -> SigningKey:
    """An administrator vouches for a key registered after another person set its owner's
    password: not that person, and not the key's owner."""
    actor.access.require(Action.USER_ADMIN)
    key = await session.get(SigningKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound("no such signing key")
    if not key.awaiting_confirmation:
        raise Conflict("this key is not waiting for confirmation")
    if key.revoked_at is not None:
        raise Conflict("this key is revoked")
    owner = key.user
    # Whoever set the confirmer's password may be at its keyboard (domain/users/changes.py).
    confirmer = await persons_of(session, actor)
    if confirmer & {owner.person, owner.password_set_by} or actor.user_id == owner.id:
        raise SeparationOfDuties(
            "a key is confirmed by an administrator who neither owns it nor set its "
            "owner's password"
        )
    key.awaiting_confirmation = False
    key.confirmed_by_id = actor.user_id
    key.confirmed_at = now
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="key.confirm",
        operation="confirmSigningKey",
        target_type="SigningKey",
        target_id=key.id,
        details={"fingerprint": key.fingerprint, "owner": owner.username},
    )
    return key


async def list_keys(*, session: AsyncSession, actor: Actor) -> list[SigningKey]:
    """The caller's own keys, newest first, revoked ones included (old signatures name them)."""
    actor.access.require(Action.APPROVAL_SIGN)
    found = await session.scalars(
        select(SigningKey).where(SigningKey.user_id == actor.user_id).order_by(SigningKey.id.desc())
    )
    return list(found)


async def revoke_key(
    *, session: AsyncSession, actor: Actor, key_id: int, now: dt.datetime
) -> SigningKey:
    """Its owner or an administrator revokes a key; other users cannot tell it exists."""
    key = await session.get(SigningKey, key_id)
    if key is None or (key.user_id != actor.user_id and not actor.access.can(Action.USER_ADMIN)):
        raise NotFound("no such signing key")
    if key.revoked_at is not None:
        raise Conflict("this key is already revoked")
    key.revoked_at = now
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="key.revoke",
        operation="revokeSigningKey",
        target_type="SigningKey",
        target_id=key.id,
        details={"fingerprint": key.fingerprint, "owner": key.user.username},
        at=now,
    )
    return key


# ---- requests ---------------------------------------------------------------------------------


def _reason(reason: str) -> str:
    return clean_text(reason, what="reason", max_length=MAX_REASON, required=True)


def _positive_minor(amount: Decimal, currency: str, what: str) -> int:
    minor = to_minor(amount, currency)
    if minor <= 0:
        raise BadInput(f"{what} must be positive")
    return minor


def paid_minor(order: Order) -> int:
    """What the customer paid, as recorded when the order became PAID."""
    return order.paid_minor


async def _create(
    *,
    session: AsyncSession,
    actor: Actor,
    deployment: Deployment,
    now: dt.datetime,
    kind: ApprovalKind,
    order: Order,
    line: OrderLine | None,
    amount_minor: int,
    reason: str,
    body: dict[str, Any],
    summary: str,
) -> ApprovalRequest:
    nonce = secrets.token_urlsafe(24)  # 192 bits
    request = ApprovalRequest(
        kind=kind,
        status=ApprovalStatus.PENDING,
        order_id=order.id,
        order_line_id=line.id if line else None,
        order_version=order.version,
        currency=order.currency,
        amount_minor=amount_minor,
        requested_by_id=actor.user_id,
        reason=reason,
        payload="",
        summary=summary,
        nonce=nonce,
        created_at=now,
        expires_at=now + deployment.ttl,
    )
    session.add(request)
    await session.flush()  # the id goes into the payload
    request.payload = canonical_json(
        {
            "v": PAYLOAD_VERSION,
            "aud": deployment.audience,
            "requestId": str(request.id),
            "action": kind.value,
            "order": {"id": str(order.id), "number": order.number, "version": order.version},
            **body,
            "currency": order.currency,
            "requester": actor.username,
            "reason": reason,
            "nonce": nonce,
            "iat": format_time(now),
            "exp": format_time(request.expires_at),
            "summary": summary,
        }
    )
    await session.flush()
    await _load_people(session, request)
    await audit.record(
        session=session,
        who=actor,
        action=f"approval.request.{kind.value.lower()}",
        operation="requestPriceChange" if kind is ApprovalKind.PRICE_CHANGE else "requestRefund",
        target_type="ApprovalRequest",
        target_id=request.id,
        at=now,
        details={"order": order.number, "payload": request.payload},
    )
    return request


async def request_price_change(
    *,
    session: AsyncSession,
    actor: Actor,
    deployment: Deployment,
    order_line_id: int,
    new_unit_price: Decimal,
    reason: str,
    now: dt.datetime,
) -> ApprovalRequest:
    actor.access.require(Action.PRICE_REQUEST)
    reason = _reason(reason)
    line = await session.get(OrderLine, order_line_id)
    try:
        if line is None:
            raise NotFound("no such order line")
        order = await orders_service.get_order(session=session, actor=actor, order_id=line.order_id)
    except NotFound:
        # A line of an order outside the caller's scope answers exactly like a missing one.
        raise NotFound("no such order line") from None
    if order.status not in PRICE_CHANGEABLE:
        raise Conflict(
            f"order {order.number} is {order.status}; prices change only before payment "
            "(after payment, ask for a refund instead)"
        )
    new_minor = _positive_minor(new_unit_price, order.currency, "newUnitPrice")
    if new_minor == line.unit_price_minor:
        raise BadInput("newUnitPrice is the current price")
    check_minor(
        sum(x.unit_price_minor * x.quantity for x in order.lines if x.id != line.id)
        + new_minor * line.quantity
        + order.shipping_fee_minor,
        what="the order's total at this price",
    )
    old, new = (format_amount(m, order.currency) for m in (line.unit_price_minor, new_minor))
    summary = (
        f"Change the unit price of {line.sku} ({line.name}) x{line.quantity} on order "
        f"{order.number} from {old} to {new} {order.currency}"
    )
    body = {
        "line": {"id": str(line.id), "sku": line.sku, "name": line.name, "quantity": line.quantity},
        "before": {"unitPrice": old},
        "after": {"unitPrice": new},
    }
    return await _create(
        session=session,
        actor=actor,
        deployment=deployment,
        now=now,
        kind=ApprovalKind.PRICE_CHANGE,
        order=order,
        line=line,
        amount_minor=new_minor,
        reason=reason,
        body=body,
        summary=summary,
    )


async def request_refund(
    *,
    session: AsyncSession,
    actor: Actor,
    deployment: Deployment,
    order_id: int,
    amount: Decimal,
    reason: str,
    now: dt.datetime,
) -> ApprovalRequest:
    actor.access.require(Action.REFUND_REQUEST)
    reason = _reason(reason)
    order = await orders_service.get_order(session=session, actor=actor, order_id=order_id)
    amount_minor = _positive_minor(amount, order.currency, "amount")
    paid = paid_minor(order)
    if order.refunded_minor + amount_minor > paid:
        would = format_amount(order.refunded_minor + amount_minor, order.currency)
        raise BadInput(
            f"refunds would total {would}, more than the {format_amount(paid, order.currency)} paid"
        )
    c = order.currency
    summary = (
        f"Refund {format_amount(amount_minor, c)} {c} on order {order.number} "
        f"(paid {format_amount(paid, c)}, refunded so far {format_amount(order.refunded_minor, c)})"
    )
    body = {
        "before": {
            "amountPaid": format_amount(paid, c),
            "alreadyRefunded": format_amount(order.refunded_minor, c),
        },
        "after": {
            "refund": format_amount(amount_minor, c),
            "refundedTotal": format_amount(order.refunded_minor + amount_minor, c),
        },
    }
    return await _create(
        session=session,
        actor=actor,
        deployment=deployment,
        now=now,
        kind=ApprovalKind.REFUND,
        order=order,
        line=None,
        amount_minor=amount_minor,
        reason=reason,
        body=body,
        summary=summary,
    )


async def _load_people(session: AsyncSession, request: ApprovalRequest) -> None:
    """Load who asked, who decided and with which key, after ids changed in this session."""
    await session.refresh(request, ["requested_by", "decided_by", "signing_key"])


# ---- reading ----------------------------------------------------------------------------------


def _visible(actor: Actor) -> Any:
    """Approvers and auditors see every request; anyone else only their own."""
    if actor.access.can(Action.APPROVAL_SIGN) or actor.access.can(Action.AUDIT_READ):
        return None
    return ApprovalRequest.requested_by_id == actor.user_id


def effective_status(request: ApprovalRequest, now: dt.datetime) -> ApprovalStatus:
    """A pending request past its expiry is expired, whether or not the sweep has run."""
    if request.status is ApprovalStatus.PENDING and request.expires_at <= now:
        return ApprovalStatus.EXPIRED
    return request.status


async def get_request(
    *, session: AsyncSession, actor: Actor, request_id: int, for_update: bool = False
) -> ApprovalRequest:
    stmt = select(ApprovalRequest).where(ApprovalRequest.id == request_id)
    if (condition := _visible(actor)) is not None:
        stmt = stmt.where(condition)
    if for_update:
        stmt = stmt.with_for_update(of=ApprovalRequest)
    request = await session.scalar(stmt)
    if request is None:
        raise NotFound("no such approval request")
    return request


async def list_requests(
    *,
    session: AsyncSession,
    actor: Actor,
    status: ApprovalStatus | None,
    now: dt.datetime,
    first: int | None = None,
    after: str | None = None,
    want_total: bool = True,
) -> pagination.Page[ApprovalRequest]:
    base = select(ApprovalRequest)
    if (condition := _visible(actor)) is not None:
        base = base.where(condition)
    if status is ApprovalStatus.PENDING:
        base = base.where(ApprovalRequest.status == status, ApprovalRequest.expires_at > now)
    elif status is ApprovalStatus.EXPIRED:
        base = base.where(
            (ApprovalRequest.status == status)
            | (
                (ApprovalRequest.status == ApprovalStatus.PENDING)
                & (ApprovalRequest.expires_at <= now)
            )
        )
    elif status is not None:
        base = base.where(ApprovalRequest.status == status)
    return await pagination.by_id(
        session,
        base,
        ApprovalRequest.id,
        ordering=ORDERING,
        first=first,
        after=after,
        descending=True,
        want_total=want_total,
    )


# ---- deciding ---------------------------------------------------------------------------------


async def _signing_key_of(session: AsyncSession, actor: Actor, kid: str) -> SigningKey:
    # The exact string we issued as the key's id, nothing that merely reads as the same
    # number ("01", a fullwidth 1, " 1"): `audit verify` compares kid with str(key.id) exactly.
    key = None
    if KID.fullmatch(kid) is not None and int(kid) <= INT4_MAX:
        key = await session.get(SigningKey, int(kid))
    if key is None or key.user_id != actor.user_id:
        raise SignatureInvalid("kid does not name a signing key of yours")
    if key.revoked_at is not None:
        raise SignatureInvalid("this signing key is revoked")
    if key.awaiting_confirmation:
        raise SignatureInvalid(
            "this signing key waits for an administrator's confirmation (it was registered "
            "after another person set this account's password)"
        )
    return key


async def approve(
    *, session: AsyncSession, actor: Actor, request_id: int, signature: str, now: dt.datetime
) -> ApprovalRequest:
    """Verify the approver's signature and apply the change, in the caller's transaction."""
    actor.access.require(Action.APPROVAL_SIGN)
    request = await get_request(
        session=session, actor=actor, request_id=request_id, for_update=True
    )
    if request.requested_by.person == actor.person_key:
        # Persons, not accounts: a second account of the requester is still the requester.
        raise SeparationOfDuties("you cannot approve your own request")

    header = signatures.read_header(signature.strip())
    key = await _signing_key_of(session, actor, header.kid)
    signed = signatures.verified_payload(signature.strip(), key.public_key_pem)
    try:
        nonce = json.loads(signed).get("nonce")
    except (ValueError, AttributeError):
        nonce = None
    if isinstance(nonce, str) and await session.get(ConsumedNonce, nonce) is not None:
        raise SignatureInvalid("this signature was already used (replay)")
    if signed != request.payload.encode():
        raise SignatureInvalid("the signed payload is not this request's signingPayload")

    if request.status is not ApprovalStatus.PENDING:
        raise Conflict(f"request {request.id} is {request.status.value.lower()}, not pending")
    if request.expires_at <= now:
        request.status = ApprovalStatus.EXPIRED
        await _record_end(session, request, actor, "expire", now)
        raise RequestExpired("the request expired before it was signed")

    order = await session.scalar(
        select(Order).where(Order.id == request.order_id).options(selectinload(Order.lines))
    )
    assert order is not None
    if order.version != request.order_version:
        request.status = ApprovalStatus.VOIDED
        request.decided_at = now
        await _record_end(
            session,
            request,
            actor,
            "void",
            now,
            {"requestedAt": request.order_version, "now": order.version},
        )
        raise RequestVoided(
            f"order {order.number} changed since the request (version {request.order_version} "
            f"→ {order.version}); the request is void, ask again"
        )

    before, after = _apply(request, order)
    request.status = ApprovalStatus.APPROVED
    request.decided_at = now
    request.decided_by_id = actor.user_id
    request.signature = signature.strip()
    request.signing_key_id = key.id
    session.add(ConsumedNonce(nonce=request.nonce, request_id=request.id, consumed_at=now))
    # Of two concurrent approvals one wins: the nonce can be consumed once (primary key), and
    # the order row changes only at the version both read (optimistic lock).
    try:
        await session.flush()
    except (StaleDataError, IntegrityError):
        raise Conflict("the request or its order was decided concurrently") from None
    await _load_people(session, request)
    price_change = request.kind is ApprovalKind.PRICE_CHANGE
    events.publish(
        session=session,
        type=events.EventType.ORDER_PRICE_CHANGED
        if price_change
        else events.EventType.ORDER_REFUNDED,
        aggregate_type="Order",
        aggregate_id=order.id,
        version=order.version,
        at=now,
        payload={"orderId": order.id, "approvalRequestId": request.id},
    )
    await audit.record(
        session=session,
        who=actor,
        action="approval.approve",
        operation="approveRequest",
        target_type="ApprovalRequest",
        target_id=request.id,
        at=now,
        details={
            "kind": request.kind.value,
            "order": order.number,
            "before": before,
            "after": after,
            "jws": request.signature,
            "keyId": key.id,
            "keyFingerprint": key.fingerprint,
        },
    )
    return request


def _apply(request: ApprovalRequest, order: Order) -> tuple[dict[str, str], dict[str, str]]:
    """The one place a price changes or a refund is recorded."""
    c = order.currency
    if request.kind is ApprovalKind.PRICE_CHANGE:
        if order.status not in PRICE_CHANGEABLE:
            raise Conflict(
                f"order {order.number} is {order.status}; prices change only before payment"
            )
        line = next(line for line in order.lines if line.id == request.order_line_id)
        before = {
            "unitPrice": format_amount(line.unit_price_minor, c),
            "total": format_amount(order.total_minor, c),
            "grossMargin": format_amount(order.gross_margin_minor, c),
        }
        line.unit_price_minor = request.amount_minor
        subtotal = sum(x.unit_price_minor * x.quantity for x in order.lines)
        cost = sum(x.cost_price_minor * x.quantity for x in order.lines)
        order.subtotal_minor = subtotal
        order.total_minor = max(0, subtotal + order.shipping_fee_minor - order.discount_minor)
        order.gross_margin_minor = order.total_minor - cost - order.shipping_fee_minor
        order.check_money()
        after = {
            "unitPrice": format_amount(line.unit_price_minor, c),
            "total": format_amount(order.total_minor, c),
            "grossMargin": format_amount(order.gross_margin_minor, c),
        }
    else:
        paid = paid_minor(order)
        if order.refunded_minor + request.amount_minor > paid:
            raise Conflict("refunds would exceed the amount paid")
        before = {"refunded": format_amount(order.refunded_minor, c)}
        order.refunded_minor += request.amount_minor
        order.check_money()
        after = {"refunded": format_amount(order.refunded_minor, c)}
    order.updated_at = request.decided_at or order.updated_at
    return before, after


async def _record_end(
    session: AsyncSession,
    request: ApprovalRequest,
    who: Actor | Subject,
    verb: str,
    now: dt.datetime,
    details: dict[str, Any] | None = None,
) -> None:
    await audit.record(
        session=session,
        who=who,
        action=f"approval.{verb}",
        target_type="ApprovalRequest",
        target_id=request.id,
        outcome=Outcome.FAILURE if verb != "reject" else Outcome.SUCCESS,
        at=now,
        details=details or {},
    )


async def reject(
    *, session: AsyncSession, actor: Actor, request_id: int, reason: str, now: dt.datetime
) -> ApprovalRequest:
    """An approver rejects a request, or its requester withdraws it."""
    reason = _reason(reason)
    request = await get_request(
        session=session, actor=actor, request_id=request_id, for_update=True
    )
    if request.requested_by_id != actor.user_id:
        actor.access.require(Action.APPROVAL_SIGN)
    if effective_status(request, now) is not ApprovalStatus.PENDING:
        raise Conflict(
            f"request {request.id} is {effective_status(request, now).value.lower()}, not pending"
        )
    request.status = ApprovalStatus.REJECTED
    request.decided_at = now
    request.decided_by_id = actor.user_id
    request.decision_reason = reason
    await session.flush()
    await _load_people(session, request)
    await audit.record(
        session=session,
        who=actor,
        action="approval.reject",
        operation="rejectRequest",
        target_type="ApprovalRequest",
        target_id=request.id,
        at=now,
        details={"reason": reason},
    )
    return request


async def expire_pending(*, session: AsyncSession, who: Subject, now: dt.datetime) -> int:
    """Mark pending requests past their expiry as expired, each with its audit event."""
    stale = (
        await session.scalars(
            select(ApprovalRequest)
            .where(
                ApprovalRequest.status == ApprovalStatus.PENDING, ApprovalRequest.expires_at <= now
            )
            .with_for_update(of=ApprovalRequest)
        )
    ).all()
    for request in stale:
        request.status = ApprovalStatus.EXPIRED
        await _record_end(session, request, who, "expire", now)
    await session.flush()
    return len(stale)


# ---- verification later -----------------------------------------------------------------------


async def verify_signatures(*, session: AsyncSession) -> tuple[int, list[str]]:
    """Re-verify every approval's stored JWS against the stored public key and payload, so an
    auditor can confirm from the database alone who approved exactly what."""
    problems: list[str] = []
    checked = 0
    approved = await session.scalars(
        select(ApprovalRequest)
        .where(ApprovalRequest.status == ApprovalStatus.APPROVED)
        .order_by(ApprovalRequest.id)
    )
    for request in approved:
        checked += 1
        key = request.signing_key
        if key is None or request.signature is None:
            problems.append(f"approval request {request.id}: approved without a stored signature")
            continue
        try:
            header = signatures.read_header(request.signature)
            if header.kid != str(key.id):
                raise SignatureInvalid("kid does not match the stored key")
            signed = signatures.verified_payload(request.signature, key.public_key_pem)
        except SignatureInvalid as exc:
            problems.append(f"approval request {request.id}: {exc.message}")
            continue
        if signed != request.payload.encode():
            problems.append(
                f"approval request {request.id}: signed payload differs from the stored one"
            )
        elif key.user_id != request.decided_by_id:
            problems.append(f"approval request {request.id}: signed with a key of another user")
    return checked, problems
