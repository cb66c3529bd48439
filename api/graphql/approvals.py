"""Signed high-risk mutations: price changes and refunds, signing keys, approvals."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.projection import Projection, attr
from api.graphql.relay import Connection, Node, global_id, parse_id, selects
from api.graphql.scalars import Money
from domain.access import AccessProfile
from domain.approvals import models
from domain.approvals import service as approvals
from domain.db import utcnow
from domain.money import from_minor

ApprovalStatus = strawberry.enum(models.ApprovalStatus, name="ApprovalStatus")
ApprovalKind = strawberry.enum(models.ApprovalKind, name="ApprovalKind")


@strawberry.type(description="A price change or refund waiting for, or decided by, a signature.")
class ApprovalRequest(Node):
    kind: ApprovalKind | None
    status: ApprovalStatus | None
    order_id: strawberry.ID | None
    order_number: str | None
    order_line_id: strawberry.ID | None
    amount: Money | None = strawberry.field(description="New unit price, or refund amount.")
    currency: str | None
    requested_by: str | None
    reason: str | None
    summary: str | None
    signing_payload: str | None = strawberry.field(
        description="Sign exactly these UTF-8 bytes: compact JWS, alg EdDSA, kid = your key id."
    )
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    decided_at: dt.datetime | None
    decided_by: str | None
    decision_reason: str | None
    key_fingerprint: str | None

    @classmethod
    def from_model(cls, model: models.ApprovalRequest, access: AccessProfile) -> ApprovalRequest:
        return cls(**APPROVAL_REQUEST(model, access))


def _status(model: models.ApprovalRequest, _access: Any) -> models.ApprovalStatus:
    return approvals.effective_status(model, utcnow())


APPROVAL_REQUEST = Projection.of(
    "ApprovalRequest",
    id=lambda m, _a: global_id("ApprovalRequest", m.id),
    kind=attr("kind"),
    status=_status,
    order_id=lambda m, _a: global_id("Order", m.order_id),
    order_number=lambda m, _a: _payload_order_number(m),
    order_line_id=lambda m, _a: (
        global_id("OrderLine", m.order_line_id) if m.order_line_id else None
    ),
    amount=lambda m, _a: Money(from_minor(m.amount_minor, m.currency)),
    currency=attr("currency"),
    requested_by=lambda m, _a: m.requested_by.username,
    reason=attr("reason"),
    summary=attr("summary"),
    signing_payload=attr("payload"),
    created_at=attr("created_at"),
    expires_at=attr("expires_at"),
    decided_at=attr("decided_at"),
    decided_by=lambda m, _a: m.decided_by.username if m.decided_by else None,
    decision_reason=attr("decision_reason"),
    key_fingerprint=lambda m, _a: m.signing_key.fingerprint if m.signing_key else None,
)


def _payload_order_number(model: models.ApprovalRequest) -> str:
    return json.loads(model.payload)["order"]["number"]


@strawberry.type(description="An approver's Ed25519 public key; `id` is the JWS `kid`.")
class SigningKey:
    id: strawberry.ID
    fingerprint: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    awaiting_confirmation: bool = strawberry.field(
        description=(
            "Registered after another person set the account's password: it signs nothing "
            "until an administrator confirms it (confirmSigningKey)."
        )
    )

    @classmethod
    def from_model(cls, model: models.SigningKey) -> SigningKey:
        return cls(
            id=strawberry.ID(str(model.id)),
            fingerprint=model.fingerprint,
            created_at=model.created_at,
            revoked_at=model.revoked_at,
            awaiting_confirmation=model.awaiting_confirmation,
        )


@strawberry.type
class ApprovalQueries:
    @strawberry.field(description="Approvers and compliance see every request; others their own.")
    async def approval_requests(
        self,
        info: Info[RequestContext, None],
        status: ApprovalStatus | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[ApprovalRequest] | None:
        ctx = info.context
        actor = ctx.require_actor()
        actor.access.require_full("ApprovalRequest.id")
        async with ctx.read() as session:
            page = await approvals.list_requests(
                session=session,
                actor=actor,
                status=status,
                now=utcnow(),
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, lambda r: ApprovalRequest.from_model(r, actor.access))

    @strawberry.field
    async def approval_request(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
    ) -> ApprovalRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        actor.access.require_full("ApprovalRequest.id")
        async with ctx.read() as session:
            model = await approvals.get_request(
                session=session, actor=actor, request_id=parse_id(id, "approval request")
            )
        return ApprovalRequest.from_model(model, actor.access)

    @strawberry.field(description="Your signing keys, newest first, revoked ones included.")
    async def signing_keys(self, info: Info[RequestContext, None]) -> list[SigningKey]:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read() as session:
            keys = await approvals.list_keys(session=session, actor=actor)
        return [SigningKey.from_model(key) for key in keys]


@strawberry.type
class ApprovalMutations:
    @strawberry.mutation(description="Ask for a new unit price; nothing changes until signed.")
    async def request_price_change(
        self,
        info: Info[RequestContext, None],
        order_line_id: strawberry.ID,
        new_unit_price: Money,
        reason: str,
    ) -> ApprovalRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="approval.request.price_change",
            operation="requestPriceChange",
            target_type="OrderLine",
            target_id=order_line_id,
        ) as session:
            model = await approvals.request_price_change(
                session=session,
                actor=actor,
                deployment=ctx.runtime.deployment,
                order_line_id=parse_id(order_line_id, "order line"),
                new_unit_price=new_unit_price,
                reason=reason,
                now=utcnow(),
            )
            return ApprovalRequest.from_model(model, actor.access)

    @strawberry.mutation(description="Ask for a refund; nothing is refunded until signed.")
    async def request_refund(
        self,
        info: Info[RequestContext, None],
        order_id: strawberry.ID,
        amount: Money,
        reason: str,
    ) -> ApprovalRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="approval.request.refund",
            operation="requestRefund",
            target_type="Order",
            target_id=order_id,
        ) as session:
            model = await approvals.request_refund(
                session=session,
                actor=actor,
                deployment=ctx.runtime.deployment,
                order_id=parse_id(order_id, "order"),
                amount=amount,
                reason=reason,
                now=utcnow(),
            )
            return ApprovalRequest.from_model(model, actor.access)

    @strawberry.mutation(description="Register your Ed25519 public key (PEM) for signing.")
    async def register_signing_key(
        self, info: Info[RequestContext, None], public_key: str
    ) -> SigningKey | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="key.register", operation="registerSigningKey", target_type="SigningKey"
        ) as session:
            model = await approvals.register_key(
                session=session, actor=actor, public_key_pem=public_key
            )
            return SigningKey.from_model(model)

    @strawberry.mutation(description="Revoke one of your keys (administrators: anyone's).")
    async def revoke_signing_key(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
    ) -> SigningKey | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="key.revoke",
            operation="revokeSigningKey",
            target_type="SigningKey",
            target_id=id,
        ) as session:
            model = await approvals.revoke_key(
                session=session, actor=actor, key_id=parse_id(id, "signing key"), now=utcnow()
            )
            return SigningKey.from_model(model)

    @strawberry.mutation(
        description=(
            "Vouch for a key registered after another person set its owner's password "
            "(administrators who neither own it nor set that password)."
        )
    )
    async def confirm_signing_key(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
    ) -> SigningKey | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="key.confirm",
            operation="confirmSigningKey",
            target_type="SigningKey",
            target_id=id,
        ) as session:
            model = await approvals.confirm_key(
                session=session,
                actor=actor,
                key_id=parse_id(id, "signing key"),
                now=ctx.runtime.clock(),
            )
            return SigningKey.from_model(model)

    @strawberry.mutation(description="Approve with a compact JWS over signingPayload; applies it.")
    async def approve_request(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
        signature: str,
    ) -> ApprovalRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="approval.approve",
            operation="approveRequest",
            target_type="ApprovalRequest",
            target_id=id,
        ) as session:
            model = await approvals.approve(
                session=session,
                actor=actor,
                request_id=parse_id(id, "approval request"),
                signature=signature,
                now=utcnow(),
            )
            return ApprovalRequest.from_model(model, actor.access)

    @strawberry.mutation(description="Reject a request (approvers), or withdraw your own.")
    async def reject_request(
        self,
        info: Info[RequestContext, None],
        id: strawberry.ID,
        reason: str,
    ) -> ApprovalRequest | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="approval.reject",
            operation="rejectRequest",
            target_type="ApprovalRequest",
            target_id=id,
        ) as session:
            model = await approvals.reject(
                session=session,
                actor=actor,
                request_id=parse_id(id, "approval request"),
                reason=reason,
                now=utcnow(),
            )
            return ApprovalRequest.from_model(model, actor.access)
