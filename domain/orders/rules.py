"""The order lifecycle as pure rules: which status may follow which."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    PAID = "PAID"
    PICKING = "PICKING"
    SHIPPED = "SHIPPED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


_FORWARD = {
    OrderStatus.PENDING_PAYMENT: OrderStatus.PAID,
    OrderStatus.PAID: OrderStatus.PICKING,
    OrderStatus.PICKING: OrderStatus.SHIPPED,
    OrderStatus.SHIPPED: OrderStatus.COMPLETED,
}
_CANCELLABLE = {OrderStatus.PENDING_PAYMENT, OrderStatus.PAID, OrderStatus.PICKING}


def allowed_next(current: OrderStatus) -> frozenset[OrderStatus]:
    nexts = set()
    if current in _FORWARD:
        nexts.add(_FORWARD[current])
    if current in _CANCELLABLE:
        nexts.add(OrderStatus.CANCELLED)
    return frozenset(nexts)


def can_transition(current: OrderStatus, to: OrderStatus) -> bool:
    return to in allowed_next(current)
