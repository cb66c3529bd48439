"""The read path against a plain strawberry + SQLAlchemy app, on PostgreSQL.

The 50-order list with lines and customer, sent by `c` concurrent clients for a few seconds at
a time, to ordergate (as cs, and as sales with its channel scope and masking) and to
bench/plain_app.py (the same rows, no policy, audit or limits), interleaved, in one run.
Target: ordergate >= 0.8x plain at c = 1, 8 and 32.

    .venv/bin/python bench/read_path.py [--orders 10000] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._live import base_env, database, load, login, ordergate, plain, server

QUERY = """{ orders(first: 50) { edges { node { number status total createdAt
  lines { sku quantity unitPrice } customer { name phone } } } } }"""


def _ok(response) -> None:
    body = response.json()
    if "errors" in body or len(body["data"]["orders"]["edges"]) != 50:
        raise SystemExit(f"unexpected answer: {str(body)[:300]}")


async def main(orders: int, seconds: float, rounds: int, concurrency: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(orders, Path(tmp)) as url:
        env = base_env(url, Path(tmp))
        og_argv, og_port = ordergate(env)
        plain_argv, plain_port = plain(env)
        with server(og_argv, env, og_port) as og, server(plain_argv, env, plain_port) as yard:
            tokens = {role: login(og, role) for role in ("cs", "sales")}
            payload = {"query": QUERY}
            sides = {
                "ordergate cs": (og, tokens["cs"]),
                "ordergate sales": (og, tokens["sales"]),
                "plain strawberry": (yard, None),
            }
            for base, token in sides.values():  # warm up: caches, pools, JIT-less but still
                await load(base, payload, clients=4, seconds=1, token=token, check=_ok)
            print(f"PostgreSQL, {orders} orders; 50-order list with lines and customer")
            print(f"{'clients':>7}  {'side':<17} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}")
            worst = 1e9
            for clients in concurrency:
                rates: dict[str, list[float]] = {name: [] for name in sides}
                lat: dict[str, list[float]] = {name: [] for name in sides}
                for r in range(rounds):
                    names = list(sides) if r % 2 == 0 else list(reversed(sides))
                    for name in names:
                        base, token = sides[name]
                        rate, latencies = await load(
                            base,
                            payload,
                            clients=clients,
                            seconds=seconds,
                            token=token,
                            check=_ok,
                        )
                        rates[name].append(rate)
                        lat[name] += latencies
                for name in sides:
                    ordered = sorted(lat[name])
                    print(
                        f"{clients:>7}  {name:<17} {statistics.median(rates[name]):>7.1f} "
                        f"{ordered[len(ordered) // 2] * 1000:>7.1f} "
                        f"{ordered[int(len(ordered) * 0.99)] * 1000:>7.1f}"
                    )
                yard_rate = statistics.median(rates["plain strawberry"])
                for name in ("ordergate cs", "ordergate sales"):
                    ratio = statistics.median(rates[name]) / yard_rate
                    worst = min(worst, ratio)
                    print(f"{clients:>7}  {name} / plain = {ratio:.2f}x")
            print(f"worst ratio {worst:.2f}x (target >= 0.80x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    asyncio.run(
        main(args.orders, args.seconds, args.rounds, [int(c) for c in args.clients.split(",")])
    )
