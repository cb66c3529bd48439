"""Exporting 200k orders: rows per second, and how much the server's memory grows meanwhile.

The export runs in this process exactly as the server runs it (the domain's `produce`), while
a thread samples this process's resident set size; printed is the peak during the export
relative to just before it. Target: growth under 50 MB, i.e. memory does not grow with rows.

    .venv/bin/python bench/export_memory.py [--orders 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import demo_database
from domain.access import PolicyDecisionPoint
from domain.db import create_engine, session_factory, utcnow
from domain.exports import service as exports
from domain.exports.models import ExportEntity, ExportRequest, ExportStatus
from domain.orders.models import Order
from domain.users.models import User


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_bytes()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)


async def _bulk_orders(url: str, count: int) -> None:
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        template = await session.scalar(select(Order).limit(1))
        assert template is not None
        row = {c.key: getattr(template, c.key) for c in Order.__table__.columns if c.key != "id"}
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        batch = []
        for i in range(count):
            batch.append(
                {
                    **row,
                    "number": f"BULK{i:07d}",
                    "external_id": f"BULK-{i}",
                    "created_at": start + dt.timedelta(seconds=i),
                    "updated_at": start + dt.timedelta(seconds=i),
                }
            )
            if len(batch) == 20_000:
                await session.execute(insert(Order), batch)
                batch = []
        if batch:
            await session.execute(insert(Order), batch)
        await session.commit()
    await engine.dispose()


async def prepare(workdir: Path, count: int) -> None:
    url = await demo_database(workdir)
    await _bulk_orders(url, count)


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # The data is made in another process, so this one's memory before the export is a
        # server's, not inflated by building 200k rows.
        subprocess.run(  # noqa: ASYNC221 - this script, our arguments; nothing else runs yet
            [sys.executable, __file__, "--prepare", str(workdir), "--orders", str(count)],
            check=True,
        )
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        engine = create_engine(url)
        sessions = session_factory(engine)
        now = utcnow()
        async with sessions() as session:
            finance = await session.scalar(select(User).where(User.username == "demo-finance"))
            approver = await session.scalar(select(User).where(User.username == "demo-approver"))
            compliance = await session.scalar(
                select(User).where(User.username == "demo-compliance")
            )
            request = ExportRequest(
                entity=ExportEntity.ORDERS,
                filter="{}",
                fields='["number","channel","status","total","grossMargin","customerName",'
                '"customerPhone","createdAt"]',
                reason="bench",
                scope_digest="0" * 64,
                expected_rows=0,
                status=ExportStatus.APPROVED,
                requested_by_id=finance.id,
                created_at=now,
                expires_at=now + dt.timedelta(hours=1),
                l1_by_id=approver.id,
                l1_at=now,
                l2_by_id=compliance.id,
                l2_at=now,
            )
            session.add(request)
            await session.commit()
            export_id = request.id
        settings = exports.ExportSettings(
            directory=workdir / "exports",
            link_secret=b"bench",
            timezone=dt.timezone(dt.timedelta(hours=8)),
            retention=dt.timedelta(hours=1),
        )
        pdp = PolicyDecisionPoint()

        before = rss_bytes()
        sampler = PeakSampler()
        sampler.start()
        started = time.perf_counter()
        produced = await exports.produce(
            sessions=sessions, export_id=export_id, pdp=pdp, settings=settings, now=utcnow()
        )
        elapsed = time.perf_counter() - started
        sampler.running = False
        sampler.join()
        await engine.dispose()

    assert produced is not None
    assert produced.status is ExportStatus.READY, produced
    growth_mb = (sampler.peak - before) / 2**20
    print(
        f"export of {produced.row_count:,} orders x 8 columns in {elapsed:.1f} s = "
        f"{produced.row_count / elapsed:,.0f} rows/s"
    )
    print(
        f"RSS before {before / 2**20:.1f} MB, peak during {sampler.peak / 2**20:.1f} MB, "
        f"growth {growth_mb:.1f} MB   (target < 50 MB)"
    )
    if growth_mb >= 50:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        asyncio.run(prepare(args.prepare, args.orders))
    else:
        asyncio.run(main(args.orders))
