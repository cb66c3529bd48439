"""The write path: ordergate's transitionOrder (policy, lifecycle rules, optimistic version,
audit in the same transaction) against a plain strawberry mutation doing the same update and
history insert with none of that, on PostgreSQL, at 1, 8 and 32 clients, interleaved.
Each side moves its own PAID orders to PICKING (ordergate the even ids, plain the odd).
Target: ordergate >= 0.6x plain.

    .venv/bin/python bench/write_path.py [--orders 50000] [--seconds 4] [--rounds 2]
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
    base: str, ids: Iterator[int], *, clients: int, seconds: float, token: str | None
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
                if row is None:
                    return
                if token:
                    payload = {"query": MOVE, "variables": {"id": str(global_id("Order", row))}}
                else:
                    payload = {"query": PLAIN, "variables": {"id": row}}
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
        ours, theirs = iter(p for p in paid if p % 2 == 0), iter(p for p in paid if p % 2)
        env = base_env(url, Path(tmp))
        og_argv, og_port = ordergate(env)
        plain_argv, plain_port = plain(env)
        with server(og_argv, env, og_port) as og, server(plain_argv, env, plain_port) as yard:
            token = login(og, "ops")
            print(f"PostgreSQL, {orders} orders ({len(paid)} PAID); PAID -> PICKING")
            worst = 1e9
            for clients in concurrency:
                rates: dict[str, list[float]] = {"ordergate": [], "plain": []}
                for r in range(rounds):
                    for name in ("ordergate", "plain") if r % 2 == 0 else ("plain", "ordergate"):
                        rate = await _run(
                            og if name == "ordergate" else yard,
                            ours if name == "ordergate" else theirs,
                            clients=clients,
                            seconds=seconds,
                            token=token if name == "ordergate" else None,
                        )
                        rates[name].append(rate)
                a, b = statistics.median(rates["ordergate"]), statistics.median(rates["plain"])
                worst = min(worst, a / b)
                print(f"c={clients:<3} ordergate {a:7.1f}/s  plain {b:7.1f}/s  ratio {a / b:.2f}")
            print(f"worst ratio {worst:.2f} (target >= 0.60)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
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
