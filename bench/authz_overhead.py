"""What field-level access control costs a request.

One process, one database, two apps side by side: the real policy, and a policy that grants
every field in full. The same 50-order query selecting every governed field is sent to both,
interleaved, and the ratio of median times is printed. Target: <= 1.10.

    .venv/bin/python bench/authz_overhead.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import client, demo_database, token
from tests.support import ALL_FIELDS_QUERY, write_open_policy

ROLES = ("cs", "sales")  # one role with denied fields, one with masked ones


async def _time(client: httpx.AsyncClient, token: str) -> float:
    started = time.perf_counter()
    response = await client.post(
        "/graphql",
        json={"query": ALL_FIELDS_QUERY, "variables": {"first": 50}},
        headers={"authorization": f"Bearer {token}"},
    )
    elapsed = time.perf_counter() - started
    body = response.json()
    assert len(body["data"]["orders"]["edges"]) == 50, body
    return elapsed


async def main(rounds: int) -> None:
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = await demo_database(workdir)
        real = client(url, workdir)
        open_policy = write_open_policy(workdir / "open-policy")
        open_ = client(url, workdir, ORDERGATE_POLICY_DIR=str(open_policy))
        print(f"query: 50 orders x every governed field, {rounds} rounds per side")
        for role in ROLES:
            real_token, open_token = await token(real, role), await token(open_, role)
            for _ in range(5):  # warm caches, compile profiles
                await _time(real, real_token)
                await _time(open_, open_token)
            real_times: list[float] = []
            open_times: list[float] = []
            for i in range(rounds):
                # Alternate which goes first so drift on a noisy machine hits both alike.
                pair = [(real, real_token, real_times), (open_, open_token, open_times)]
                for http, bearer, sink in pair if i % 2 == 0 else reversed(pair):
                    sink.append(await _time(http, bearer))
            real_median = statistics.median(real_times)
            open_median = statistics.median(open_times)
            ratio = real_median / open_median
            worst = max(worst, ratio)
            print(
                f"role {role:6} real policy {real_median * 1000:7.2f} ms   "
                f"all FULL {open_median * 1000:7.2f} ms   ratio {ratio:.3f}"
            )
        await real.aclose()
        await open_.aclose()
    print(f"worst ratio real/open {worst:.3f}   (target <= 1.10)")
    if worst > 1.10:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    asyncio.run(main(parser.parse_args().rounds))
