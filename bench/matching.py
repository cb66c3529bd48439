"""Matching incoming buyers against a million customers on PostgreSQL.

Builds a database with the demo data plus `--customers` customers (COPY: name, phone as
channels write it, E.164 form, email, one address with its key), then feeds `--buyers`
buyers through the intake's matcher (`domain.customers.matching.link`, the code the intake
runs): 50% an existing customer's phone written another way (+86, spaces, full-width digits),
20% an existing email with a new phone, 15% an existing name and address with a new phone
(queued for review), 15% nobody known. Each batch is rolled back, so every batch meets the
same million.

Prints the p50/p95/p99 of single-buyer look-ups (who may this buyer be: phone, email and
address at once), the throughput of `link` over 500-buyer batches (look-up, new customers and
their addresses, review pairs — as the bulk intake calls it), the outcomes, and the plan of
the look-up (index scans, no sequential scan).
Target: p95 <= 5 ms per look-up.

    .venv/bin/python bench/matching.py [--customers 1000000] [--buyers 100000] [--single 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import text

from api.settings import normalise_database_url
from bench._live import database
from domain.addresses import PostalAddress
from domain.customers import matching, normalise
from domain.customers.models import address_columns, contact_columns
from domain.db import create_engine, session_factory
from domain.demo import MOBILE_PREFIXES, PLACES, STREETS, _name

FULL_WIDTH = str.maketrans(
    "0123456789+", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff0b"
)
BATCH = 500


def _phone(rng: random.Random) -> str:
    return f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"


def _written(phone: str, rng: random.Random) -> str:
    """How another channel writes the same mobile."""
    return rng.choice(
        [
            f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}",
            f"0086-{phone}",
            f"86{phone}",
            phone.translate(FULL_WIDTH),
            f"{phone[:3]}-{phone[3:7]}-{phone[7:]}",
        ]
    )


async def build(url: str, n: int, rng: random.Random) -> tuple[list[tuple], int]:
    """COPY `n` customers with one address each; returns (name, phone, email, place) of each,
    and the highest customer id."""
    raw = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(raw)
    try:
        first = int(await connection.fetchval("SELECT coalesce(max(id), 0) FROM customers")) + 1
        now = dt.datetime.now(dt.UTC)
        people = []
        customers, addresses = [], []
        for k in range(n):
            cid = first + k
            name = _name(rng) + rng.choice("明华强伟芳娜敏静丽军")
            phone = _phone(rng)
            email = f"c{cid}@example.com" if rng.random() < 0.7 else None
            province, city, districts, postal = rng.choice(PLACES)
            district = rng.choice(districts)
            street = f"{rng.choice(STREETS)}{rng.randrange(1, 2000)}号{rng.randrange(1, 40)}栋"
            derived = contact_columns(phone=phone, email=email)
            customers.append(
                (
                    cid,
                    name,
                    phone,
                    derived["email"],
                    now,
                    derived["phone_e164"],
                    derived["phone_valid"],
                    derived["email_valid"],
                    1,
                )
            )
            key = address_columns(city=city, district=district, street=street)["address_key"]
            addresses.append(
                (cid, name, phone, province, city, district, street, postal, True, key)
            )
            people.append((name, phone, email, (province, city, district, street, postal)))
        for start in range(0, n, 100_000):
            await connection.copy_records_to_table(
                "customers",
                records=customers[start : start + 100_000],
                columns=[
                    "id",
                    "name",
                    "phone",
                    "email",
                    "created_at",
                    "phone_e164",
                    "phone_valid",
                    "email_valid",
                    "version",
                ],
            )
            await connection.copy_records_to_table(
                "addresses",
                records=addresses[start : start + 100_000],
                columns=[
                    "customer_id",
                    "recipient",
                    "phone",
                    "province",
                    "city",
                    "district",
                    "street",
                    "postal_code",
                    "is_default",
                    "address_key",
                ],
            )
        for setval in (
            "SELECT setval('customers_id_seq', (SELECT max(id) FROM customers))",
            "SELECT setval('addresses_id_seq', (SELECT max(id) FROM addresses))",
        ):
            await connection.execute(setval)
        await connection.execute("ANALYZE customers; ANALYZE addresses")
        return people, first + n - 1
    finally:
        await connection.close()


def buyers(people: list[tuple], count: int, rng: random.Random) -> tuple[list, list[str]]:
    made, kinds = [], []
    for _ in range(count):
        name, phone, email, (province, city, district, street, postal) = rng.choice(people)
        roll = rng.random()
        if roll < 0.5:
            kind, person = "phone", (name, _written(phone, rng), None)
        elif roll < 0.7 and email:
            kind, person = "email", (name, _phone(rng), email.upper())
        elif roll < 0.85:
            kind, person = "name+address", (name.replace("", " ").strip(), _phone(rng), None)
        else:
            kind, person = "new", (_name(rng) + "新", _phone(rng), None)
            province, city, district = "浙江省", "杭州市", "西湖区"
            street = f"新路{rng.randrange(1, 10**6)}号"
        made.append(
            matching.Person(
                name=person[0],
                phone=person[1],
                email=person[2],
                place=PostalAddress(
                    recipient=person[0],
                    phone=person[1],
                    province=province,
                    city=city,
                    district=district,
                    street=street,
                    postal_code=postal,
                ),
            )
        )
        kinds.append(kind)
    return made, kinds


async def explain(url: str, person: matching.Person) -> list[str]:
    """The plan of the matcher's look-up for one buyer (phone, email and address at once)."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            number = normalise.phone(person.phone)
            place = person.place
            assert place is not None
            stmt = matching.known_query(
                phones={number.e164} if number and number.e164 else set(),
                emails={"c1000@example.com"},
                places={
                    normalise.address_key(
                        city=place.city, district=place.district, street=place.street
                    )
                },
            )
            assert stmt is not None
            compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
            rows = (await session.execute(text(f"EXPLAIN {compiled}"))).all()
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def main(customers: int, count: int, single: int) -> None:
    rng = random.Random(20261127)
    with tempfile.TemporaryDirectory() as tmp, database(1, Path(tmp)) as plain_url:
        url = normalise_database_url(plain_url)
        started = time.monotonic()
        people, highest = await build(url, customers, rng)
        print(
            f"# {customers:,} customers with addresses built in {time.monotonic() - started:.0f} s"
        )
        incoming, kinds = buyers(people, count, rng)
        engine = create_engine(url)
        sessions = session_factory(engine)
        at = dt.datetime.now(dt.UTC)
        try:
            # Single look-ups: who one buyer may be (phone, email and address at once).
            times = []
            async with sessions() as session:
                for person in incoming[:single]:
                    t0 = time.perf_counter()
                    await matching.lookup(session, person)
                    times.append((time.perf_counter() - t0) * 1000)
                await session.rollback()
            # Batches as the intake sends them, each rolled back.
            outcomes = {"linked": 0, "new": 0}
            t0 = time.perf_counter()
            for start in range(0, count, BATCH):
                batch = incoming[start : start + BATCH]
                async with sessions() as session:
                    ids = await matching.link(session, batch, at)
                    queued = await session.scalar(
                        text("SELECT count(*) FROM customer_match_candidates")
                    )
                    for cid in ids:
                        outcomes["linked" if cid <= highest else "new"] += 1
                    outcomes["queued pairs"] = outcomes.get("queued pairs", 0) + int(queued)
                    await session.rollback()
            elapsed = time.perf_counter() - t0
        finally:
            await engine.dispose()
        plans = await explain(url, incoming[0])
    cuts = statistics.quantiles(times, n=100)
    print(f"PostgreSQL; {customers:,} customers; {count:,} incoming buyers")
    print(
        "buyers: "
        + ", ".join(f"{k} {kinds.count(k):,}" for k in ("phone", "email", "name+address", "new"))
    )
    print(
        f"look-ups, one buyer each ({single:,}): p50 {statistics.median(times):.2f} ms, "
        f"p95 {cuts[94]:.2f} ms, p99 {cuts[98]:.2f} ms   (target p95 <= 5 ms)"
    )
    print(f"batches of {BATCH}: {count / elapsed:,.0f} buyers matched/s ({elapsed:.1f} s)")
    print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in outcomes.items()))
    print("plan of one look-up:")
    for plan in plans:
        print(f"  {plan}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--buyers", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.buyers, args.single))
