from decimal import Decimal

import pytest

from api.client_ip import resolve_client_ip
from domain.access import mask_email, mask_name, mask_phone, mask_street
from domain.errors import BadInput
from domain.money import format_amount, to_minor
from domain.orders.rules import OrderStatus, allowed_next, can_transition

S = OrderStatus


def test_lifecycle_moves_one_step_forward_or_cancels_before_shipping() -> None:
    assert allowed_next(S.PENDING_PAYMENT) == {S.PAID, S.CANCELLED}
    assert allowed_next(S.PICKING) == {S.SHIPPED, S.CANCELLED}
    assert allowed_next(S.SHIPPED) == {S.COMPLETED}
    assert allowed_next(S.COMPLETED) == frozenset()
    assert allowed_next(S.CANCELLED) == frozenset()
    assert not can_transition(S.PAID, S.SHIPPED)


def test_phone_keeps_first_three_and_last_four_digits() -> None:
    assert mask_phone("13812345678") == "138****5678"


def test_email_keeps_first_character_and_domain() -> None:
    assert mask_email("zhang.wei@example.com") == "z***@example.com"


def test_name_keeps_the_family_name() -> None:
    assert mask_name("欧阳娜娜") == "欧***"


def test_money_round_trips_through_minor_units_without_floats() -> None:
    assert to_minor("129.90", "CNY") == 12990
    assert format_amount(12990, "CNY") == "129.90"
    assert to_minor(Decimal("5"), "JPY") == 5


@pytest.mark.parametrize("amount", ["1.005", "abc", "NaN", "Infinity"])
def test_money_refuses_more_precision_than_the_currency_or_non_numbers(amount: str) -> None:
    with pytest.raises(BadInput):
        to_minor(amount, "CNY")


TRUSTED = [__import__("ipaddress").ip_network("10.0.0.0/8")]


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    assert resolve_client_ip("198.51.100.9", ["1.2.3.4"], TRUSTED) == "198.51.100.9"


def test_forwarded_for_is_walked_right_to_left_past_trusted_proxies() -> None:
    # The client wrote "6.6.6.6" itself; the trusted proxy appended what it really saw.
    assert (
        resolve_client_ip("10.0.0.2", ["6.6.6.6, 203.0.113.5, 10.0.0.1"], TRUSTED) == "203.0.113.5"
    )


def test_with_no_trusted_proxies_the_header_is_never_believed() -> None:
    assert resolve_client_ip("10.0.0.2", ["6.6.6.6"], []) == "10.0.0.2"


def test_a_malformed_hop_stops_the_walk_at_the_last_vouched_address() -> None:
    assert resolve_client_ip("10.0.0.2", ["junk, 10.0.0.1"], TRUSTED) == "10.0.0.1"


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("1234567", "*******"),  # 7 or fewer: nothing to keep without showing it all
        ("123456", "******"),
        ("12345678", "123*5678"),
        ("+8613812345678", "+86*******5678"),
        ("", ""),
    ],
)
def test_phone_masks_at_their_boundaries(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("email", "masked"),
    [("a@b.cn", "a***@b.cn"), ("no-at-sign", "***"), ("@example.com", "***@example.com")],
)
def test_email_masks_at_their_boundaries(email: str, masked: str) -> None:
    assert mask_email(email) == masked


@pytest.mark.parametrize(("name", "masked"), [("张", "张*"), ("", ""), ("欧阳", "欧*")])
def test_name_masks_at_their_boundaries(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("street", "masked"), [("人民路1号", "人民****"), ("", ""), ("x", "x****")]
)
def test_street_masks_keep_two_characters(street: str, masked: str) -> None:
    assert mask_street(street) == masked
