"""The stock model's invariants under random sequences of reserve / confirm / release / expire
/ adjust / promotion pools (a hypothesis state machine against the real services and a real
database):

- 0 ≤ reserved ≤ on hand, always;
- reserved equals the sum of the reservations that hold stock (ACTIVE or CONFIRMED) plus what
  open promotion pools have left;
- on hand and reserved each equal the sum of their movements in the ledger;
- and each operation succeeds or is refused exactly when a simple model says it should.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from domain.access import PolicyDecisionPoint
from domain.actor import Actor
from domain.catalog.models import Product, StockItem
from domain.db import create_engine, session_factory
from domain.errors import Conflict, InsufficientStock
from domain.inventory import service as inventory
from domain.inventory.models import (
    StockMovement,
    StockPool,
    StockReservation,
    StockReservationLine,
)

START = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
WAREHOUSE = "SH-01"


def _actor(pdp: PolicyDecisionPoint) -> Actor:
    roles = frozenset({"integration", "warehouse", "ops"})
    return Actor(
        user_id=None,
        username="machine",
        roles=roles,
        channels=frozenset(),
        access=pdp.profile(roles),
    )


class StockMachine(RuleBasedStateMachine):
    url: str = ""
    pdp: PolicyDecisionPoint

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(self.url)
        self.sessions = session_factory(self.engine)
        self.actor = _actor(self.pdp)
        self.sku = f"SKU-M-{uuid.uuid4().hex[:10]}"
        self.now = START
        self.on_hand = 30
        self.model: dict[int, tuple[str, int, dt.datetime]] = {}  # id -> (status, qty, expiry)
        self.pool_of: dict[int, str] = {}  # reservation id -> the pool it drew from
        self.pools: dict[str, int | None] = {}  # name -> remaining (None once closed)
        self.run(self._create_item())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    async def _create_item(self) -> None:
        async with self.sessions() as session:
            session.add(Product(sku=self.sku, name="machine", list_price_minor=100))
            item = StockItem(
                sku=self.sku, warehouse=WAREHOUSE, on_hand=self.on_hand, unit_cost_minor=50
            )
            session.add(item)
            await session.flush()
            await inventory.open_ledger(session=session, item=item, at=self.now)
            await session.commit()

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()

    @property
    def held(self) -> int:
        """Reserved units: holding reservations plus what open pools have left."""
        holding = sum(q for s, q, _ in self.model.values() if s in ("ACTIVE", "CONFIRMED"))
        return holding + sum(r for r in self.pools.values() if r is not None)

    def _returned(self, rid: int, quantity: int) -> None:
        """A reservation stops holding: drawn from an open pool, its units refill the pool."""
        pool = self.pool_of.get(rid)
        if pool is not None and self.pools[pool] is not None:
            self.pools[pool] += quantity  # type: ignore[operator]

    # ---- operations --------------------------------------------------------------------------

    @rule(
        target=reservations,
        quantity=st.integers(1, 15),
        ttl=st.sampled_from([60, 300, 900]),
        from_pool=st.booleans(),
    )
    def reserve(self, quantity: int, ttl: int, from_pool: bool) -> int:
        open_pools = [n for n, r in self.pools.items() if r is not None]
        campaign = open_pools[-1] if from_pool and open_pools else None

        async def go() -> int | None:
            async with self.sessions() as session:
                try:
                    made = await inventory.reserve(
                        session=session,
                        actor=self.actor,
                        reference=uuid.uuid4().hex,
                        lines=[inventory.LineInput(self.sku, WAREHOUSE, quantity)],
                        ttl_seconds=ttl,
                        campaign=campaign,
                        now=self.now,
                    )
                except InsufficientStock:
                    await session.rollback()
                    return None
                await session.commit()
                return made.id

        if campaign is not None:
            expected = (self.pools[campaign] or 0) >= quantity
        else:
            expected = self.on_hand - self.held >= quantity
        made = self.run(go())
        assert (made is not None) == expected
        if made is None:
            return -1
        self.model[made] = ("ACTIVE", quantity, self.now + dt.timedelta(seconds=ttl))
        if campaign is not None:
            self.pool_of[made] = campaign
            self.pools[campaign] -= quantity  # type: ignore[operator]
        return made

    @rule(reservation=reservations)
    def confirm(self, reservation: int) -> None:
        if reservation < 0:
            return

        async def go() -> bool:
            async with self.sessions() as session:
                try:
                    await inventory.confirm(
                        session=session, actor=self.actor, reservation_id=reservation, now=self.now
                    )
                except Conflict:
                    await session.rollback()
                    return False
                await session.commit()
                return True

        status, quantity, expiry = self.model[reservation]
        confirmable = status == "CONFIRMED" or (status == "ACTIVE" and expiry > self.now)
        assert self.run(go()) == confirmable
        if confirmable:
            self.model[reservation] = ("CONFIRMED", quantity, expiry)

    @rule(reservation=reservations)
    def release(self, reservation: int) -> None:
        if reservation < 0:
            return

        async def go() -> None:
            async with self.sessions() as session:
                await inventory.release(
                    session=session, actor=self.actor, reservation_id=reservation, now=self.now
                )
                await session.commit()

        self.run(go())
        status, quantity, expiry = self.model[reservation]
        if status in ("ACTIVE", "CONFIRMED"):
            self.model[reservation] = ("RELEASED", quantity, expiry)
            self._returned(reservation, quantity)

    @rule(minutes=st.integers(0, 20))
    def time_passes_and_the_job_runs(self, minutes: int) -> None:
        self.now += dt.timedelta(minutes=minutes)

        async def go() -> None:
            async with self.sessions() as session:
                await inventory.expire_due(session=session, now=self.now)
                await session.commit()

        self.run(go())
        for rid, (status, quantity, expiry) in sorted(self.model.items()):
            if status == "ACTIVE" and expiry <= self.now:
                self.model[rid] = ("EXPIRED", quantity, expiry)
                self._returned(rid, quantity)

    @rule(delta=st.integers(-25, 25).filter(bool))
    def adjust(self, delta: int) -> None:
        async def go() -> bool:
            async with self.sessions() as session:
                try:
                    await inventory.adjust(
                        session=session,
                        actor=self.actor,
                        sku=self.sku,
                        warehouse=WAREHOUSE,
                        delta=delta,
                        reason="machine",
                        now=self.now,
                    )
                except InsufficientStock:
                    await session.rollback()
                    return False
                await session.commit()
                return True

        expected = self.on_hand + delta >= self.held
        assert self.run(go()) == expected
        if expected:
            self.on_hand += delta

    @rule(quantity=st.integers(1, 12))
    def open_a_pool(self, quantity: int) -> None:
        name = f"pool-{uuid.uuid4().hex[:12]}"

        async def go() -> bool:
            async with self.sessions() as session:
                try:
                    await inventory.create_pool(
                        session=session,
                        actor=self.actor,
                        name=name,
                        sku=self.sku,
                        warehouse=WAREHOUSE,
                        quantity=quantity,
                        starts_at=self.now,
                        ends_at=self.now + dt.timedelta(days=300),
                        now=self.now,
                    )
                except InsufficientStock:
                    await session.rollback()
                    return False
                await session.commit()
                return True

        expected = self.on_hand - self.held >= quantity
        assert self.run(go()) == expected
        if expected:
            self.pools[name] = quantity

    @rule()
    def close_the_newest_pool(self) -> None:
        open_pools = [n for n, r in self.pools.items() if r is not None]
        if not open_pools:
            return
        name = open_pools[-1]

        async def go() -> None:
            async with self.sessions() as session:
                pool_id = await session.scalar(select(StockPool.id).where(StockPool.name == name))
                await inventory.close_pool(
                    session=session, actor=self.actor, pool_id=pool_id, now=self.now
                )
                await session.commit()

        self.run(go())
        self.pools[name] = None

    # ---- what always holds -------------------------------------------------------------------

    @invariant()
    def the_books_balance(self) -> None:
        async def read() -> tuple[int, int, int, int, int]:
            async with self.sessions() as session:
                item = (
                    await session.execute(
                        select(StockItem.on_hand, StockItem.reserved).where(
                            StockItem.sku == self.sku
                        )
                    )
                ).one()
                moved = (
                    await session.execute(
                        select(
                            func.sum(StockMovement.on_hand_delta),
                            func.sum(StockMovement.reserved_delta),
                        ).where(StockMovement.sku == self.sku)
                    )
                ).one()
                pooled = await session.scalar(
                    select(func.coalesce(func.sum(StockPool.remaining), 0)).where(
                        StockPool.sku == self.sku, StockPool.closed_at.is_(None)
                    )
                )
                holding = await session.scalar(
                    select(func.coalesce(func.sum(StockReservationLine.quantity), 0))
                    .join(StockReservation)
                    .where(
                        StockReservationLine.sku == self.sku,
                        StockReservation.status.in_(("ACTIVE", "CONFIRMED")),
                    )
                )
                return (
                    item.on_hand,
                    item.reserved,
                    int(moved[0]),
                    int(moved[1]),
                    int(holding) + int(pooled),
                )

        on_hand, reserved, moved_on_hand, moved_reserved, holding = self.run(read())
        assert 0 <= reserved <= on_hand
        assert reserved == holding == self.held
        assert on_hand == moved_on_hand == self.on_hand
        assert reserved == moved_reserved


def test_stock_invariants_hold_under_random_operations(
    sqlite_template: Path, tmp_path: Path
) -> None:
    db = tmp_path / "machine.db"
    shutil.copyfile(sqlite_template, db)
    StockMachine.url = f"sqlite+aiosqlite:///{db}"
    StockMachine.pdp = PolicyDecisionPoint()
    run_state_machine_as_test(
        StockMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
