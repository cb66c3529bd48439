"""Does a query cost more when the database is a hundred times larger?

Two PostgreSQL databases, one with 10,000 orders and one with 1,000,000 (built with
`ordergate demo --orders`), each behind its own app in this process. The same queries go to
both, interleaved; the ratio of median times (1M / 10k) is printed per query. Targets: <= 1.3x
for every page query, <= 2x for totalCount.

    .venv/bin/python bench/scale.py [--small 10000] [--large 1000000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app
from api.settings import load_settings
from bench._live import PASSWORD, base_env, database

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
PAGE = "edges { cursor node { number status total createdAt } }"
QUERIES = {
    "first page": "{ orders(first: 50) { PAGE } }",
    "deep keyset page": '{ orders(first: 50, after: "DEEP") { PAGE } }',
    "filtered list": (
        "{ orders(first: 50, filter: {status: [PAID], channel: [TAOBAO], createdFrom: "
        '"2020-01-01T00:00:00Z"}) { PAGE } }'
    ),
    "order(id)": '{ order(id: "ONE") { number status total lines { sku } } }',
    "totalCount": "{ orders(first: 1) { totalCount totalCountCapped } }",
}


async def _app(url: str, workdir: Path) -> tuple[httpx.AsyncClient, object]:
    env = base_env(url, workdir)
    settings = load_settings(
        {k: v for k, v in env.items() if k.startswith(("ORDERGATE", "DATABASE"))}
    )
    app = create_app(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b"), app


async def _prepare(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    token = (
        await client.post(
            "/graphql", json={"query": LOGIN, "variables": {"u": "demo-ops", "p": PASSWORD}}
        )
    ).json()["data"]["login"]["accessToken"]
    return token, {"authorization": f"Bearer {token}"}


async def _deep_cursor(url: str) -> tuple[str, str]:
    """A cursor 90% of the way down the newest-first list (the one a client would hold after
    paging that far), and the newest order's global ID."""
    from sqlalchemy import text

    from domain.db import create_engine
    from domain.pagination import encode_cursor

    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.connect() as connection:
        total = await connection.scalar(text("SELECT count(*) FROM orders"))
        row = (
            await connection.execute(
                text(
                    "SELECT created_at, id FROM orders ORDER BY created_at DESC, id DESC "
                    "OFFSET :n LIMIT 1"
                ),
                {"n": int(total * 0.9)},
            )
        ).one()
        one = await connection.scalar(text("SELECT id FROM orders ORDER BY id DESC LIMIT 1"))
    await engine.dispose()
    from api.graphql.relay import global_id

    return encode_cursor("orders:CREATED_AT:DESC", row[0], row[1]), str(global_id("Order", one))


async def _time(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> float:
    started = time.perf_counter()
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    elapsed = time.perf_counter() - started
    body = response.json()
    if "errors" in body:
        raise SystemExit(f"{query[:60]}: {body['errors']}")
    return elapsed


async def main(small: int, large: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        stack = contextlib.AsyncExitStack()
        with (
            database(small, workdir / "s") as small_url,
            database(large, workdir / "l") as large_url,
        ):
            sides = {}
            for name, url in (("small", small_url), ("large", large_url)):
                (workdir / name).mkdir(exist_ok=True)
                client, app = await _app(url, workdir / name)
                await stack.enter_async_context(app.router.lifespan_context(app))
                _, headers = await _prepare(client)
                deep, one = await _deep_cursor(url)
                sides[name] = (client, app, headers, deep, one)
            queries = {
                label: {
                    name: template.replace("PAGE", PAGE)
                    .replace("DEEP", side[3])
                    .replace("ONE", side[4])
                    for name, side in sides.items()
                }
                for label, template in QUERIES.items()
            }
            print(f"PostgreSQL: {small} vs {large} orders, {rounds} rounds, p50 in ms")
            print(f"{'query':<18} {'small':>8} {'large':>8} {'ratio':>8}")
            for label, per_side in queries.items():
                times = {"small": [], "large": []}
                for name, (client, _, headers, _, _) in sides.items():
                    for _ in range(3):
                        await _time(client, headers, per_side[name])
                for r in range(rounds):
                    order = ("small", "large") if r % 2 == 0 else ("large", "small")
                    for name in order:
                        client, _, headers, _, _ = sides[name]
                        times[name].append(await _time(client, headers, per_side[name]))
                s, l_ = statistics.median(times["small"]), statistics.median(times["large"])
                target = 2.0 if label == "totalCount" else 1.3
                print(
                    f"{label:<18} {s * 1000:>8.1f} {l_ * 1000:>8.1f} {l_ / s:>7.2f}x"
                    f"  (target <= {target}x)"
                )
            for client, *_ in sides.values():
                await client.aclose()
            await stack.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.small, args.large, args.rounds))
