"""Finding the same person: at intake (a whole batch of buyers at a time) and after an update.

Rules, on the normalised forms (domain/customers/normalise.py), among customers that are not
merged away:

- **Certain → linked.** A buyer whose phone (E.164) belongs to customers is linked to the
  oldest of them; failing the phone, one whose email does is linked the same way.
- **Ambiguous → review queue** (`customerMatchCandidates`, never merged automatically):
  - the phone (or the email) belongs to two or more customers: each pair of them;
  - the phone names one customer and the email another: that pair;
  - same name and same address as a customer, with a different (or no) phone: the new
    customer and that one.

A pair's score adds what it shares (phone 60, email 40, address 35, name 15; at most 100), and
its reasons say what, in words without the values. A pair is queued once (unique), whichever
way round it was found.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, func, select, union
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.addresses import PostalAddress
from domain.bulk import insert_rows
from domain.customers import normalise
from domain.customers.models import (
    Address,
    CandidateStatus,
    Customer,
    MatchCandidate,
    address_columns,
    contact_columns,
)

WEIGHTS = {"phone": 60, "email": 40, "address": 35, "name": 15}
# More customers than this at one address make it a shared place (an office, a locker): the
# address is then no evidence that two of them are one person.
SHARED_PLACE = 10
REASONS = {
    "phone": "same phone number",
    "email": "same email address",
    "address": "same address",
    "name": "same name",
}


@dataclass(frozen=True)
class Person:
    """Someone to find: a channel's buyer and where the order ships."""

    name: str
    phone: str | None
    email: str | None
    place: PostalAddress | None = None


@dataclass
class _Known:
    id: int
    name: str
    phone: str | None  # E.164
    email: str | None
    places: set[str] = field(default_factory=set)


def display_phone(raw: str | None) -> str | None:
    """The phone as stored for reading and masking: a mainland number without +86 (as
    channels and staff write it), any other valid number in E.164, an invalid one as given."""
    number = normalise.phone(raw)
    if number is None:
        return None
    if number.e164 is None:
        return unicodedata.normalize("NFKC", raw or "").strip()[:32] or None
    return number.e164[3:] if number.e164.startswith("+86") else number.e164


def shared(a: _Known, b: _Known) -> list[str]:
    return shared_forms(a, b, set())


def shared_forms(a: _Known, b: _Known, ignored_places: set[str]) -> list[str]:
    """What two customers share; an address in `ignored_places` (shared places) is no
    evidence."""
    what = []
    if a.phone and a.phone == b.phone:
        what.append("phone")
    if a.email and a.email == b.email:
        what.append("email")
    if (a.places & b.places) - ignored_places:
        what.append("address")
    if a.name and normalise.name(a.name) == normalise.name(b.name):
        what.append("name")
    return what


def score(what: Iterable[str]) -> int:
    return min(100, sum(WEIGHTS[w] for w in what))


