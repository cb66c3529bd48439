"""A flash sale through the API: one SKU, 1,000 buyers, 64 at a time, against a raw-SQL ceiling.

PostgreSQL, the demo catalogue, `ordergate serve --workers 2`. The warehouse sets the SKU's
available stock to 500 (`adjustStock`); 1,000 buyers then call `reserveStock` for one unit each
as the `integration` account, 64 in flight at a time. Exactly 500 must succeed and 500 hear
INSUFFICIENT_STOCK; the stock row and the ledger must agree and nothing may be oversold. The
ceiling is the same 1,000 attempts as bare conditional UPDATEs (`available >= 1`) over 64
asyncpg connections, on the same stock, in the same run.
Target: 0 oversold, API / ceiling >= 0.25.

    .venv/bin/python bench/flash_sale.py [--buyers 1000] [--stock 500] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg
import httpx

from bench._live import base_env, database, login, ordergate, server

SKU, WAREHOUSE = "SKU-0007", "SH-01"
RESERVE = """mutation($i: ReserveStockInput!) { reserveStock(input: $i) { id } }"""
ITEM = """query($s: String!, $w: String) { stockItem(sku: $s, warehouse: $w) {
  onHand reserved available } }"""
VIEWER = "{ viewer { username } }"
ADJUST = """mutation($i: AdjustStockInput!) { adjustStock(input: $i) { available } }"""


async def _gql(http: httpx.AsyncClient, token: str, query: str, variables: dict) -> dict:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    return response.json()


async def _set_available(base: str, ops: str, warehouse: str, stock: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        item = (await _gql(http, ops, ITEM, {"s": SKU, "w": WAREHOUSE}))["data"]["stockItem"]
        change = {
            "sku": SKU,
            "warehouse": WAREHOUSE,
            "delta": stock - item["available"],
            "reason": "flash sale allocation",
        }
        done = await _gql(http, warehouse, ADJUST, {"i": change})
        assert done["data"]["adjustStock"]["available"] == stock, done


async def _through_api(
    base: str, token: str, buyers: int, concurrency: int, run: str, query: str = RESERVE
) -> tuple[float, int, int]:
    """(seconds, reserved, refused) for `buyers` one-unit reservations (or, with another
    `query`, that many requests of it). The load comes from aiohttp: httpx, at 64 connections,
    spends so much CPU per request that it caps near 130 requests/s on this machine whatever
    the server does (measured with `{ viewer { username } }`: httpx 132/s, aiohttp 480-520/s,
    wrk 600-630/s against the same server)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(buyers):
        queue.put_nowait(n)
    won = refused = 0
    line = {"sku": SKU, "warehouse": WAREHOUSE, "quantity": 1}
    headers = {"authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:

        async def buyer() -> None:
            nonlocal won, refused
            while not queue.empty():
                n = queue.get_nowait()
                variables = {"i": {"reference": f"{run}-{n}", "lines": [line]}}
                if query is not RESERVE:
                    variables = {}
                payload = {"query": query, "variables": variables}
                async with http.post("/graphql", json=payload, headers=headers) as response:
                    body = await response.json()
                codes = [e["extensions"]["code"] for e in body.get("errors", [])]
                if not codes:
                    won += 1
                elif codes == ["INSUFFICIENT_STOCK"]:
                    refused += 1
                else:
                    raise SystemExit(f"unexpected answer: {body}")

        started = time.perf_counter()
        await asyncio.gather(*(buyer() for _ in range(concurrency)))
        return time.perf_counter() - started, won, refused


async def _ceiling(url: str, buyers: int, stock: int, concurrency: int) -> tuple[float, int]:
    """The same attempts as bare conditional UPDATEs; returns (seconds, reserved). The stock
    row is put back as it was afterwards."""
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    try:
        before = await pool.fetchrow(
            "SELECT on_hand, reserved FROM stock_items WHERE sku = $1 AND warehouse = $2",
            SKU,
            WAREHOUSE,
        )
        await pool.execute(
            "UPDATE stock_items SET reserved = on_hand - $3 WHERE sku = $1 AND warehouse = $2",
            SKU,
            WAREHOUSE,
            stock,
        )
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(buyers):
            queue.put_nowait(n)
        won = 0

        async def buyer() -> None:
            nonlocal won
            async with pool.acquire() as conn:
                while not queue.empty():
                    queue.get_nowait()
                    row = await conn.fetchrow(
                        "UPDATE stock_items SET reserved = reserved + 1 WHERE sku = $1 "
                        "AND warehouse = $2 AND on_hand - reserved >= 1 RETURNING id",
                        SKU,
                        WAREHOUSE,
                    )
                    won += row is not None

        started = time.perf_counter()
        await asyncio.gather(*(buyer() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        await pool.execute(
            "UPDATE stock_items SET on_hand = $3, reserved = $4 WHERE sku = $1 AND warehouse = $2",
            SKU,
            WAREHOUSE,
            before["on_hand"],
            before["reserved"],
        )
        return seconds, won
    finally:
        await pool.close()


async def _books(url: str) -> tuple[int, int, int, int]:
    conn = await asyncpg.connect(url)
    try:
        item = await conn.fetchrow(
            "SELECT on_hand, reserved FROM stock_items WHERE sku = $1 AND warehouse = $2",
            SKU,
            WAREHOUSE,
        )
        moved = await conn.fetchrow(
            "SELECT sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved "
            "FROM stock_movements WHERE sku = $1 AND warehouse = $2",
            SKU,
            WAREHOUSE,
        )
        return item["on_hand"], item["reserved"], moved["on_hand"], moved["reserved"]
    finally:
        await conn.close()


async def main(buyers: int, stock: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(1000, Path(tmp)) as url:
        raw_url = url.replace("postgresql+asyncpg://", "postgresql://")
        env = base_env(url, Path(tmp), ORDERGATE_WORKER_IN_SERVER="0")
        print(
            f"PostgreSQL; one SKU with {stock} available, {buyers} buyers of one unit, "
            f"{concurrency} at a time, `serve --workers 2`"
        )
        argv, port = ordergate(env, workers=2)
        with server(argv, env, port) as base:
            ops, warehouse = login(base, "ops"), login(base, "warehouse")
            buyer = login(base, "integration")
            # A warm-up sale on another reference range, so both workers have connections.
            await _set_available(base, ops, warehouse, stock)
            await _through_api(base, buyer, min(200, buyers), concurrency, "WARM")
            await _set_available(base, ops, warehouse, stock)
            held_before = (await _books(raw_url))[1]
            seconds, won, refused = await _through_api(base, buyer, buyers, concurrency, "SALE")
            # What the stack costs with no work behind it: the same account, client and
            # concurrency asking who it is (authentication, policy, strawberry, middleware).
            floor_seconds, _, _ = await _through_api(
                base, buyer, buyers, concurrency, "FLOOR", query=VIEWER
            )
        on_hand, reserved, moved_on_hand, moved_reserved = await _books(raw_url)
        ceiling_seconds, ceiling_won = await _ceiling(raw_url, buyers, stock, concurrency)
        api_rate, ceiling_rate = buyers / seconds, buyers / ceiling_seconds
        floor_rate = buyers / floor_seconds
        oversold = max(0, won - stock) + max(0, reserved - on_hand)
        print(f"{'path':<28} {'attempts/s':>10} {'reserved':>9} {'refused':>8}")
        print(f"{'reserveStock (API)':<28} {api_rate:>10.0f} {won:>9} {refused:>8}")
        print(f"{'conditional UPDATE (raw)':<28} {ceiling_rate:>10.0f} {ceiling_won:>9} "
              f"{buyers - ceiling_won:>8}")  # fmt: skip
        print(f"{'viewer query (API, no work)':<28} {floor_rate:>10.0f}")
        print(f"API / ceiling: {api_rate / ceiling_rate:.3f}  (target >= 0.25)")
        print(
            f"viewer query / ceiling: {floor_rate / ceiling_rate:.3f}; "
            f"reserveStock / viewer query: {api_rate / floor_rate:.3f}"
        )
        print(
            f"oversold: {oversold}; stock row reserved {reserved - held_before} by the sale, "
            f"on hand {on_hand}; ledger sums (on hand, reserved) = ({moved_on_hand}, "
            f"{moved_reserved}) vs row ({on_hand}, {reserved})"
        )
        if (
            oversold
            or won != min(stock, buyers)
            or (moved_on_hand, moved_reserved)
            != (
                on_hand,
                reserved,
            )
        ):
            raise SystemExit("FAILED: the sale did not balance")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=1000)
    parser.add_argument("--stock", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.buyers, arguments.stock, arguments.concurrency))
