"""Fixtures: a real migrated database per test (SQLite by default, PostgreSQL when
ORDERGATE_TEST_DATABASE_URL is set), the real app over HTTP, real tokens."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from api.app import create_app
from api.settings import Settings, load_settings
from domain.db import create_engine, session_factory, utcnow
from domain.demo import load_demo
from domain.migrations import run_migrations

DEMO_PASSWORD = "demo-password-for-tests"
TOKEN_KEYS = "test-1:" + "k" * 48
PG_URL = os.environ.get("ORDERGATE_TEST_DATABASE_URL")


def settings_for(database_url: str, data_dir: Path, **extra: str) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "ORDERGATE_DATA_DIR": str(data_dir),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
        "ORDERGATE_ENV": "test",
        "ORDERGATE_POLICY_POLL_SECONDS": "0",
        **extra,
    }
    return load_settings(env)


async def _seed(url: str) -> None:
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        await load_demo(session=session, password=DEMO_PASSWORD, now=utcnow())
        await session.commit()
    await engine.dispose()


def _migrate_in_thread(url: str) -> None:
    # Alembic's env runs its own event loop; keep it off the test loop's thread.
    import threading

    error: list[BaseException] = []

    def target() -> None:
        try:
            run_migrations(url)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]


# ---- SQLite -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite+aiosqlite:///{path}"
    _migrate_in_thread(url)
    asyncio.run(_seed(url))
    return path


# ---- PostgreSQL -------------------------------------------------------------------------------


def _pg_admin_url() -> str:
    assert PG_URL
    return str(make_url(PG_URL).set(drivername="postgresql+asyncpg"))


async def _pg_execute(sql: str) -> None:
    engine = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(sql))
    await engine.dispose()


def _pg_url(name: str) -> str:
    return str(make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need ORDERGATE_TEST_DATABASE_URL (see README: Testing)")
    name = f"ordergate_tmpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    try:
        _migrate_in_thread(url)
        asyncio.run(_seed(url))
        yield name
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    name = f"ordergate_test_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield _pg_url(name)
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ---- the database a test runs on --------------------------------------------------------------


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated database with the demo data, private to this test.

    Tests that must also run on PostgreSQL use the `any_database_url` fixture instead.
    """
    return _database_for(request, tmp_path, request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _database_for(request, tmp_path, request.param)


def _database_for(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("pg_database")
    template = request.getfixturevalue("sqlite_template")
    path = tmp_path / "ordergate.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return settings_for(database_url, tmp_path)


# ---- the app over HTTP ------------------------------------------------------------------------


@dataclass
class Api:
    """A GraphQL client for tests: `await api.gql(query, as_="cs")`."""

    client: httpx.AsyncClient
    app: Any
    _tokens: dict[str, str]

    async def token(self, role: str) -> str:
        cached = self._tokens.get(role)
        if cached is not None and _expires_within(cached, seconds=120):
            # A session-wide token outlives its 15 minutes in a long run: log in again.
            del self._tokens[role]
        if role not in self._tokens:
            result = await self.gql(
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
                "{ accessToken } }",
                {"u": f"demo-{role}", "p": DEMO_PASSWORD},
            )
            assert "errors" not in result, result
            self._tokens[role] = result["data"]["login"]["accessToken"]
        return self._tokens[role]

    async def post(self, body: Any, *, as_: str | None = None, **headers: str) -> httpx.Response:
        if as_ is not None:
            headers["authorization"] = f"Bearer {await self.token(as_)}"
        # ASCII JSON, as many clients send it: lone surrogates travel as `\ud800` escapes.
        headers.setdefault("content-type", "application/json")
        return await self.client.post("/graphql", content=json.dumps(body), headers=headers)

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        as_: str | None = None,
        **headers: str,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        response = await self.post(body, as_=as_, **headers)
        assert response.status_code == 200, response.text
        return response.json()


def _expires_within(token: str, *, seconds: int) -> bool:
    claims = jwt.decode(token, options={"verify_signature": False})
    return int(claims["exp"]) - seconds <= time.time()


# Tokens do not depend on which copy of the database a test uses (same keys, same user ids),
# so logging in once per role per session keeps argon2 out of every test.
_SESSION_TOKENS: dict[str, str] = {}


async def _api_for(settings: Settings, *, check_events: bool = False) -> AsyncIterator[Api]:
    """The app over HTTP. With `check_events`, the test fails afterwards when any order
    version it committed has no outbox event (issue #29: a path that loses events fails
    somewhere, not silently in production)."""
    from domain.events.check import missing_order_events, order_versions

    app = create_app(settings)
    baseline: dict[int, int] = {}
    if check_events:
        async with app.state.runtime.sessions() as session:
            baseline = await order_versions(session)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://ordergate.test") as client:
        yield Api(client, app, _SESSION_TOKENS)
    if check_events:
        async with app.state.runtime.sessions() as session:
            missing = await missing_order_events(session, baseline=baseline)
        assert missing == [], f"order versions committed without their event: {missing}"
    await app.state.runtime.engine.dispose()
    for replica in app.state.runtime.replica_engines:
        await replica.dispose()
    if app.state.runtime.budget is not None:  # without the lifespan, close what it would
        await app.state.runtime.budget.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async for value in _api_for(settings):
        yield value


def _checks_events(request: pytest.FixtureRequest) -> bool:
    """Every PostgreSQL API test checks that its committed order versions have their events,
    except one that inserts order rows itself (`@pytest.mark.raw_orders`), bypassing the
    services that publish them."""
    return request.node.get_closest_marker("raw_orders") is None


@pytest.fixture
async def any_api(
    any_database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Api]:
    check = any_database_url.startswith("postgresql") and _checks_events(request)
    async for value in _api_for(settings_for(any_database_url, tmp_path), check_events=check):
        yield value


@pytest.fixture
async def pg_api(
    pg_database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Api]:
    settings = settings_for(pg_database, tmp_path)
    async for value in _api_for(settings, check_events=_checks_events(request)):
        yield value


def nothing_returned(result: dict[str, Any]) -> bool:
    """True when the response carries no data: none at all, or every root field null."""
    data = result.get("data")
    return data is None or all(value is None for value in data.values())


def errors_of(result: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (e["extensions"]["code"], e["extensions"].get("field")) for e in result.get("errors", [])
    ]


def db_id(global_id: str) -> int:
    """The row id behind a global ID the API returned (for tests that reach into the
    database or the audit log, which name rows by their id)."""
    from api.graphql.relay import decode_global_id

    found = decode_global_id(global_id)
    assert found is not None, global_id
    return found[1]


async def outbox_head(api: Api) -> int:
    """The last event seq committed so far (the demo data publishes events through the
    intake): read it first to see only what a test itself publishes."""
    from domain.events.models import OutboxHead

    async with api.app.state.runtime.sessions() as session:
        return int(await session.scalar(select(OutboxHead.seq).where(OutboxHead.id == 1)) or 0)


# ---- how the suite runs (issue #28) -----------------------------------------------------------

# Tests that start processes, clusters or a browser, or search at length: `make test` runs
# them, `make test-fast` (the inner loop) leaves them out.
SLOW_MODULES = {
    "tests/integration/test_failures.py",
    "tests/integration/test_flash_sale.py",
    "tests/integration/test_live_server.py",
    "tests/integration/test_policy_reload.py",
    "tests/integration/test_production_config.py",
    "tests/integration/test_replicas.py",
    "tests/integration/test_startup.py",
    "tests/integration/test_subscriptions.py",
    "tests/integration/test_webhooks.py",
    "tests/integration/test_wheel.py",
    "tests/integration/test_workers.py",
    "tests/integration/test_cli.py",
    # Long generated searches (hypothesis: random operation sequences, generated queries per
    # role): each takes 10 to 25 s of one worker.
    "tests/integration/test_stock_invariants.py",
    "tests/api/test_fuzz.py",
}
# No single test (its call; `--durations` shows set-ups too) may take longer than this: a slow
# test makes every developer wait, and is made faster, not left out.
SLOWEST_TEST_SECONDS = float(os.environ.get("ORDERGATE_SLOWEST_TEST_SECONDS", "60"))
_TEST_SECONDS: dict[str, float] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path.startswith("tests/browser/"):
            item.add_marker(pytest.mark.browser)
        if path.startswith("tests/browser/") or path in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if path.startswith("tests/conformance/"):
            item.add_marker(pytest.mark.npm)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The test's own call: a worker's first test also pays for the session's templates in its
    # set-up (a migrated, seeded database per worker), which is no test's fault.
    if report.when == "call":
        _TEST_SECONDS[report.nodeid] = report.duration


def slowest_tests(limit: float) -> list[tuple[str, float]]:
    return sorted(
        ((node, seconds) for node, seconds in _TEST_SECONDS.items() if seconds > limit),
        key=lambda found: -found[1],
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    over = slowest_tests(SLOWEST_TEST_SECONDS)
    if over:
        terminalreporter.section("tests over the time limit", sep="=", red=True)
        for node, seconds in over:
            terminalreporter.write_line(
                f"{seconds:6.1f}s {node} (limit {SLOWEST_TEST_SECONDS:.0f} s: make it faster)"
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # the controller judges the whole run
    if slowest_tests(SLOWEST_TEST_SECONDS) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
