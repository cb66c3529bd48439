"""The write path: ordergate's transitionOrder (policy, lifecycle rules, optimistic version,
audit in the same transaction) against a plain strawberry mutation doing the same update and
history insert with none of that, on PostgreSQL, at 1, 8 and 32 clients, interleaved.
Each side moves its own PAID orders to PICKING (ordergate the even ids, plain the odd).
Target: ordergate >= 0.6x plain. A third side, the plain mutation plus the same audit event
through ordergate's chain, gives what the audit costs: audit off / on <= 1.2x at c = 32.

    .venv/bin/python bench/write_path.py [--orders 150000] [--seconds 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.graphql.relay import global_id
from bench._live import base_env, database, login, ordergate, plain, server

MOVE = "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status } }"
PLAIN = 'mutation($id: Int!) { transitionOrder(id: $id, to: "PICKING") }'
SIDES = ("ordergate", "plain", "plain+audit")
AUDITED = 'mutation($id: Int!) { transitionOrder(id: $id, to: "PICKING", audited: true) }'


async def _paid(url: str) -> list[int]:
    from sqlalchemy import text

    from domain.db import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT id FROM orders WHERE status = 'PAID'"))
        found = [r[0] for r in rows]
    await engine.dispose()
    return found


async def _run(
    base: str,
    ids: Iterator[int],
    *,
    clients: int,
    seconds: float,
    token: str | None,
    query: str = PLAIN,
) -> float:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    done = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                row = next(ids, None)
                if row is None:  # a short round would skew the median: say so instead
                    raise SystemExit("ran out of PAID orders: run with a larger --orders")
                if token:
                    payload = {"query": MOVE, "variables": {"id": str(global_id("Order", row))}}
                else:
                    payload = {"query": query, "variables": {"id": row}}
                body = (await http.post("/graphql", json=payload, headers=headers)).json()
                if body.get("errors"):
                    raise SystemExit(f"{base}: {body['errors']}")
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return done / (time.perf_counter() - began)


async def main(orders: int, seconds: float, rounds: int, concurrency: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(orders, Path(tmp)) as url:
        paid = await _paid(url)
        # Each side moves its own third of the PAID orders.
        ids = {side: iter(paid[n :: len(SIDES)]) for n, side in enumerate(SIDES)}
        env = base_env(url, Path(tmp))
        og_argv, og_port = ordergate(env)
        plain_argv, plain_port = plain(env)
        with server(og_argv, env, og_port) as og, server(plain_argv, env, plain_port) as yard:
            token = login(og, "ops")
            print(f"PostgreSQL, {orders} orders ({len(paid)} PAID); PAID -> PICKING")
            worst, audit_cost = 1e9, 0.0
            for clients in concurrency:
                rates: dict[str, list[float]] = {side: [] for side in SIDES}
                for r in range(rounds):
                    for side in SIDES if r % 2 == 0 else tuple(reversed(SIDES)):
                        rate = await _run(
                            og if side == "ordergate" else yard,
                            ids[side],
                            clients=clients,
                            seconds=seconds,
                            token=token if side == "ordergate" else None,
                            query=AUDITED if side == "plain+audit" else PLAIN,
                        )
                        rates[side].append(rate)
                a, b, c = (statistics.median(rates[side]) for side in SIDES)
                worst = min(worst, a / b)
                audit_cost = b / c
                print(
                    f"c={clients:<3} ordergate {a:7.1f}/s  plain {b:7.1f}/s  "
                    f"plain+audit {c:7.1f}/s  ordergate/plain {a / b:.2f}  "
                    f"audit off/on {b / c:.2f}"
                )
            print(f"worst ordergate/plain {worst:.2f} (target >= 0.60)")
            print(f"audit off/on at c={concurrency[-1]}: {audit_cost:.2f} (target <= 1.20)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=150_000)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.orders,
            arguments.seconds,
            arguments.rounds,
            [int(c) for c in arguments.clients.split(",")],
        )
    )
