"""The postal address clients send: on channel orders, customer records and address changes."""

from __future__ import annotations

import strawberry

from domain.addresses import PostalAddress


@strawberry.input(description="A postal address.")
class AddressInput:
    recipient: str
    phone: str
    province: str
    city: str
    district: str
    street: str
    postal_code: str | None = None

    def to_domain(self) -> PostalAddress:
        return PostalAddress(
            recipient=self.recipient,
            phone=self.phone,
            province=self.province,
            city=self.city,
            district=self.district,
            street=self.street,
            postal_code=self.postal_code,
        )
