"""Values that travel inside other records — audit event details, an export's frozen filter —
shown only as far as the reader's field policy allows.

An approval's audit event carries the order's total and margin before and after; an export's
filter may name a phone number or an amount. The stored record stays complete (the audit
chain hashes it, `audit verify` needs it); what a reader is shown passes every value whose key
names a governed field through the reader's `AccessProfile`: kept in full, masked, or withheld.
Withheld keys are listed under `withheld`, so a reader knows something was there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.access import AccessProfile, FieldAccess

# Keys that carry the value of a governed field, wherever they appear in a record's details.
KEY_FIELDS: Mapping[str, str] = {
    # order money (approval events: before/after; refund payloads)
    "unitPrice": "OrderLine.unitPrice",
    "total": "Order.total",
    "amountPaid": "Order.total",
    "grossMargin": "Order.grossMargin",
    "refunded": "Order.refundedAmount",
    "alreadyRefunded": "Order.refundedAmount",
    "refundedTotal": "Order.refundedAmount",
    "refund": "ApprovalRequest.amount",
    # approval requests: the payload holds all of the above; a JWS embeds the payload
    "payload": "ApprovalRequest.signingPayload",
    "jws": "ApprovalRequest.signingPayload",
    "summary": "ApprovalRequest.summary",
    # order history notes
    "note": "OrderStatusChange.note",
    # export scopes, and the filter names inside them
    "filter": "ExportRequest.filter",
    "customerPhone": "Order.customerPhone",
    "minTotal": "Order.total",
    "maxTotal": "Order.total",
    "customerId": "Order.customer",
    "nameContains": "Customer.name",
    "phone": "Customer.phone",
    "email": "Customer.email",
    # customer contact changes, and shipping addresses before and after a change
    "customerName": "Customer.name",
    "recipient": "Address.recipient",
    "street": "Address.street",
}

# Failure messages of money operations may quote amounts ("refunds would total 120.00, more
# than the 100.00 paid"): shown only to readers of order totals.
MESSAGE_FIELDS: Mapping[str, str] = {"approval.": "Order.total"}


def visible(value: Any, access: AccessProfile, *, action: str = "") -> Any:
    """`value` (a JSON-like record) as this reader may see it."""
    withheld: list[str] = []
    shown = _visible(value, access, action, "", withheld)
    if withheld and isinstance(shown, dict):
        shown["withheld"] = sorted(set(withheld))
    return shown


def _visible(value: Any, access: AccessProfile, action: str, path: str, withheld: list[str]) -> Any:
    if isinstance(value, list):
        return [_visible(v, access, action, path, withheld) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        coordinate = KEY_FIELDS.get(key)
        if key == "message":
            coordinate = next((c for p, c in MESSAGE_FIELDS.items() if action.startswith(p)), None)
        if coordinate is None:
            out[key] = _visible(item, access, action, where, withheld)
            continue
        level = access.field_access(coordinate)
        if level is FieldAccess.FULL:
            out[key] = _visible(item, access, action, where, withheld)
        elif level is FieldAccess.MASKED and isinstance(item, str):
            out[key] = access.present(coordinate, item)
        elif item is None:
            out[key] = None
        else:
            withheld.append(where)
    return out
