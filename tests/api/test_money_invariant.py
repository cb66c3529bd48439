"""The order's money invariant under random sequences of payment, refunds and price changes,
through the real API with real signatures: 0 ≤ refunded ≤ paid, the total never below what
was refunded, whatever the order of requests and approvals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.api.test_approvals import APPROVE, PRICE, REFUND, registered
from tests.conftest import Api, db_id

STEP = st.one_of(
    st.tuples(st.just("pay")),
    st.tuples(st.just("refund"), st.decimals("0.01", "1.2", places=2)),
    st.tuples(st.just("price"), st.integers(0, 3), st.decimals("0.01", "999.99", places=2)),
)
EXAMPLES = 10


async def _money(api: Api, order_id: str) -> tuple[int, int, int]:
    async with api.app.state.runtime.sessions() as session:
        row = (
            await session.execute(
                text("SELECT total_minor, paid_minor, refunded_minor FROM orders WHERE id = :id"),
                {"id": db_id(order_id)},
            )
        ).one()
    return row[0], row[1], row[2]


async def test_refunded_never_exceeds_paid_and_total_never_falls_below_refunded(
    api: Api,
) -> None:
    plans: list[list[tuple[Any, ...]]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(STEP, min_size=2, max_size=7))
    def draw(plan: list[tuple[Any, ...]]) -> None:
        plans.append(plan)

    draw()
    orders = await api.gql(
        "{ orders(first: 30, filter: {status: [PENDING_PAYMENT]}) "
        "{ edges { node { id lines { id } } } } }",
        as_="finance",
    )
    pending = [e["node"] for e in orders["data"]["orders"]["edges"]]
    assert len(pending) >= EXAMPLES
    signer = await registered(api)

    for plan, order in zip(plans, pending, strict=False):
        for step in plan:
            if step[0] == "pay":
                await api.gql(
                    "mutation($id: ID!) { transitionOrder(id: $id, to: PAID) { status } }",
                    {"id": order["id"]},
                    as_="ops",
                )
                made = None
            elif step[0] == "refund":
                total, paid, refunded = await _money(api, order["id"])
                amount = (Decimal(max(paid - refunded, 1)) * step[1] / 100).quantize(
                    Decimal("0.01")
                )
                made = await api.gql(
                    REFUND,
                    {
                        "order": order["id"],
                        "amount": str(max(amount, Decimal("0.01"))),
                        "reason": "r",
                    },
                    as_="cs",
                )
                made = made["data"]["requestRefund"] if made.get("data") else None
            else:
                line = order["lines"][step[1] % len(order["lines"])]["id"]
                made = await api.gql(
                    PRICE, {"line": line, "price": str(step[2]), "reason": "r"}, as_="sales"
                )
                made = made["data"]["requestPriceChange"] if made.get("data") else None
            if made:
                await api.gql(
                    APPROVE,
                    {"id": made["id"], "sig": signer.sign(made["signingPayload"])},
                    as_="approver",
                )

            total, paid, refunded = await _money(api, order["id"])
            assert 0 <= refunded <= paid, (plan, step)
            assert total >= refunded, (plan, step)
