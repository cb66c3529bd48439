"""The per-account request budget in Redis (ORDERGATE_RATE_LIMIT_STORAGE): shared by every
app process, a sliding window, and a fall-back to the database when Redis does not answer.
Needs a Redis server: ORDERGATE_TEST_REDIS_URL (`.ci/run` sets it; database 15 is flushed)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import _api_for, errors_of, settings_for

REDIS = os.environ.get("ORDERGATE_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="Redis tests need ORDERGATE_TEST_REDIS_URL (see README: Testing)"
)
VIEWER = "{ viewer { username } }"


def _worker_database(url: str, worker_id: str) -> str:
    """Database index 15 for a serial run, 14, 13… for parallel workers gw0, gw1…: each
    worker flushes only its own (issue #28: isolation under pytest-xdist)."""
    if worker_id == "master":
        return url
    base, _, index = url.rstrip("/").rpartition("/")
    start = int(index) if index.isdigit() else 15
    return f"{base}/{start - 1 - int(worker_id.removeprefix('gw'))}"


@pytest.fixture
async def redis_url(worker_id: str) -> str:
    import coredis  # the client `limits` uses for async Redis

    assert REDIS is not None
    url = _worker_database(REDIS, worker_id)
    client = coredis.Redis.from_url(url)
    await client.flushdb()  # a database of its own: counts from another run must not count
    client.connection_pool.disconnect()
    await asyncio.sleep(0.01)  # let the closing transport finish on the loop
    return url


def _settings(database_url: str, tmp_path: Path, storage: str):
    return settings_for(
        database_url,
        tmp_path,
        ORDERGATE_RATE_LIMIT_STORAGE=storage,
        ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE="5",
    )


async def test_two_app_processes_share_one_budget_in_redis(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    settings = _settings(database_url, tmp_path, redis_url)
    async for first in _api_for(settings):
        async for second in _api_for(settings):
            headers = {"authorization": f"Bearer {await first.token('cs')}"}
            answers = [
                errors_of(await (first if i % 2 else second).gql(VIEWER, **headers))
                for i in range(6)
            ]
            refused = await first.gql(VIEWER, **headers)
            other = await second.gql(VIEWER, as_="ops")

    assert answers[:5] == [[]] * 5
    assert answers[5] == [("RATE_LIMITED", None)]
    assert 1 <= refused["errors"][0]["extensions"]["retryAfter"] <= 60
    assert "errors" not in other  # budgets are per account


async def test_the_integration_roles_budget_applies_in_redis_too(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    settings = settings_for(
        database_url,
        tmp_path,
        ORDERGATE_RATE_LIMIT_STORAGE=redis_url,
        ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE="5",
        ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE="integration=8",
    )
    async for api in _api_for(settings):
        answers = [errors_of(await api.gql(VIEWER, as_="integration")) for _ in range(9)]

    assert answers[:8] == [[]] * 8
    assert answers[8] == [("RATE_LIMITED", None)]


async def test_without_redis_the_budget_falls_back_to_the_database(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(database_url, tmp_path, "redis://127.0.0.1:1/0")  # nothing listens
    async for api in _api_for(settings):
        headers = {"authorization": f"Bearer {await api.token('cs')}"}
        answers = [errors_of(await api.gql(VIEWER, **headers)) for _ in range(6)]

    assert answers[:5] == [[]] * 5
    assert answers[5] == [("RATE_LIMITED", None)]
    warnings = [r for r in caplog.records if "rate-limit storage unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per request


def _start_redis(server: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - Redis on a loopback port of our own
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.asynccontextmanager
async def _own_redis() -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """A Redis server of the test's own on a free loopback port (to freeze or kill), and its
    URL; skipped where redis-server is not installed."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed: this test starts a Redis of its own")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    redis = _start_redis(server, port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the test's Redis did not start in 10 s"
                await asyncio.sleep(0.05)
        yield redis, f"redis://127.0.0.1:{port}/0"
    finally:
        if redis.poll() is None:
            redis.send_signal(signal.SIGCONT)
            redis.terminate()
        redis.wait(10)


async def test_a_frozen_redis_holds_no_request_past_its_bound(
    database_url: str, tmp_path: Path
) -> None:
    """Issue #29: a SIGSTOPped Redis held every request for 60 s (the limiter call had no
    timeout). A Redis server of the test's own is frozen; requests go on, counted in the
    database, each answered within a second."""
    async with _own_redis() as (redis, url):
        settings = _settings(database_url, tmp_path, url)
        async for api in _api_for(settings):
            headers = {"authorization": f"Bearer {await api.token('cs')}"}
            warm = errors_of(await api.gql(VIEWER, **headers))
            redis.send_signal(signal.SIGSTOP)
            seconds, answers = [], []
            for _ in range(3):
                started = time.monotonic()
                answers.append(errors_of(await asyncio.wait_for(api.gql(VIEWER, **headers), 10)))
                seconds.append(time.monotonic() - started)
            redis.send_signal(signal.SIGCONT)

    assert warm == []
    assert answers == [[], [], []]
    assert max(seconds) < 1.0, seconds


async def test_what_was_spent_in_redis_still_counts_when_redis_is_killed(
    database_url: str, tmp_path: Path
) -> None:
    """Issue #29: with Redis killed, the fallback to the database started every account at
    zero (134 requests went through on a budget of 100, and an account that had spent its
    100 got 20 more). The budget is 5 a minute: one account spends 3 in Redis, another all 5
    (and is refused a 6th); Redis is killed; the first gets 2 more, the second none."""
    fixed = dt.datetime.now(dt.UTC)  # the app's clock stands still: one window throughout
    async with _own_redis() as (redis, url):
        settings = _settings(database_url, tmp_path, url)
        async for api in _api_for(settings):
            api.app.state.runtime.clock = lambda: fixed
            some = {"authorization": f"Bearer {await api.token('cs')}"}
            spent = {"authorization": f"Bearer {await api.token('ops')}"}
            in_redis = [errors_of(await api.gql(VIEWER, **some)) for _ in range(3)]
            in_redis += [errors_of(await api.gql(VIEWER, **spent)) for _ in range(6)]
            redis.kill()
            redis.wait(10)
            after_some = [errors_of(await api.gql(VIEWER, **some)) for _ in range(3)]
            after_spent = [errors_of(await api.gql(VIEWER, **spent)) for _ in range(2)]
            counted = await api.app.state.runtime.budget.spend("probe")  # Redis is gone

    assert in_redis == [[]] * 3 + [[]] * 5 + [[("RATE_LIMITED", None)]]
    assert counted is None
    assert after_some == [[], [], [("RATE_LIMITED", None)]]
    assert after_spent == [[("RATE_LIMITED", None)]] * 2


async def test_the_last_minute_spent_in_redis_weighs_on_the_next_after_redis_dies(
    database_url: str, tmp_path: Path
) -> None:
    """The sliding window weighs the previous minute: an account that spent its 5 in Redis
    just before a minute turned is still refused in the first seconds of the next, after
    Redis is killed, as Redis itself would have refused it."""
    # Ahead of the real clock (a token issued now stays valid), 10 s before a minute turns.
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    now = [minute + dt.timedelta(seconds=50)]
    async with _own_redis() as (redis, url):
        settings = _settings(database_url, tmp_path, url)
        async for api in _api_for(settings):
            headers = {"authorization": f"Bearer {await api.token('cs')}"}
            api.app.state.runtime.clock = lambda: now[0]
            in_redis = [errors_of(await api.gql(VIEWER, **headers)) for _ in range(5)]
            redis.kill()
            redis.wait(10)
            now[0] = minute + dt.timedelta(seconds=61)  # 5 * 59/60 of the last minute weighs
            next_minute = errors_of(await api.gql(VIEWER, **headers))

    assert in_redis == [[]] * 5
    assert next_minute == [("RATE_LIMITED", None)]
