"""The audit log, for holders of `audit:read`."""

from __future__ import annotations

import datetime as dt
import json

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, decode_global_id, selects
from domain.access import AccessProfile
from domain.audit import models
from domain.audit import service as audit_service
from domain.audit.service import AuditFilter as DomainAuditFilter
from domain.disclosure import visible


@strawberry.type(description="One recorded act. The log is append-only and hash-chained.")
class AuditEvent:
    seq: int
    at: dt.datetime
    actor_id: int | None
    username: str | None
    roles: list[str]
    client_ip: str | None
    peer_ip: str | None
    user_agent: str | None
    request_id: str | None
    operation: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    code: str | None
    details: JSON
    prev_hash: str
    hash: str

    @classmethod
    def from_model(cls, e: models.AuditEvent, access: AccessProfile) -> AuditEvent:
        """The stored event stays complete for `audit verify`; its details are shown as far
        as the reader's field policy allows (domain/disclosure.py)."""
        return cls(
            seq=e.seq,
            at=e.at,
            actor_id=e.actor_id,
            username=e.username,
            roles=json.loads(e.roles),
            client_ip=e.client_ip,
            peer_ip=e.peer_ip,
            user_agent=e.user_agent,
            request_id=e.request_id,
            operation=e.operation,
            action=e.action,
            target_type=e.target_type,
            target_id=e.target_id,
            outcome=e.outcome,
            code=e.code,
            details=visible(json.loads(e.details), access, action=e.action),
            prev_hash=e.prev_hash,
            hash=e.hash,
        )


@strawberry.input(description="All given conditions must hold. `to` is exclusive.")
class AuditEventFilter:
    actor: str | None = strawberry.field(default=None, description="A username.")
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = strawberry.field(
        default=None,
        description=(
            "The row's id as audit events show it, or the object's global ID (which also "
            "sets targetType)."
        ),
    )
    ip: str | None = strawberry.field(default=None, description="The resolved client IP.")
    outcome: str | None = strawberry.field(default=None, description="success, denied or failure")
    from_: dt.datetime | None = strawberry.field(default=None, name="from")
    to: dt.datetime | None = None

    def to_domain(self) -> DomainAuditFilter:
        found = decode_global_id(self.target_id) if self.target_id is not None else None
        return DomainAuditFilter(
            actor=self.actor,
            action=self.action,
            target_type=found[0] if found is not None else self.target_type,
            target_id=str(found[1]) if found is not None else self.target_id,
            ip=self.ip,
            outcome=self.outcome,
            time_from=self.from_,
            time_to=self.to,
        )


@strawberry.type
class AuditQueries:
    @strawberry.field(description="Newest first. Compliance only; reading is itself audited.")
    async def audit_events(
        self,
        info: Info[RequestContext, None],
        filter: AuditEventFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[AuditEvent] | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read() as session:
            page = await audit_service.list_events(
                session=session,
                actor=actor,
                flt=filter.to_domain() if filter else None,
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
            await session.commit()
        return Connection.from_page(page, lambda e: AuditEvent.from_model(e, actor.access))
