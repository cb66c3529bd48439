"""Live servers and an async load generator for the benches that need real concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PASSWORD = "bench-password-1234"
KEYS = "bench:" + "b" * 48
PG = os.environ.get("ORDERGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "ORDERGATE_DATA_DIR": str(data_dir),
        "ORDERGATE_TOKEN_KEYS": KEYS,
        "ORDERGATE_DEMO_PASSWORD": PASSWORD,
        "ORDERGATE_POLICY_POLL_SECONDS": "0",
        # A bench sends thousands of requests a minute from one account and one address.
        "ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE": "100000000",
        "ORDERGATE_LOGIN_PER_ACCOUNT_PER_MINUTE": "100000",
        "ORDERGATE_LOGIN_PER_IP_PER_MINUTE": "100000",
        **extra,
    }


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PY, "-m", "api.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"ordergate {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def database(orders: int, data_dir: Path) -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, with the demo data and `orders` orders."""
    name = f"ordergate_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    url = f"{PG}/{name}"
    try:
        env = base_env(url, data_dir)
        cli(env, "migrate")
        started = time.monotonic()
        cli(env, "demo", "--orders", str(orders))
        print(f"# database with {orders} orders built in {time.monotonic() - started:.0f} s")
        yield url
    finally:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--force", name], check=False
        )


@contextlib.contextmanager
def server(argv: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.post(f"{base}/graphql", json={"query": "{__typename}"}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"{argv} did not start")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def ordergate(env: dict[str, str], workers: int = 1) -> tuple[list[str], int]:
    port = free_port()
    return (
        [PY, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(workers)],
        port,
    )


def plain(env: dict[str, str]) -> tuple[list[str], int]:
    port = free_port()
    return (
        [
            PY,
            "-m",
            "uvicorn",
            "--factory",
            "bench.plain_app:create_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        port,
    )


def login(base: str, role: str) -> str:
    query = (
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
    )
    body = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": {"u": f"demo-{role}", "p": PASSWORD}},
        timeout=30,
    ).json()
    return body["data"]["login"]["accessToken"]


async def load(
    base: str,
    payload: dict,
    *,
    clients: int,
    seconds: float,
    token: str | None = None,
    check=None,
) -> tuple[float, list[float]]:
    """`clients` connections sending `payload` back to back for `seconds`: (req/s, latencies)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:

        async def worker() -> None:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = await http.post("/graphql", json=payload, headers=headers)
                latencies.append(time.perf_counter() - started)
                if check is not None:
                    check(response)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_load(
    base: str, payload: dict, *, clients: int, seconds: float, token: str | None = None
) -> float:
    """`clients` connections sending `payload` for `seconds` with wrk (Debian: `apt-get
    install wrk`), a C load generator with one thread: it leaves the machine's CPU to the
    servers, where the async Python generator above takes much of a core. Returns req/s, and
    fails on any non-2xx answer."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(json.dumps(payload))}\n")
        for name, value in headers.items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                script.name,
                f"{base}/graphql",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"wrk saw failed requests:\n{done.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
