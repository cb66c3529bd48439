"""Queries on a real streaming replica (set up here with pg_basebackup on loopback), writes and
the writer's own next reads on the primary, and the primary when the replica is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from domain.db import create_engine
from tests.conftest import _api_for, settings_for
from tests.integration.test_failures import Cluster, _pg_bin, serve_cluster, start_seeded_cluster

PG = os.environ.get("ORDERGATE_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    PG is None, reason="PostgreSQL tests need ORDERGATE_TEST_DATABASE_URL (see README: Testing)"
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def start_replica(stack: contextlib.ExitStack, data: Path, primary: Cluster) -> Cluster:
    basebackup, postgres = _pg_bin("pg_basebackup"), _pg_bin("postgres")
    if basebackup is None or postgres is None:
        pytest.skip("pg_basebackup is not available: the replica test needs it")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(  # noqa: S603 - PostgreSQL's own tool on a directory of ours
        [
            *as_postgres,
            basebackup,
            "-h",
            "127.0.0.1",
            "-p",
            str(_port(primary.url)),
            "-U",
            "postgres",
            "-D",
            str(data / "db"),
            "-R",
            "-X",
            "stream",
        ],
        check=True,
        capture_output=True,
    )
    return serve_cluster(stack, data, as_postgres, postgres)


async def _scalar(url: str, sql: str) -> object:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(text(sql))
    finally:
        await engine.dispose()


async def _wait_until(url: str, sql: str, expected: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(Exception):
            if await _scalar(url, sql) == expected:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{sql} never became {expected!r}")
        await asyncio.sleep(0.2)


@pytest.fixture
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    with contextlib.ExitStack() as stack:
        dirs = [Path(tempfile.mkdtemp(prefix=f"ordergate-{n}-")) for n in ("primary", "replica")]
        for d in dirs:
            stack.callback(shutil.rmtree, d, ignore_errors=True)
        primary = start_seeded_cluster(stack, dirs[0])
        replica = start_replica(stack, dirs[1], primary)
        yield primary, replica


def _statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


STATUS = "query($id: ID!) { order(id: $id) { status } }"


async def test_queries_read_the_replica_and_writers_read_their_own_writes(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    primary, replica = clusters
    orders = "SELECT count(*) FROM orders"
    await _wait_until(replica.url, orders, await _scalar(primary.url, orders))
    settings = settings_for(primary.url, tmp_path, DATABASE_REPLICA_URLS=replica.url)
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        on_primary, on_replica = (
            _statements(runtime.engine),
            _statements(runtime.replica_engines[0]),
        )
        listed = await api.gql(
            "{ orders(first: 5, filter: {status: [PAID]}) { edges { node { id status } } } }",
            as_="ops",
        )
        target = listed["data"]["orders"]["edges"][0]["node"]["id"]
        assert [s for s in on_replica if "FROM orders" in s]
        assert not [s for s in on_primary if "FROM orders" in s]

        await _scalar(replica.url, "SELECT pg_wal_replay_pause()")  # the replica falls behind
        moved = await api.gql(
            "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status } }",
            {"id": target},
            as_="ops",
        )
        own = await api.gql(STATUS, {"id": target}, as_="ops")  # the writer: primary
        other = await api.gql(STATUS, {"id": target}, as_="cs")  # anyone else: the replica
        await _scalar(replica.url, "SELECT pg_wal_replay_resume()")
        await _wait_until(
            replica.url,
            "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()",
            True,
        )
        caught_up = await api.gql(STATUS, {"id": target}, as_="cs")

    assert moved["data"]["transitionOrder"]["status"] == "PICKING"
    assert own["data"]["order"]["status"] == "PICKING"
    assert other["data"]["order"]["status"] == "PAID"
    assert caught_up["data"]["order"]["status"] == "PICKING"


async def test_without_the_replica_queries_go_to_the_primary(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    primary, replica = clusters
    replica.stop()
    settings = settings_for(
        primary.url,
        tmp_path,
        DATABASE_REPLICA_URLS=replica.url,
        ORDERGATE_DB_CONNECT_TIMEOUT_SECONDS="2",
    )
    async for api in _api_for(settings):
        result = await api.gql("{ orders(first: 3) { edges { node { number } } } }", as_="ops")

    assert "errors" not in result, result
    assert len(result["data"]["orders"]["edges"]) == 3


async def test_a_frozen_replica_costs_one_request_its_timeout_not_every_read(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    """Issue #29: nothing remembered a replica was dead, so a frozen one cost every read its
    timeout. The first read after the freeze waits it out and goes to the primary; the next
    ones go straight to the primary, without trying the replica."""
    primary, replica = clusters
    settings = settings_for(
        primary.url,
        tmp_path,
        DATABASE_REPLICA_URLS=replica.url,
        ORDERGATE_DB_CONNECT_TIMEOUT_SECONDS="2",
        ORDERGATE_DB_STATEMENT_TIMEOUT_SECONDS="2",
    )
    query = "{ orders(first: 3) { edges { node { number } } } }"
    async for api in _api_for(settings):
        await api.token("ops")
        on_primary = _statements(api.app.state.runtime.engine)
        assert "errors" not in await api.gql(query, as_="ops")  # the replica serves
        served_by_primary = len(on_primary)
        runtime = api.app.state.runtime
        checkouts: list[object] = []  # each time a request opens a session on the replica
        replica_sessions = runtime.replicas[0]

        def counted(seen: list[object] = checkouts, real: Any = replica_sessions) -> object:
            seen.append(None)
            return real()

        runtime.replicas[0] = counted
        replica.freeze()
        try:
            started = time.monotonic()
            first = await api.gql(query, as_="ops")
            first_took = time.monotonic() - started
            tried = len(checkouts)
            rest = [await api.gql(query, as_="ops") for _ in range(3)]
        finally:
            replica.thaw()

    assert "errors" not in first, first
    assert all("errors" not in r for r in rest), rest
    assert 1.5 <= first_took < 15, first_took  # its own timeout (2 s), not a hang
    assert len(on_primary) > served_by_primary  # the primary answered the reads
    assert len(checkouts) == tried  # the replica was not tried again while it rests
