"""The amount paid comes from payment evidence, never from a status change (issue #30, H2):
an approver must never sign a refund of money that was not received."""

from __future__ import annotations

from tests.api.test_approvals import APPROVE, PRICE, REFUND, order_in, registered
from tests.api.test_intake import channel_order, ingest
from tests.conftest import Api, errors_of

MOVE = "mutation($id: ID!) { transitionOrder(id: $id, to: PAID) { status refundedAmount } }"


async def test_an_order_a_person_moved_to_paid_has_nothing_to_refund(api: Api) -> None:
    order = await order_in(api, "PENDING_PAYMENT")
    moved = await api.gql(MOVE, {"id": order["id"]}, as_="ops")

    refund = await api.gql(
        REFUND, {"order": order["id"], "amount": "1.00", "reason": "客户要求"}, as_="cs"
    )

    assert moved["data"]["transitionOrder"]["status"] == "PAID"
    assert errors_of(refund) == [("BAD_USER_INPUT", None)]
    assert "0.00 paid" in refund["errors"][0]["message"]


async def test_a_channel_order_repriced_before_payment_refunds_what_the_buyer_paid(
    api: Api,
) -> None:
    """Sold for 10.00 on the channel, repriced to 9,000.00 here before payment, then reported
    paid by the channel: the buyer paid 10.00, and that is all there is to refund."""
    unpaid = channel_order(
        "TB-PAID-EVIDENCE",
        status="PENDING_PAYMENT",
        paidAt=None,
        paymentTransactionId=None,
        lines=[{"sku": "SKU-0003", "quantity": 1, "unitPrice": "10.00"}],
        shippingFee="0.00",
        discount="0.00",
    )
    [landed] = await ingest(api, [unpaid])
    order_id = landed["order"]["id"]
    found = await api.gql(
        "query($id: ID!) { order(id: $id) { lines { id } } }", {"id": order_id}, as_="finance"
    )
    line = found["data"]["order"]["lines"][0]["id"]
    asked = await api.gql(PRICE, {"line": line, "price": "9000.00", "reason": "改价"}, as_="sales")
    signer = await registered(api)
    request = asked["data"]["requestPriceChange"]
    signed = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )
    paid = {
        **unpaid,
        "status": "PAID",
        "paidAt": "2026-11-25T16:40:00Z",
        "paymentTransactionId": "AL2026112599999",
    }
    [update] = await ingest(api, [paid])

    too_much = await api.gql(
        REFUND, {"order": order_id, "amount": "9000.00", "reason": "退款"}, as_="cs"
    )
    all_of_it = await api.gql(
        REFUND, {"order": order_id, "amount": "10.00", "reason": "退款"}, as_="cs"
    )

    assert errors_of(signed) == []
    assert update["outcome"] == "UPDATED"
    assert errors_of(too_much) == [("BAD_USER_INPUT", None)]
    assert "10.00 paid" in too_much["errors"][0]["message"]
    assert errors_of(all_of_it) == []
    assert "paid 10.00" in all_of_it["data"]["requestRefund"]["summary"]
