"""What the per-account rate-limit counter costs a simple query, on PostgreSQL.

One app, one database; `{ viewer { username } }` as cs with the budget counted in the
database (an upsert returning the previous minute too, committed), in Redis
(ORDERGATE_RATE_LIMIT_STORAGE, the `limits` library's sliding window counter) and not at all
(switched off in this process only), interleaved. Prints median times and ratios against no
counter. Target: <= 1.05.

    .venv/bin/python bench/ratelimit_cost.py [--rounds 300] [--redis redis://127.0.0.1:6379/14]
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
from api.budget import RedisBudget
from api.context import RequestContext
from api.settings import load_settings
from bench._live import PASSWORD, base_env, database

QUERY = {"query": "{ viewer { username } }"}
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


async def main(rounds: int, redis_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(200, Path(tmp)) as url:
        env = base_env(url, Path(tmp))
        settings = load_settings(
            {k: v for k, v in env.items() if k.startswith(("ORDERGATE", "DATABASE"))}
        )
        app = create_app(settings)
        counted = RequestContext.spend_query_budget

        async def free(self: RequestContext, now: object) -> None:
            return None

        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
            )
            token = (
                await client.post(
                    "/graphql", json={"query": LOGIN, "variables": {"u": "demo-cs", "p": PASSWORD}}
                )
            ).json()["data"]["login"]["accessToken"]
            headers = {"authorization": f"Bearer {token}"}

            async def once() -> float:
                started = time.perf_counter()
                body = (await client.post("/graphql", json=QUERY, headers=headers)).json()
                if "errors" in body:
                    raise SystemExit(body)
                return time.perf_counter() - started

            redis = RedisBudget(redis_url, 10**9)
            runtime = app.state.runtime
            sides = ("database", "redis", "none")
            times: dict[str, list[float]] = {name: [] for name in sides}
            for i in range(rounds + 20):
                for name in sides if i % 2 else tuple(reversed(sides)):
                    runtime.budget = redis if name == "redis" else None
                    RequestContext.spend_query_budget = free if name == "none" else counted
                    elapsed = await once()
                    if i >= 20:  # warm-up rounds are not counted
                        times[name].append(elapsed)
            RequestContext.spend_query_budget = counted
            runtime.budget = None
            await redis.close()
        medians = {name: statistics.median(times[name]) for name in sides}
        print(f"PostgreSQL, {rounds} rounds of {{ viewer {{ username }} }} as cs")
        for name in sides:
            print(f"counter in {name:<9} {medians[name] * 1000:7.2f} ms")
        for name in ("database", "redis"):
            print(f"{name} / none = {medians[name] / medians['none']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.redis))
