"""A postal address as every part of ordergate takes it: a channel's shipping address, a
customer's address, an order's new address. One value type, checked once at the edge."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from domain.customers import normalise
from domain.values import clean_text

SIZES = {
    "recipient": 100,
    "phone": 32,
    "province": 50,
    "city": 50,
    "district": 50,
    "street": 200,
    "postal_code": 12,
}


@dataclass(frozen=True)
class PostalAddress:
    recipient: str
    phone: str
    province: str
    city: str
    district: str
    street: str
    postal_code: str | None = None

    def checked(self) -> PostalAddress:
        """Each part as clean text within its column; all but the postal code required."""
        values = {
            part: clean_text(
                getattr(self, part),
                what=part if part != "postal_code" else "postalCode",
                max_length=size,
                required=part != "postal_code",
            )
            or None
            for part, size in SIZES.items()
        }
        return PostalAddress(**values)  # type: ignore[arg-type]

    def digest(self) -> str:
        """A digest of where it goes, whoever it is addressed to: the same place written two
        ways has one digest; the address itself stays out of the report."""
        key = normalise.address_key(city=self.city, district=self.district, street=self.street)
        return hashlib.sha256(key.encode()).hexdigest()
