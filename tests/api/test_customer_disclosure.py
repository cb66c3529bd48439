"""What customer views give away besides their own fields (issue #30, L1 and L2): earlier
contact values and a merge preview's contacts are sensitive reads like the fields they came
from, and a figure made of fields a role may not read is not readable by that role."""

from __future__ import annotations

from tests.api.test_audit import events
from tests.api.test_customer_master import CUSTOMER, UPDATE, buyer_order, customer_of
from tests.api.test_customer_merge import two_customers
from tests.api.test_intake import ingest
from tests.conftest import Api, errors_of

HISTORY = """query($id: ID!) { customer(id: $id) { id contactHistory { field before after } } }"""
PREVIEW_CONTACTS = """query($s: ID!, $m: ID!) {
  customerMergePreview(survivorId: $s, mergedId: $m) { name phone email } }"""
SPENT = """query($id: ID!) { customer(id: $id) { id totalSpent } }"""


def _returned(event: dict) -> dict[str, int]:
    return {c: r["records"] for c, r in event["details"]["returned"].items()}


async def test_earlier_contact_values_are_audited_as_the_fields_they_were(api: Api) -> None:
    [cid] = await customer_of(
        api, await ingest(api, [buyer_order("TB-L1-1", "吴用", "13622223333")])
    )
    version = (await api.gql(CUSTOMER, {"id": cid}, as_="cs"))["data"]["customer"]["version"]
    changed = await api.gql(
        UPDATE, {"id": cid, "in": {"phone": "13699998888"}, "v": version}, as_="cs"
    )
    assert "errors" not in changed, changed
    before = len(await events(api, action="data.read", username="demo-cs"))

    shown = await api.gql(HISTORY, {"id": cid}, as_="cs")

    [change] = shown["data"]["customer"]["contactHistory"]
    assert (change["field"], change["before"], change["after"]) == (
        "phone",
        "13622223333",
        "13699998888",
    )
    reads = await events(api, action="data.read", username="demo-cs")
    assert len(reads) == before + 1
    assert _returned(reads[-1]) == {"Customer.phone": 2}  # the value before and after


async def test_a_merge_previews_contacts_are_audited_as_the_fields_they_are(api: Api) -> None:
    survivor, merged = await two_customers(api)
    before = len(await events(api, action="data.read", username="demo-ops"))

    preview = await api.gql(PREVIEW_CONTACTS, {"s": survivor, "m": merged}, as_="ops")

    # Operations merges customers and reads their contacts masked: masked is still a read.
    assert preview["data"]["customerMergePreview"] == {
        "name": "陈**",
        "phone": "138****2000",
        "email": "c***@example.com",
    }
    reads = await events(api, action="data.read", username="demo-ops")
    assert len(reads) == before + 1
    assert _returned(reads[-1]) == {"Customer.name": 1, "Customer.phone": 1, "Customer.email": 1}


async def test_money_spent_is_not_shown_to_a_role_denied_order_totals_and_refunds(
    api: Api,
) -> None:
    """Compliance may not read Order.total or Order.refundedAmount; it read both off
    Customer.totalSpent, before and after a refund."""
    [cid] = await customer_of(
        api, await ingest(api, [buyer_order("TB-L2-1", "卢俊", "13633334444")])
    )

    as_compliance = await api.gql(SPENT, {"id": cid}, as_="compliance")
    as_cs = await api.gql(SPENT, {"id": cid}, as_="cs")

    assert as_compliance["data"]["customer"]["totalSpent"] is None
    assert ("FORBIDDEN", "Customer.totalSpent") in errors_of(as_compliance)
    assert as_cs["data"]["customer"]["totalSpent"] == "242.80"
    assert errors_of(as_cs) == []
