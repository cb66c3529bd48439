"""Relay-style connections over the domain's keyset pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

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
    total_count: int

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
            total_count=page.total_count,
        )


def parse_id(value: strawberry.ID, what: str) -> int:
    """IDs are opaque to clients; a value we could never have issued is bad input."""
    return parse_int_id(value, what=what)
