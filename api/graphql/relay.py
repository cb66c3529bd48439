"""Relay-style connections over the domain's keyset pages."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.relay import GlobalID
from strawberry.types.nodes import SelectedField

from domain.errors import BadInput
from domain.pagination import Page
from domain.values import parse_int_id

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int = strawberry.field(
        description=(
            "How many items match in all, across every page — counted only when selected, and "
            "only up to 10,000: past that it is 10,000 and `totalCountCapped` is true."
        )
    )
    total_count_capped: bool = strawberry.field(
        description="True when more items match than `totalCount` says (counting stopped)."
    )

    @classmethod
    def from_page(cls, page: Page[Any], convert: Callable[[Any], T]) -> Connection[T]:
        edges = [
            Edge(cursor=c, node=convert(item))
            for item, c in zip(page.items, page.cursors, strict=True)
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next,
                has_previous_page=page.has_previous,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
            total_count=page.total_count or 0,
            total_count_capped=page.total_capped,
        )


@strawberry.interface(
    description=(
        "An object with a global ID: pass `id` to `node(id:)` to fetch it again, or to any "
        "argument that takes this type's ID. IDs are opaque; do not parse them."
    )
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Global ID: stable, opaque, unique across every type."
    )


# What each object's ID is called in messages, by its GraphQL type.
NODE_TYPES = {
    "Order": "order",
    "OrderLine": "order line",
    "Customer": "customer",
    "StockItem": "stock item",
    "ApprovalRequest": "approval request",
    "ExportRequest": "export request",
}
# Types with global IDs that are not fetched through `node(id:)` (operational records).
ID_TYPES = {
    **NODE_TYPES,
    "Webhook": "webhook",
    "WebhookDelivery": "webhook delivery",
    "PickingList": "picking list",
    "Reservation": "reservation",
    "StockMovement": "stock movement",
    "StockPool": "stock pool",
    "Return": "return",
    "Task": "task",
    "StockCount": "stock count",
    "StockAlert": "stock alert",
    "ReturnInspection": "return inspection",
    "CustomerMatchCandidate": "match candidate",
    "CustomerMerge": "customer merge",
}
_KIND = {what: type_name for type_name, what in ID_TYPES.items()}
_BASE64 = re.compile(r"[A-Za-z0-9+/]{4,64}={0,2}")


def global_id(type_name: str, pk: int) -> strawberry.ID:
    """The opaque global ID of one row (strawberry's format: base64 of `Type:pk`)."""
    return strawberry.ID(str(GlobalID(type_name, str(pk))))


def decode_global_id(value: str, known: dict[str, str] = NODE_TYPES) -> tuple[str, int] | None:
    """A global ID we issued for one of the `known` types (by default those `node(id:)`
    serves), as (type name, primary key); None for anything else."""
    text = str(value)
    if _BASE64.fullmatch(text) is None:
        return None
    try:
        decoded = base64.b64decode(text, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    type_name, sep, pk = decoded.partition(":")
    if not sep or type_name not in known:
        return None
    try:
        return type_name, parse_int_id(pk, what=known[type_name])
    except BadInput:
        return None


def parse_id(value: strawberry.ID, what: str) -> int:
    """An ID argument as the row's primary key. IDs are opaque to clients; a value we could
    never have issued, or the ID of another type, is bad input.

    Deprecated, until the next minor release: the bare integer ids issued before global IDs
    (`"42"`) are still accepted for the types that had them."""
    text = str(value)
    type_name = _KIND.get(what)
    if type_name is None or (
        text.isascii() and text.isdigit() and type_name in NODE_TYPES  # the deprecated form
    ):
        return parse_int_id(text, what=what)
    found = decode_global_id(text, ID_TYPES)
    if found is None or found[0] != type_name:
        raise BadInput(f"{text[:40]!r} is not a valid {what} id")
    return found[1]


def row_id(target_id: object) -> object:
    """An audited target as the row's id, whether the client sent a global ID or the
    deprecated bare integer, so one row has one name in the audit log and its reports."""
    found = decode_global_id(target_id, ID_TYPES) if isinstance(target_id, str) else None
    return str(found[1]) if found is not None else target_id


def selects(info: Any, name: str) -> bool:
    """Whether the field being resolved selects `name` among its direct children (through
    fragments and inline fragments too): `totalCount` is counted only when asked for."""

    def among(selections: Any) -> bool:
        for selection in selections:
            if isinstance(selection, SelectedField):
                if selection.name == name:
                    return True
            elif among(selection.selections):  # a fragment spread or an inline fragment
                return True
        return False

    return any(among(field.selections) for field in info.selected_fields)


def selects_path(info: Any, *names: str) -> bool:
    """Whether the field being resolved selects the nested path `names` (`results`, `order`),
    through fragments and inline fragments too."""

    def matching(selections: Any, name: str) -> list[Any]:
        found = []
        for selection in selections:
            if isinstance(selection, SelectedField):
                if selection.name == name:
                    found.append(selection)
            else:  # a fragment spread or an inline fragment
                found.extend(matching(selection.selections, name))
        return found

    level = list(info.selected_fields)
    for name in names:
        level = [child for field in level for child in matching(field.selections, name)]
    return bool(level)
