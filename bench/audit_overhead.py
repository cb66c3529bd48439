"""What the audit trail costs.

1. A mutation with auditing versus the same mutation with the audit writer switched off, in
   one process on one database, interleaved; prints the ratio of medians. Target: <= 1.20.
2. `verify` speed over 100k events, in events per second. Target: >= 50k/s.

    .venv/bin/python bench/audit_overhead.py [--rounds 60] [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import client, demo_database, token
from domain.audit import service as audit
from domain.audit.chain import GENESIS, canonical_json, compute_hash
from domain.audit.keys import CheckpointKey
from domain.audit.models import AuditEvent, AuditHead
from domain.db import create_engine, session_factory, utcnow
from domain.orders.models import Order, OrderLine, OrderStatusChange
from domain.orders.rules import OrderStatus

MOVE = "mutation($id: ID!) { transitionOrder(id: $id, to: PAID) { status } }"


async def _pending_orders(url: str, count: int) -> list[int]:
    """Copies of a demo order waiting for payment, one per measured mutation."""
    engine = create_engine(url)
    ids = []
    async with session_factory(engine)() as session:
        template = await session.scalar(select(Order).limit(1))
        assert template is not None
        columns = {c.key: getattr(template, c.key) for c in Order.__table__.columns}
        for i in range(count):
            fields = {
                **columns,
                "id": None,
                "number": f"BENCH{i:06d}",
                "external_id": f"BENCH-{i}",
                "status": OrderStatus.PENDING_PAYMENT,
                "version": 1,
            }
            order = Order(
                **fields,
                lines=[
                    OrderLine(
                        sku="SKU-0001",
                        name="x",
                        quantity=1,
                        unit_price_minor=100,
                        cost_price_minor=50,
                    )
                ],
                status_history=[
                    OrderStatusChange(
                        from_status=None,
                        to_status=OrderStatus.PENDING_PAYMENT,
                        actor_username="bench",
                        at=utcnow(),
                    )
                ],
            )
            session.add(order)
            await session.flush()
            ids.append(order.id)
        await session.commit()
    await engine.dispose()
    return ids


@contextmanager
def audit_switched_off():
    real = audit.record

    async def nothing(**_kwargs: object) -> int:
        return 0

    audit.record = nothing
    try:
        yield
    finally:
        audit.record = real


async def mutation_overhead(workdir: Path, rounds: int) -> float:
    url = await demo_database(workdir)
    ids = await _pending_orders(url, 2 * rounds + 10)
    http = client(url, workdir)
    bearer = await token(http, "ops")
    headers = {"authorization": f"Bearer {bearer}"}

    async def move(order_id: int) -> float:
        started = time.perf_counter()
        response = await http.post(
            "/graphql", json={"query": MOVE, "variables": {"id": str(order_id)}}, headers=headers
        )
        elapsed = time.perf_counter() - started
        assert response.json()["data"]["transitionOrder"]["status"] == "PAID", response.text
        return elapsed

    for order_id in ids[:10]:  # warm up
        await move(order_id)
    with_audit, without = [], []
    queue = iter(ids[10:])
    for i in range(rounds):
        # Alternate which goes first so drift on a noisy machine hits both alike.
        for audited in (True, False) if i % 2 == 0 else (False, True):
            if audited:
                with_audit.append(await move(next(queue)))
            else:
                with audit_switched_off():
                    without.append(await move(next(queue)))
    await http.aclose()
    a, b = statistics.median(with_audit), statistics.median(without)
    print(
        f"transitionOrder, {rounds} each: audited {a * 1000:.2f} ms, "
        f"not audited {b * 1000:.2f} ms, ratio {a / b:.3f}   (target <= 1.20)"
    )
    return a / b


async def verify_speed(workdir: Path, events: int) -> float:
    url = await demo_database(workdir)
    engine = create_engine(url)
    key = CheckpointKey.generate_into(workdir / "key.pem")
    async with session_factory(engine)() as session:
        head = await session.scalar(select(AuditHead))
        seq, prev = head.seq, head.hash
        assert prev != GENESIS or seq == 0
        batch = []
        now = utcnow()
        for _ in range(events):
            seq += 1
            event = {
                "seq": seq,
                "at": now,
                "actor_id": 3,
                "username": "demo-cs",
                "roles": canonical_json(["cs"]),
                "client_ip": "203.0.113.7",
                "peer_ip": "203.0.113.7",
                "user_agent": "bench",
                "request_id": f"{seq:032x}",
                "operation": "orders",
                "action": "data.read",
                "target_type": None,
                "target_id": None,
                "outcome": "success",
                "code": None,
                "details": canonical_json({"returned": {"Customer.phone": {"records": 20}}}),
            }
            digest = compute_hash(prev, event)
            batch.append({**event, "prev_hash": prev, "hash": digest})
            prev = digest
            if len(batch) == 10_000:
                await session.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            await session.execute(insert(AuditEvent), batch)
        await session.execute(update(AuditHead).values(seq=seq, hash=prev))
        await audit.create_checkpoint(session=session, key=key)
        await session.commit()

    async with session_factory(engine)() as session:
        started = time.perf_counter()
        result = await audit.verify(session=session, key=key)
        elapsed = time.perf_counter() - started
    await engine.dispose()
    assert result.ok, result.problems[:3]
    rate = result.events / elapsed
    print(
        f"verify: {result.events} events in {elapsed:.2f} s = {rate:,.0f} events/s   "
        f"(target >= 50,000/s)"
    )
    return rate


async def main(rounds: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        ratio = await mutation_overhead(Path(a), rounds)
        rate = await verify_speed(Path(b), events)
    if ratio > 1.20 or rate < 50_000:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.events))
