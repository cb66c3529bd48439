"""A migrated, demo-loaded SQLite database and app clients for benchmarks."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from api.app import create_app
from api.settings import load_settings
from domain.db import create_engine, session_factory, utcnow
from domain.demo import load_demo
from domain.migrations import run_migrations

PASSWORD = "bench-password-1234"
KEYS = "bench:" + "b" * 48


async def demo_database(workdir: Path) -> str:
    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    thread = threading.Thread(target=run_migrations, args=(url,))
    thread.start()
    thread.join()
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        await load_demo(session=session, password=PASSWORD, now=utcnow())
        await session.commit()
    await engine.dispose()
    return url


def client(url: str, workdir: Path, **env: str) -> httpx.AsyncClient:
    settings = load_settings(
        {
            "DATABASE_URL": url,
            "ORDERGATE_DATA_DIR": str(workdir),
            "ORDERGATE_TOKEN_KEYS": KEYS,
            "ORDERGATE_POLICY_POLL_SECONDS": "0",
            **env,
        }
    )
    app = create_app(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


async def token(http: httpx.AsyncClient, role: str) -> str:
    query = (
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
    )
    response = await http.post(
        "/graphql", json={"query": query, "variables": {"u": f"demo-{role}", "p": PASSWORD}}
    )
    return response.json()["data"]["login"]["accessToken"]
