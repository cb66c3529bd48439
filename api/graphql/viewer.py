"""Who am I and what may I see: lets a UI render each field as full, masked or hidden."""

from __future__ import annotations

import datetime as dt
from enum import Enum

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from domain.access import RESOURCES


@strawberry.enum
class Access(Enum):
    FULL = "FULL"
    MASKED = "MASKED"
    NONE = "NONE"


@strawberry.type
class FieldAccessEntry:
    type: str
    field: str
    access: Access


@strawberry.type
class Viewer:
    username: str
    roles: list[str]
    channels: list[str]
    actions: list[str] = strawberry.field(description="Operations the caller may perform.")
    field_access: list[FieldAccessEntry]
    business_timezone: str
    business_today: dt.date


@strawberry.type
class ViewerQueries:
    @strawberry.field
    def viewer(self, info: Info[RequestContext, None]) -> Viewer:
        actor = info.context.require_actor()
        access = actor.access
        runtime = info.context.runtime
        zone = runtime.settings.timezone
        return Viewer(
            business_timezone=zone.key,
            business_today=runtime.clock().astimezone(zone).date(),
            username=actor.username,
            roles=sorted(actor.roles),
            channels=sorted(actor.channels),
            actions=sorted(str(a) for a in access.actions),
            field_access=[
                FieldAccessEntry(
                    type=type_name,
                    field=field,
                    access=Access(access.field_access(f"{type_name}.{field}").value),
                )
                for type_name, fields in RESOURCES.items()
                for field in fields
            ],
        )
