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
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app
from api.settings import load_settings
from domain.db import create_engine, session_factory, utcnow
from domain.demo import load_demo
from domain.migrations import run_migrations
from tests.support import ALL_FIELDS_QUERY, write_open_policy

PASSWORD = "bench-password-1234"
KEYS = "bench:" + "b" * 48
ROLE = "cs"


async def _seed(url: str) -> None:
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        await load_demo(session=session, password=PASSWORD, now=utcnow())
        await session.commit()
    await engine.dispose()


def _client(url: str, workdir: Path, policy_dir: Path | None) -> httpx.AsyncClient:
    env = {
        "DATABASE_URL": url,
        "ORDERGATE_DATA_DIR": str(workdir),
        "ORDERGATE_TOKEN_KEYS": KEYS,
        "ORDERGATE_POLICY_POLL_SECONDS": "0",
    }
    if policy_dir is not None:
        env["ORDERGATE_POLICY_DIR"] = str(policy_dir)
    app = create_app(load_settings(env))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


async def _token(client: httpx.AsyncClient) -> str:
    query = (
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
    )
    response = await client.post(
        "/graphql", json={"query": query, "variables": {"u": f"demo-{ROLE}", "p": PASSWORD}}
    )
    return response.json()["data"]["login"]["accessToken"]


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
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        thread = threading.Thread(target=run_migrations, args=(url,))
        thread.start()
        thread.join()
        await _seed(url)
        real = _client(url, workdir, None)
        open_ = _client(url, workdir, write_open_policy(workdir / "open-policy"))
        real_token, open_token = await _token(real), await _token(open_)
        for _ in range(5):  # warm caches, compile profiles
            await _time(real, real_token)
            await _time(open_, open_token)
        real_times, open_times = [], []
        for i in range(rounds):
            # Alternate which goes first so drift on a noisy machine hits both alike.
            pair = [(real, real_token, real_times), (open_, open_token, open_times)]
            for client, token, sink in pair if i % 2 == 0 else reversed(pair):
                sink.append(await _time(client, token))
        await real.aclose()
        await open_.aclose()

    real_median = statistics.median(real_times)
    open_median = statistics.median(open_times)
    ratio = real_median / open_median
    print(f"query: 50 orders x every governed field, role {ROLE}, {rounds} rounds each")
    print(f"real policy     median {real_median * 1000:8.2f} ms")
    print(f"all fields FULL median {open_median * 1000:8.2f} ms")
    print(f"ratio real/open        {ratio:8.3f}   (target <= 1.10)")
    if ratio > 1.10:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    asyncio.run(main(parser.parse_args().rounds))