class _Queue:
    """Pairs found in one pass, each once."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[int, int], list[str]] = {}

    def add(self, a: _Known, b: _Known) -> None:
        if a.id == b.id:
            return
        key = (min(a.id, b.id), max(a.id, b.id))
        if key not in self.pairs:
            self.pairs[key] = shared(a, b)


def known_query(*, phones: set[str], emails: set[str], places: set[str]) -> Select[Any] | None:
    """One index look-up per form, joined by a UNION (an OR across the three would leave the
    planner a scan of the customers)."""
    active = Customer.merged_into_id.is_(None)
    parts = []
    if phones:
        parts.append(select(Customer.id).where(Customer.phone_e164.in_(phones), active))
    if emails:
        parts.append(select(Customer.id).where(Customer.email.in_(emails), active))
    if places:
        # A place shared by many customers (an office, a parcel locker) says nothing about who
        # someone is: at most SHARED_PLACE + 1 customers per address are looked at, so the
        # caller can tell a shared place from a home.
        ranked = (
            select(
                Address.customer_id.label("id"),
                func.row_number()
                .over(partition_by=Address.address_key, order_by=Address.customer_id)
                .label("n"),
            )
            .where(Address.address_key.in_(places))
            .subquery()
        )
        parts.append(select(ranked.c.id).where(ranked.c.n <= SHARED_PLACE + 1))
    if not parts:
        return None
    ids = union(*parts).subquery()
    return (
        select(Customer.id, Customer.name, Customer.phone_e164, Customer.email)
        .where(Customer.id.in_(select(ids.c[0])), active)
        .order_by(Customer.id)
    )


async def _known(
    session: AsyncSession, *, phones: set[str], emails: set[str], places: set[str]
) -> list[_Known]:
    """Active customers sharing a phone, an email or an address key, with their addresses."""
    stmt = known_query(phones=phones, emails=emails, places=places)
    if stmt is None:
        return []
    rows = (await session.execute(stmt)).all()
    found = {r.id: _Known(r.id, r.name, r.phone_e164, r.email) for r in rows}
    if found:
        for customer_id, key in (
            await session.execute(
                select(Address.customer_id, Address.address_key).where(
                    Address.customer_id.in_(list(found)), Address.address_key.is_not(None)
                )
            )
        ).all():
            found[customer_id].places.add(key)
    return list(found.values())


async def lookup(session: AsyncSession, person: Person) -> list[int]:
    """The active customers one buyer may be, by phone, email or address (ids, oldest
    first): the read half of `link`, for look-ups and the bench."""
    number = normalise.phone(person.phone)
    place = person.place
    found = await _known(
        session,
        phones={number.e164} if number and number.e164 else set(),
        emails={e} if (e := normalise.email(person.email)) else set(),
        places={
            normalise.address_key(city=place.city, district=place.district, street=place.street)
        }
        if place
        else set(),
    )
    return [k.id for k in found]


async def link(session: AsyncSession, people: Sequence[Person], at: dt.datetime) -> list[int]:
    """Each person's customer id, in order: linked when certain, else a new customer (with the
    shipping address as its default address); ambiguous cases are queued for review. A few
    statements for the whole batch, whatever its size."""
    keys = []
    for person in people:
        number = normalise.phone(person.phone)
        place = person.place
        keys.append(
            (
                number.e164 if number else None,
                normalise.email(person.email),
                normalise.address_key(city=place.city, district=place.district, street=place.street)
                if place
                else None,
            )
        )
    known = await _known(
        session,
        phones={p for p, _, _ in keys if p},
        emails={e for _, e, _ in keys if e},
        places={a for _, _, a in keys if a},
    )
    by_phone: dict[str, list[_Known]] = defaultdict(list)
    by_email: dict[str, list[_Known]] = defaultdict(list)
    by_place: dict[str, list[_Known]] = defaultdict(list)

    def register(k: _Known) -> None:
        if k.phone:
            by_phone[k.phone].append(k)
        if k.email:
            by_email[k.email].append(k)
        for place in k.places:
            by_place[place].append(k)

    for k in known:
        register(k)
    queue = _Queue()
    chosen: list[int] = []
    new: list[tuple[Person, _Known]] = []
    for person, (phone, email, place) in zip(people, keys, strict=True):
        phone_owners = by_phone.get(phone, []) if phone else []
        email_owners = by_email.get(email, []) if email else []
        owners = phone_owners or email_owners
        if owners:
            # The oldest customer (positive ids before this batch's new ones, lowest first).
            target = min(owners, key=lambda k: (k.id < 0, abs(k.id)))
            for group in (phone_owners, email_owners):
                for other in group:
                    queue.add(target, other)
            chosen.append(target.id)
            continue
        me = _Known(-(len(new) + 1), person.name, phone, email, {place} if place else set())
        neighbours = by_place.get(place, []) if place else []
        # A home while it has at most SHARED_PLACE customers, this one included (as `review`
        # counts): the eleventh makes it a shared place, and is not paired by the address.
        if len(neighbours) < SHARED_PLACE:
            for other in neighbours:
                if normalise.name(other.name) == normalise.name(person.name):
                    queue.add(me, other)
        new.append((person, me))
        register(me)
        chosen.append(me.id)
    if new:
        ids = await insert_rows(
            session,
            Customer.__table__,
            [
                {
                    "name": person.name,
                    **contact_columns(phone=person.phone, email=person.email),
                    "phone": display_phone(person.phone),
                    "version": 1,
                    "created_at": at,
                }
                for person, _ in new
            ],
            return_ids=True,
        )
        real = {me.id: cid for (_, me), cid in zip(new, ids, strict=True)}
        for _, me in new:
            me.id = real[me.id]
        chosen = [real.get(cid, cid) for cid in chosen]
        await insert_rows(
            session,
            Address.__table__,
            [
                {
                    "customer_id": me.id,
                    "recipient": p.place.recipient,
                    "phone": p.place.phone,
                    "province": p.place.province,
                    "city": p.place.city,
                    "district": p.place.district,
                    "street": p.place.street,
                    "postal_code": p.place.postal_code,
                    "is_default": True,
                    **address_columns(
                        city=p.place.city, district=p.place.district, street=p.place.street
                    ),
                    "created_at": at,
                }
                for p, me in new
                if p.place is not None
            ],
        )
        # Pairs found with a new customer were keyed by its provisional id.
        queue.pairs = {
            (min(real.get(a, a), real.get(b, b)), max(real.get(a, a), real.get(b, b))): what
            for (a, b), what in queue.pairs.items()
        }
    await enqueue(session, queue.pairs, at)
    return chosen


async def enqueue(
    session: AsyncSession, pairs: dict[tuple[int, int], list[str]], at: dt.datetime
) -> None:
    """Queue each pair once: a pair already queued (either way round) stays as it is."""
    if not pairs:
        return
    rows = [
        {
            "customer_id": a,
            "other_id": b,
            "score": score(what),
            "reasons": json.dumps([REASONS[w] for w in what] or ["found together"]),
            "status": CandidateStatus.OPEN,
            "created_at": at,
        }
        for (a, b), what in sorted(pairs.items())
    ]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(MatchCandidate.__table__).on_conflict_do_nothing(
        index_elements=["customer_id", "other_id"]
    )
    await session.execute(stmt, rows)


async def review(session: AsyncSession, customer: Customer, at: dt.datetime) -> int:
    """After a customer's phone, email or addresses changed: queue every active customer who
    now shares a phone or email with it, or its name and an address. Returns pairs found."""
    places = {a.address_key for a in customer.addresses if a.address_key}
    me = _Known(customer.id, customer.name, customer.phone_e164, customer.email, places)
    others = await _known(
        session,
        phones={me.phone} if me.phone else set(),
        emails={me.email} if me.email else set(),
        places=places,
    )
    queue = _Queue()
    sharing: dict[str, int] = defaultdict(int)
    for other in others:
        for key in other.places & places:
            sharing[key] += 1
    shared = {key for key, n in sharing.items() if n > SHARED_PLACE}
    for other in others:
        if other.id == me.id:
            continue
        what = shared_forms(me, other, shared)
        if "phone" in what or "email" in what or {"address", "name"} <= set(what):
            queue.add(me, other)
    await enqueue(session, queue.pairs, at)
    return len(queue.pairs)


def pair_filter(customer_id: int, other_id: int):
    a, b = min(customer_id, other_id), max(customer_id, other_id)
    return and_(MatchCandidate.customer_id == a, MatchCandidate.other_id == b)
