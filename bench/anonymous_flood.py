"""An anonymous flood against a live server (issue #30): does anyone else notice?

PostgreSQL with the demo data, `ordergate serve` (one process, the production limits: no
bench relaxations). For 60 s, 32 anonymous clients send back to back, in turn:
- fragment bombs (`fragment F0 on Query{...F1 ...F1} … F20`, 2^20 spreads if walked naively;
  H1 froze the loop 9.3 s with one of them);
- random combinations of root fields (H4 grew `/metrics` to 14 MB with their labels);
- export downloads with a made-up token (M6 wrote one audit event each);
- wrong passwords for a real account (M5 ended its sessions and locked it) and logins
  refused for bad input (M6 again).
Meanwhile a prober asks `/healthz` every 50 ms, and a logged-in cs user reads an order every
100 ms (does the account still work?). Printed: `/healthz` latency (target p99 < 100 ms),
the size of `/metrics` after the flood (target < 100 KB), and how many audit events the flood
wrote (target: bounded, a few per address and minute, not one per request).

    .venv/bin/python bench/anonymous_flood.py [--seconds 60] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench._live import PASSWORD, base_env, database, login, ordergate, server

ROOT_FIELDS = (
    "orders",
    "order",
    "customers",
    "viewer",
    "stockItems",
    "pickingLists",
    "kpis",
    "webhooks",
    "users",
    "auditEvents",
    "approvalRequests",
    "exportRequests",
    "tasks",
    "returns",
)


def fragment_bomb(depth: int = 20) -> str:
    fragments = [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(depth)]
    fragments.append(f"fragment F{depth} on Query {{ __typename }}")
    return "query { ...F0 } " + " ".join(fragments)


def combination(rng: random.Random) -> str:
    fields = rng.sample(ROOT_FIELDS, rng.randint(2, 6))
    return "{ " + " ".join(f"{f} {{ __typename }}" for f in fields) + " }"


OWNER = "127.0.0.3"
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


def audit_events(url: str) -> int:
    name = url.rsplit("/", 1)[1]
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", name, "-tAc",
         "SELECT count(*) FROM audit_events"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(done.stdout.strip())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def flood(base: str, seconds: float, clients: int, cs_token: str) -> dict:
    stop = time.monotonic() + seconds
    sent: collections.Counter[str] = collections.Counter()
    answers: collections.Counter[str] = collections.Counter()
    health: list[float] = []
    health_failed = 0
    reads: list[float] = []
    reads_failed = 0
    bomb = fragment_bomb()
    timeout = aiohttp.ClientTimeout(total=30)

    async def attacker(n: int, http: aiohttp.ClientSession) -> None:
        rng = random.Random(n)
        kinds = itertools.cycle(("bomb", "combination", "download", "wrong_password", "bad_login"))
        for _ in range(n):
            next(kinds)
        while time.monotonic() < stop:
            kind = next(kinds)
            sent[kind] += 1
            if kind == "download":
                request = http.get(f"{base}/exports/{rng.randint(1, 10**6)}/download?token=x")
            else:
                body = {
                    "bomb": {"query": bomb},
                    "combination": {"query": combination(rng)},
                    "wrong_password": {
                        "query": LOGIN,
                        "variables": {"u": "demo-cs", "p": f"guess-{rng.random()}"},
                    },
                    "bad_login": {
                        "query": LOGIN,
                        "variables": {"u": "demo-cs\u0007", "p": "x"},
                    },
                }[kind]
                request = http.post(f"{base}/graphql", json=body)
            try:
                async with request as response:
                    await response.read()
                    answers[f"{kind} {response.status}"] += 1
            except (aiohttp.ClientError, TimeoutError):
                answers[f"{kind} error"] += 1

    async def prober(http: aiohttp.ClientSession) -> None:
        nonlocal health_failed
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                async with http.get(f"{base}/healthz") as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            health.append(time.perf_counter() - started)
            health_failed += not ok
            await asyncio.sleep(0.05)

    async def reader(http: aiohttp.ClientSession) -> None:
        nonlocal reads_failed
        query = {"query": "{ orders(first: 5) { edges { node { id status } } } }"}
        headers = {"authorization": f"Bearer {cs_token}"}
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                async with http.post(f"{base}/graphql", json=query, headers=headers) as response:
                    body = await response.json()
                    ok = response.status == 200 and "errors" not in body
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            reads.append(time.perf_counter() - started)
            reads_failed += not ok
            await asyncio.sleep(0.1)

    connector = aiohttp.TCPConnector(limit=clients + 4)
    # The prober and the reader keep their own connections: a queue behind the flood's would
    # measure the client, not the server.
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        aiohttp.ClientSession(timeout=timeout) as probe,
        # The account owner works from another address (127.0.0.3 on the loopback): the
        # attacker's address is throttled, not the account.
        aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(local_addr=(OWNER, 0))
        ) as read,
    ):
        await asyncio.gather(
            prober(probe), reader(read), *(attacker(n, http) for n in range(clients))
        )
    return {
        "sent": sent,
        "answers": answers,
        "health": health,
        "health_failed": health_failed,
        "reads": reads,
        "reads_failed": reads_failed,
    }


async def main(seconds: float, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(200, Path(tmp)) as url:
        env = base_env(url, Path(tmp))
        for relaxed in (
            "ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE",
            "ORDERGATE_LOGIN_PER_ACCOUNT_PER_MINUTE",
            "ORDERGATE_LOGIN_PER_IP_PER_MINUTE",
        ):
            env.pop(relaxed)  # the production limits, as an attacker meets them
        argv, port = ordergate(env)
        with server(argv, env, port) as base:
            cs_token = login(base, "cs")
            before = audit_events(url)
            result = await flood(base, seconds, clients, cs_token)
            after = audit_events(url)
            async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
                metrics_bytes = len(await response.read())
                metrics_status = response.status
            owner = aiohttp.TCPConnector(local_addr=(OWNER, 0))
            async with aiohttp.ClientSession(connector=owner) as http:
                body = {"query": LOGIN, "variables": {"u": "demo-cs", "p": PASSWORD}}
                async with http.post(f"{base}/graphql", json=body) as response:
                    owner_login = await response.json()

    sent, answers, health = result["sent"], result["answers"], result["health"]
    total = sum(sent.values())
    print(
        f"PostgreSQL, `ordergate serve` (1 process), {clients} anonymous clients, {seconds:.0f} s"
    )
    print(f"flood requests sent: {total} ({total / seconds:.0f}/s)")
    for kind in ("bomb", "combination", "download", "wrong_password", "bad_login"):
        codes = ", ".join(
            f"{key.split(' ', 1)[1]}: {n}"
            for key, n in sorted(answers.items())
            if key.startswith(kind + " ")
        )
        print(f"  {kind:15s} {sent[kind]:6d}   {codes}")
    p99 = percentile(health, 99) * 1000
    print(
        f"/healthz during the flood: {len(health)} probes, p50 "
        f"{statistics.median(health) * 1000:.1f} ms, p99 {p99:.1f} ms, max "
        f"{max(health) * 1000:.1f} ms, failed {result['health_failed']}  (target p99 < 100 ms)"
    )
    reads = result["reads"]
    print(
        f"a logged-in cs reading orders meanwhile: {len(reads)} reads, p50 "
        f"{statistics.median(reads) * 1000:.1f} ms, p99 {percentile(reads, 99) * 1000:.1f} ms, "
        f"failed {result['reads_failed']}"
    )
    print(
        f"/metrics after the flood: {metrics_bytes} bytes, HTTP {metrics_status}  (target < 100 KB)"
    )
    print(
        f"audit events written during the flood: {after - before} for {total} requests  "
        "(target: bounded, not one per request)"
    )
    print(
        "the attacked account logs in with its password afterwards (from its own address): "
        f"{'yes' if owner_login.get('data', {}).get('login') else owner_login.get('errors')}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.clients))
