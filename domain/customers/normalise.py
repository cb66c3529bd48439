"""One form for each way a customer is recognised: phone, email, name and address.

- Phones become E.164 with Google's libphonenumber (`phonenumbers`), default region CN: a
  mainland mobile written `13800138000`, `+86 138 0013 8000`, `0086-138…`, `8613800138000` or in
  full-width digits is one number. A number libphonenumber calls invalid keeps no E.164 form
  and is flagged (`phoneValid` false), never deleted.
- Emails are NFKC, trimmed and lower-cased; an address without one `@` and a dotted domain is
  not valid.
- Names are NFKC with all white space removed (`王 小明` and `王小明` are one name).
- An address key is NFKC city + district + street, without white space and punctuation, and
  without the province (channels send it or leave it out) or the administrative suffixes
  `市` and `区`/`县` that some channels drop, and without a remark in brackets after the street
  (前台, the front desk): a key for matching, not for shipping.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

DEFAULT_REGION = "CN"
_SPACE = re.compile(r"\s+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


@dataclass(frozen=True)
class Phone:
    e164: str | None  # None when libphonenumber cannot read a valid number
    valid: bool


def phone(value: str | None, region: str = DEFAULT_REGION) -> Phone | None:
    """The number in E.164, or invalid; None when no number was given."""
    if value is None or not value.strip():
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return Phone(None, False)
    if not phonenumbers.is_valid_number(number):
        return Phone(None, False)
    return Phone(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), True)


def email(value: str | None) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", value).strip().lower()
    return text or None


def email_valid(value: str | None) -> bool:
    return value is not None and _EMAIL.match(value) is not None


def name(value: str | None) -> str:
    return _SPACE.sub("", unicodedata.normalize("NFKC", value or ""))


def _keyed(value: str | None) -> str:
    """NFKC, lower case, without white space, punctuation or symbols of any script."""
    text = unicodedata.normalize("NFKC", value or "").lower()
    return "".join(c for c in text if unicodedata.category(c)[0] not in "ZPSC")


def _part(value: str | None, suffixes: tuple[str, ...]) -> str:
    text = _keyed(value)
    for suffix in suffixes:
        if len(text) > len(suffix) + 1 and text.endswith(suffix):
            return text[: -len(suffix)]
    return text


# A remark in brackets after a street (前台, "back door", 代收点) names who takes the parcel
# there, not another place: the key leaves it out, so the same address written with a remark
# is still the same place (issue #30, L3: the address-reuse rule was evaded that way). Matched
# after NFKC, which makes full-width round and square brackets ASCII ones.
_REMARK = re.compile(r"[(\[【][^)\]】]*[)\]】]")


def address_key(*, city: str | None, district: str | None, street: str | None) -> str:
    """Two addresses with the same key are the same place, whichever way they were written."""
    street_text = _REMARK.sub("", unicodedata.normalize("NFKC", street or ""))
    return (
        _part(city, ("市",))
        + "|"
        + _part(district, ("新区", "区", "县", "市"))
        + "|"
        + _part(street_text, ())
    )
