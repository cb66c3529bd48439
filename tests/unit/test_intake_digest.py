"""The intake digest is stored with every ingested order (`orders.intake_digest`): a change to
how it is computed would turn every resubmission of an existing order into a CONFLICT. Pinned
here to the value the first intake computed."""

from __future__ import annotations

from domain.intake import service as intake


def _order(**changes: object) -> intake.ChannelOrder:
    fields: dict = {
        "external_id": "TB-1",
        "status": intake.OrderStatus.PAID,
        "created_at": "2026-11-25T16:30:00+00:00",
        "currency": "CNY",
        "buyer": intake.Buyer("王小明", "+86 138 0013 8000", "Wang@Example.com"),
        "shipping_address": intake.ShippingAddress(
            "王小明", "13800138000", "上海市", "上海市", "浦东新区", "世纪大道 100 号", "200120"
        ),
        "lines": [intake.Line("SKU-0001", 2, "59.90")],
        "shipping_fee": "8.00",
        "discount": "5.00",
        "campaign": "DOUBLE11",
    }
    fields.update(changes)
    return intake.ChannelOrder(**fields)


def test_the_digest_of_an_order_is_what_it_always_was() -> None:
    digest = intake._check(_order()).digest
    assert digest == "a680ede5531d48be5f0a4f69ca904bfb9d3521c1f1b541d25aa92676964790c0"


def test_what_may_change_does_not_change_the_digest_and_the_rest_does() -> None:
    same = intake._check(_order()).digest
    later = intake._check(
        _order(status=intake.OrderStatus.SHIPPED, carrier="SF", tracking_number="SF1")
    ).digest
    moved = intake._check(
        _order(
            shipping_address=intake.ShippingAddress(
                "王小明", "13800138000", "上海市", "上海市", "浦东新区", "世纪大道 200 号", "200120"
            )
        )
    ).digest
    assert later == same
    assert moved != same


def test_phone_numbers_keep_ascii_digits_only_without_the_country_code() -> None:
    assert intake.normalise_phone("+86 (138) 0013-8000") == "13800138000"
    assert intake.normalise_phone("0086 13800138000") == "13800138000"
    assert intake.normalise_phone("\uff11\uff13\uff18") is None  # full-width digits: not ASCII
    assert intake.normalise_phone("") is None
