"""Which reads are audited, against a hand-written list: every personal or restricted field,
each on its own, leaves a `data.read` event naming it; an ordinary field leaves none."""

from __future__ import annotations

import pytest

from tests.api.test_audit import events
from tests.conftest import Api

# (coordinate, a query selecting just that field, a role that reads it)
SENSITIVE = [
    ("Order.customerName", "{ orders(first: 2) { edges { node { customerName } } } }", "cs"),
    ("Order.customerPhone", "{ orders(first: 2) { edges { node { customerPhone } } } }", "cs"),
    ("Customer.name", "{ customers(first: 2) { edges { node { name } } } }", "cs"),
    ("Customer.phone", "{ customers(first: 2) { edges { node { phone } } } }", "cs"),
    ("Customer.email", "{ customers(first: 2) { edges { node { email } } } }", "cs"),
    (
        "Address.recipient",
        "{ orders(first: 2) { edges { node { shippingAddress { recipient } } } } }",
        "cs",
    ),
    (
        "Address.phone",
        "{ orders(first: 2) { edges { node { shippingAddress { phone } } } } }",
        "cs",
    ),
    (
        "Address.street",
        "{ orders(first: 2) { edges { node { shippingAddress { street } } } } }",
        "cs",
    ),
    (
        "OrderLine.costPrice",
        "{ orders(first: 2) { edges { node { lines { costPrice } } } } }",
        "finance",
    ),
    ("Order.grossMargin", "{ orders(first: 2) { edges { node { grossMargin } } } }", "finance"),
    (
        "Order.paymentTransactionId",
        "{ orders(first: 2) { edges { node { paymentTransactionId } } } }",
        "finance",
    ),
    ("StockItem.unitCost", "{ stockItems(first: 2) { edges { node { unitCost } } } }", "finance"),
]


@pytest.mark.parametrize(("coordinate", "query", "role"), SENSITIVE)
async def test_each_sensitive_field_read_is_audited_with_its_count(
    api: Api, coordinate: str, query: str, role: str
) -> None:
    result = await api.gql(query, as_=role)

    assert "errors" not in result
    found = await events(api, action="data.read", username=f"demo-{role}")
    assert found, f"reading {coordinate} left no data.read event"
    returned = found[-1]["details"]["returned"]
    assert list(returned) == [coordinate]
    assert returned[coordinate]["records"] >= 1


@pytest.mark.parametrize(
    "query",
    [
        "{ orders(first: 2) { edges { node { number status total } } } }",
        "{ stockItems(first: 2) { edges { node { sku onHand } } } }",
        "{ orders(first: 2) { edges { node { shippingAddress { city province } } } } }",
    ],
)
async def test_ordinary_fields_leave_no_read_event(api: Api, query: str) -> None:
    result = await api.gql(query, as_="finance")

    assert "errors" not in result
    assert await events(api, action="data.read", username="demo-finance") == []


async def test_a_masked_read_is_audited_as_masked(api: Api) -> None:
    await api.gql("{ customers(first: 3) { edges { node { phone } } } }", as_="sales")

    found = await events(api, action="data.read", username="demo-sales")

    assert found[-1]["details"]["returned"]["Customer.phone"]["access"] == "MASKED"
