"""Two app processes against one, on a two-core machine.

`ordergate serve --workers 2` and `--workers 1` on the same PostgreSQL database, 32 clients
reading the 50-order list as cs, interleaved. Prints req/s and the ratio, and the CPU the
machine had left (for PostgreSQL and the load generator, which share it). Target >= 1.6x.
The load comes from wrk when it is installed (`apt-get install wrk`): the async Python client
takes much of a core of the two, which the second worker then cannot have.

    .venv/bin/python bench/workers.py [--seconds 5] [--rounds 3] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._live import (
    base_env,
    database,
    load,
    login,
    ordergate,
    server,
    wrk_available,
    wrk_load,
)
from bench.read_path import QUERY


def _cpu_idle() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


async def main(seconds: float, rounds: int, clients: int) -> None:
    use_wrk = wrk_available()
    with tempfile.TemporaryDirectory() as tmp, database(10_000, Path(tmp)) as url:
        env = base_env(url, Path(tmp))
        one_argv, one_port = ordergate(env, workers=1)
        two_argv, two_port = ordergate(env, workers=2)
        with server(one_argv, env, one_port) as one, server(two_argv, env, two_port) as two:
            sides = {"1 worker": one, "2 workers": two}
            tokens = {name: login(base, "cs") for name, base in sides.items()}
            payload = {"query": QUERY}
            for name, base in sides.items():
                await load(base, payload, clients=clients, seconds=1, token=tokens[name])
            rates: dict[str, list[float]] = {name: [] for name in sides}
            idle: dict[str, list[float]] = {name: [] for name in sides}
            for r in range(rounds):
                for name in sides if r % 2 == 0 else reversed(list(sides)):
                    idle_before, total_before = _cpu_idle()
                    if use_wrk:
                        rate = wrk_load(
                            sides[name],
                            payload,
                            clients=clients,
                            seconds=seconds,
                            token=tokens[name],
                        )
                    else:
                        rate, _ = await load(
                            sides[name],
                            payload,
                            clients=clients,
                            seconds=seconds,
                            token=tokens[name],
                        )
                    idle_after, total_after = _cpu_idle()
                    rates[name].append(rate)
                    idle[name].append((idle_after - idle_before) / (total_after - total_before))
            print(
                f"PostgreSQL, 10,000 orders; {clients} clients, 50-order list as cs; "
                f"{os.cpu_count()} cores; load from "
                + ("wrk (one thread)" if use_wrk else "the async Python client (no wrk found)")
            )
            for name in sides:
                print(
                    f"{name:<10} {statistics.median(rates[name]):7.1f} req/s, "
                    f"CPU idle {statistics.median(idle[name]) * 100:4.1f}%"
                )
            ratio = statistics.median(rates["2 workers"]) / statistics.median(rates["1 worker"])
            print(f"ratio {ratio:.2f} (target >= 1.60)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.rounds, arguments.clients))
