"""Do logins stall reads? Read throughput during a burst of logins, against without.

A live ordergate (one process) on PostgreSQL; 8 clients read the 50-order list as cs for a
few seconds, once alone and once while 4 more clients log in back to back (argon2 runs in a
thread pool, off the event loop), interleaved. Target: reads during the burst >= 0.8x.

    .venv/bin/python bench/login_burst.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._live import PASSWORD, base_env, database, load, login, ordergate, server
from bench.read_path import QUERY

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


async def main(seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(10_000, Path(tmp)) as url:
        env = base_env(url, Path(tmp))
        argv, port = ordergate(env)
        with server(argv, env, port) as base:
            token = login(base, "cs")
            read = {"query": QUERY}
            logins = {"query": LOGIN, "variables": {"u": "demo-ops", "p": PASSWORD}}
            await load(base, read, clients=8, seconds=1, token=token)
            alone: list[float] = []
            burst: list[float] = []
            login_rates: list[float] = []
            for r in range(rounds):
                for with_logins in (False, True) if r % 2 == 0 else (True, False):
                    if with_logins:
                        (rate, _), (login_rate, _) = await asyncio.gather(
                            load(base, read, clients=8, seconds=seconds, token=token),
                            load(base, logins, clients=4, seconds=seconds),
                        )
                        burst.append(rate)
                        login_rates.append(login_rate)
                    else:
                        rate, _ = await load(base, read, clients=8, seconds=seconds, token=token)
                        alone.append(rate)
            a, b = statistics.median(alone), statistics.median(burst)
            print("PostgreSQL, 10,000 orders; 8 clients reading the 50-order list as cs")
            print(f"reads alone            {a:7.1f} req/s")
            print(
                f"reads during logins    {b:7.1f} req/s "
                f"(logins {statistics.median(login_rates):.1f}/s from 4 clients)"
            )
            print(f"ratio {b / a:.2f} (target >= 0.80)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.rounds))
