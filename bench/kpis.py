"""The KPI query over 90 days, at 10,000 and at 1,000,000 orders, on PostgreSQL.

Builds both databases with `ordergate demo --orders N` (orders spread over two years), closes
the last 90 business days as the worker does on its first night (`kpis.close_day`; yesterday
with its completeness snapshot) and takes today's completeness snapshot as it does every five
minutes (`kpis.refresh_completeness`, timed), then times `kpis.values` — the code behind
`kpis(from, to, channel, category)` — for the 90 days ending today, alternately over all
channels and for TAOBAO: stored facts for the closed days and today's completeness, today's
timeliness and stock accuracy computed live. Prints the p50 at each size and the ratio.
Target: p50 <= 500 ms at 1M, ratio <= 3.

    .venv/bin/python bench/kpis.py [--small 10000] [--large 1000000] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.settings import normalise_database_url
from bench._live import database
from domain.access import POLICY_DIR, PolicyDecisionPoint
from domain.actor import SYSTEM_ORIGIN, Actor
from domain.db import create_engine, session_factory, utcnow
from domain.demo import DEMO_TIMEZONE
from domain.kpis import service as kpis
from domain.kpis.rules import Thresholds

DAYS = 90


async def measure(url: str, runs: int) -> tuple[float, float, float, int]:
    """(seconds to close the 90 days, seconds for one completeness snapshot, p50 ms of the
    90-day query, values returned)."""
    engine = create_engine(normalise_database_url(url))
    sessions = session_factory(engine)
    zone = DEMO_TIMEZONE
    now = utcnow()
    today = now.astimezone(zone).date()
    actor = Actor(
        user_id=None,
        username="bench",
        roles=frozenset({"ops"}),
        channels=frozenset(),
        access=PolicyDecisionPoint(POLICY_DIR).profile(frozenset({"ops"})),
        origin=SYSTEM_ORIGIN,
    )
    try:
        started = time.perf_counter()
        async with sessions() as session:
            # As the worker does on its first night: the past days' facts (completeness is a
            # snapshot of its own day, so the backfilled days have none), then yesterday.
            for n in range(DAYS - 1, 1, -1):
                await kpis.close_day(
                    session, today - dt.timedelta(days=n), zone, now, with_completeness=False
                )
            await kpis.close_day(session, today - dt.timedelta(days=1), zone, now)
            await session.commit()
        closing = time.perf_counter() - started
        started = time.perf_counter()
        async with sessions() as session:
            await kpis.refresh_completeness(session, today, utcnow())
            await session.commit()
        snapshot = time.perf_counter() - started
        times = []
        found = []
        for run in range(runs + 3):
            async with sessions() as session:
                t0 = time.perf_counter()
                found = await kpis.values(
                    session=session,
                    actor=actor,
                    start=today - dt.timedelta(days=DAYS - 1),
                    end=today,
                    channel=None if run % 2 else "TAOBAO",
                    category=None,
                    zone=zone,
                    thresholds=Thresholds(),
                    today=today,
                )
                if run >= 3:  # the first runs warm the caches
                    times.append((time.perf_counter() - t0) * 1000)
        return closing, snapshot, statistics.median(times), len(found)
    finally:
        await engine.dispose()


async def main(small: int, large: int, runs: int) -> None:
    results = {}
    for orders in (small, large):
        with tempfile.TemporaryDirectory() as tmp, database(orders, Path(tmp)) as url:
            results[orders] = await measure(url, runs)
    print(f"PostgreSQL; kpis over {DAYS} business days (3 KPIs x {DAYS} days), {runs} runs each")
    print(f"{'orders':>10}  {'close 89 days':>14}  {'snapshot':>9}  {'p50 query':>10}  values")
    for orders, (closing, snapshot, p50, count) in results.items():
        print(f"{orders:>10,}  {closing:>12.1f} s  {snapshot:>7.2f} s  {p50:>7.1f} ms  {count}")
    ratio = results[large][2] / results[small][2]
    print(f"p50 at {large:,} = {results[large][2]:.1f} ms (target <= 500 ms)")
    print(f"ratio {large:,} / {small:,} = {ratio:.2f} (target <= 3)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.small, args.large, args.runs))
