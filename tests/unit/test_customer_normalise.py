"""One form for phones, emails, names and addresses, on the ways Chinese channels write them."""

from __future__ import annotations

import pytest

from domain.customers import normalise

MOBILE = "+8613800138000"


@pytest.mark.parametrize(
    "written",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+86-13800138000",
        "0086 138 0013 8000",
        "8613800138000",
        "１３８００１３８０００",  # full-width digits
        "＋８６ １３８ ００１３ ８０００",
        " 13800138000\t",
    ],
)
def test_a_mainland_mobile_written_any_way_is_one_e164_number(written: str) -> None:
    assert normalise.phone(written) == normalise.Phone(MOBILE, True)


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("021-6234 5678", "+862162345678"),  # a Shanghai landline
        ("+1 650 253 0000", "+16502530000"),  # a foreign number keeps its country
        ("+852 6123 4567", "+85261234567"),  # Hong Kong mobile
    ],
)
def test_landlines_and_foreign_numbers_are_e164_too(written: str, e164: str) -> None:
    assert normalise.phone(written) == normalise.Phone(e164, True)


@pytest.mark.parametrize("written", ["12345", "14000000000", "138001380001", "not a phone", "+"])
def test_a_number_that_cannot_be_valid_is_flagged_not_guessed(written: str) -> None:
    assert normalise.phone(written) == normalise.Phone(None, False)


@pytest.mark.parametrize("written", [None, "", "   "])
def test_no_number_is_none(written: str | None) -> None:
    assert normalise.phone(written) is None


def test_emails_are_one_form_and_checked() -> None:
    assert normalise.email("  Wang.XiaoMing@Example.COM ") == "wang.xiaoming@example.com"
    assert normalise.email("ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "wang@example.com"
    assert normalise.email("   ") is None
    assert normalise.email_valid("wang@example.com")
    assert not normalise.email_valid("wang@localhost")
    assert not normalise.email_valid("wang.example.com")
    assert not normalise.email_valid("a@b@c.com")
    assert not normalise.email_valid(None)


def test_names_ignore_white_space_and_width() -> None:
    assert normalise.name("王 小明") == normalise.name("王小明") == normalise.name(" 王小明\u3000")
    assert normalise.name("Ｌｉ Ｌｅｉ") == "LiLei"


@pytest.mark.parametrize(
    "address",
    [
        {"city": "上海市", "district": "浦东新区", "street": "世纪大道 100 号"},
        {"city": "上海", "district": "浦东新区", "street": "世纪大道100号"},
        {"city": "上海市", "district": "浦东", "street": "世纪大道１００号"},
        {"city": " 上海市 ", "district": "浦东新区", "street": "世纪大道，100号。"},
    ],
)
def test_one_place_written_several_ways_has_one_key(address: dict[str, str]) -> None:
    reference = normalise.address_key(city="上海市", district="浦东新区", street="世纪大道100号")
    assert normalise.address_key(**address) == reference


def test_different_places_have_different_keys() -> None:
    here = normalise.address_key(city="上海市", district="浦东新区", street="世纪大道100号")
    assert here != normalise.address_key(city="上海市", district="浦东新区", street="世纪大道101号")
    assert here != normalise.address_key(city="上海市", district="徐汇区", street="世纪大道100号")
    assert here != normalise.address_key(city="北京市", district="浦东新区", street="世纪大道100号")


@pytest.mark.parametrize(
    "street",
    [
        "虹梅路1000弄5号402室（前台）",
        "虹梅路 1000 弄 5 号 402 室",
        "虹梅路１０００弄５号４０２室【代收点】",
        "虹梅路1000弄5号402室 (front desk)",
    ],
)
def test_a_remark_in_brackets_does_not_make_another_place(street: str) -> None:
    """Issue #30, L3: the address-reuse rule was evaded by adding "（前台）"."""
    plain = normalise.address_key(city="上海市", district="闵行区", street="虹梅路1000弄5号402室")

    assert normalise.address_key(city="上海", district="闵行", street=street) == plain


def test_a_different_room_is_still_another_place() -> None:
    one = normalise.address_key(city="上海市", district="闵行区", street="虹梅路1000弄5号402室")
    other = normalise.address_key(city="上海市", district="闵行区", street="虹梅路1000弄5号403室")

    assert one != other
