"""Failure behaviour: malformed bodies, a database that is down or frozen. Every answer is
JSON with a code, nothing waits past its bound, the log does not flood.

The database faults use a throwaway PostgreSQL cluster started by the test (initdb, then
stopped or frozen with SIGSTOP), never the shared server; skipped with the reason where
`initdb` is not available.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import glob
import json
import logging
import operator
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from api.app import _export_housekeeping
from tests.api.test_audit import events
from tests.conftest import Api, _api_for, _migrate_in_thread, _seed, db_id, settings_for

# ---- bodies that are not GraphQL requests ------------------------------------------------------

BODIES = {
    "null": b"null",
    "number": b"123",
    "string": b'"x"',
    "true": b"true",
    "lone 0xff": b"\xff",
    "5000 digits": b"9" * 5000,
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"query":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "empty": b"",
    "not json": b"{query: 1",
}


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
@pytest.mark.parametrize("authenticated", [False, True])
async def test_every_body_gets_a_json_answer_with_a_code(
    api: Api, body: bytes, authenticated: bool
) -> None:
    headers = {"content-type": "application/json"}
    if authenticated:
        headers["authorization"] = f"Bearer {await api.token('cs')}"

    response = await api.client.post("/graphql", content=body, headers=headers)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"


# ---- a throwaway PostgreSQL cluster -------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            parents[int(stat.split("/")[2])] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@dataclass
class Cluster:
    url: str
    process: subprocess.Popen[bytes]

    def signal(self, sig: int) -> None:
        """Signal the whole cluster: PostgreSQL's backends each run in a session of their own,
        so they are found as descendants of the process the test started, not by group."""
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def shut_down(self, data: Path) -> None:
        """A clean (fast) shutdown: SIGINT to the postmaster, whose pid it wrote in `data`."""
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGINT)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        self.thaw()
        self.signal(signal.SIGQUIT)  # immediate shutdown, like a crash
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)


def _as_postgres(data: Path) -> tuple[list[str], str, str]:
    """How to run PostgreSQL's tools on `data`: as the postgres user when root (PostgreSQL
    refuses to run as root), and where initdb and postgres are."""
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        pytest.skip("initdb is not available: the database fault tests need a throwaway cluster")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start a throwaway cluster")
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    return as_postgres, initdb, postgres


def start_cluster(stack: contextlib.ExitStack, data: Path) -> Cluster:
    """initdb and start a PostgreSQL cluster in `data`, as the postgres user when root."""
    as_postgres, initdb, postgres = _as_postgres(data)
    subprocess.run(  # noqa: S603 - PostgreSQL's own tools on a directory of ours
        [*as_postgres, initdb, "-D", str(data / "db"), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    return serve_cluster(stack, data, as_postgres, postgres)


# One migrated cluster with the demo data per test process, shut down cleanly and copied for
# each test that needs a cluster of its own: initdb, the migrations and the demo data ran
# for every such test before (a minute for the two replica tests; issue #28).
_SEEDED: list[Path] = []


def _seeded_template() -> Path:
    if _SEEDED:
        return _SEEDED[0]
    root = Path(tempfile.mkdtemp(prefix="ordergate-pg-template-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        found = start_cluster(stack, root)
        _migrate_in_thread(found.url)
        asyncio.run(_seed(found.url))
        found.shut_down(root / "db")
    _SEEDED.append(root / "db")
    return root / "db"


def start_seeded_cluster(stack: contextlib.ExitStack, data: Path) -> Cluster:
    """A migrated cluster with the demo data in `data`, started on a free loopback port: a
    copy of this process's template (ownership and modes kept)."""
    template = _seeded_template()
    as_postgres, _initdb, postgres = _as_postgres(data)
    subprocess.run(  # noqa: S603 - cp of a directory of ours
        ["cp", "-a", str(template), str(data / "db")],  # noqa: S607
        check=True,
        capture_output=True,
    )
    return serve_cluster(stack, data, as_postgres, postgres)


def serve_cluster(
    stack: contextlib.ExitStack, data: Path, as_postgres: list[str], postgres: str
) -> Cluster:
    """Start PostgreSQL on the cluster in `data/db` (a fresh one, or a base backup) on a free
    loopback port, and wait until it accepts connections."""
    port = _free_port()
    log = stack.enter_context((data / "server.log").open("wb"))
    process = subprocess.Popen(  # noqa: S603
        [
            *as_postgres,
            postgres,
            "-D",
            str(data / "db"),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster = Cluster(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", process)
    stack.callback(cluster.stop)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail(f"the throwaway cluster did not start: {(data / 'server.log').read_text()}")
        time.sleep(0.2)
    time.sleep(0.5)
    return cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    data = Path(tempfile.mkdtemp(prefix="ordergate-pg-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, data, ignore_errors=True)
        yield start_seeded_cluster(stack, data)


QUERY = "{ orders(first: 1) { totalCount } }"
TIMEOUTS = {
    "ORDERGATE_DB_CONNECT_TIMEOUT_SECONDS": "2",
    "ORDERGATE_DB_STATEMENT_TIMEOUT_SECONDS": "2",
    "ORDERGATE_DB_POOL_TIMEOUT_SECONDS": "2",
}


def _unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"].isdigit()
    codes = {e["extensions"]["code"] for e in response.json()["errors"]}
    assert codes == {"UNAVAILABLE"}, response.json()


async def test_a_stopped_database_answers_503_unavailable_and_logs_once(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async for api in _api_for(settings_for(cluster.url, tmp_path, **TIMEOUTS)):
        token = await api.token("cs")
        assert "errors" not in await api.gql(QUERY, authorization=f"Bearer {token}")
        cluster.stop()
        caplog.set_level(logging.INFO, logger="ordergate")

        responses = [
            await api.post({"query": QUERY}, authorization=f"Bearer {token}") for _ in range(20)
        ]
        anonymous = await api.post(
            {"query": 'mutation { login(username: "a", password: "b") { accessToken } }'}
        )
        health = await api.client.get("/healthz")

        for response in [*responses, anonymous]:
            _unavailable(response)
        assert health.status_code == 503
        outage_lines = [r for r in caplog.records if r.getMessage() == "database unavailable"]
        assert len(outage_lines) == 1
        assert not [r for r in caplog.records if r.exc_info]  # no tracebacks


async def test_background_loops_log_a_stopped_database_once_not_every_round(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #29: while the database was away, the subscribers' event watcher logged a
    traceback every poll (224 a minute) and the server's periodic jobs one per job and round
    (the webhook round alone 92 a minute). Both now go through the outage log: one line per
    interval, no traceback."""
    from sqlalchemy import text

    from api.app import _every

    settings = settings_for(cluster.url, tmp_path, ORDERGATE_EVENT_POLL_SECONDS="0.02", **TIMEOUTS)
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        cluster.stop()
        caplog.set_level(logging.INFO, logger="ordergate")
        rounds = 0
        enough = asyncio.Event()

        async def job(enough: asyncio.Event = enough, runtime: Any = runtime) -> None:
            nonlocal rounds
            rounds += 1
            if rounds >= 20:
                enough.set()
            async with runtime.sessions() as session:
                await session.execute(text("SELECT 1"))

        jobs = asyncio.create_task(_every(0.02, job, "webhooks", runtime.outage))
        try:
            # A subscriber waits for events past the newest: the watcher polls meanwhile.
            await runtime.feed.wait_beyond(runtime.feed.latest, seconds=1.0)
            await asyncio.wait_for(enough.wait(), 30)
        finally:
            jobs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await jobs
            await runtime.feed.close()

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("ordergate")]
    assert rounds >= 20
    assert messages.count("database unavailable") == 1, messages[:5]
    assert "could not read the newest event" not in messages
    assert "webhooks failed; will try again" not in messages
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks


async def test_a_frozen_database_fails_within_its_timeouts_and_recovers(
    cluster: Cluster, tmp_path: Path
) -> None:
    async for api in _api_for(settings_for(cluster.url, tmp_path, **TIMEOUTS)):
        token = await api.token("cs")
        assert "errors" not in await api.gql(QUERY, authorization=f"Bearer {token}")
        cluster.freeze()
        try:
            started = time.monotonic()
            frozen = await api.post({"query": QUERY}, authorization=f"Bearer {token}")
            waited = time.monotonic() - started
            started = time.monotonic()
            health = await api.client.get("/healthz")
            health_waited = time.monotonic() - started
        finally:
            cluster.thaw()
        await asyncio.sleep(0.5)
        recovered = await api.post({"query": QUERY}, authorization=f"Bearer {token}")

        _unavailable(frozen)
        assert waited < 8, waited  # bounded by the 2 s timeouts (a ping, then the query)
        assert health.status_code == 503
        assert health_waited < 2, health_waited  # a probe waits one second at most (#29)
        assert recovered.status_code == 200, recovered.text
        assert "errors" not in recovered.json()


async def test_a_mutation_in_flight_when_the_database_freezes_is_answered_within_its_bounds(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #29, 5: a mutation already inside its transaction when PostgreSQL froze was held
    for the whole freeze (30 s against bounds of a few seconds). Paused after its first
    statements, the database frozen, then let go: it is answered UNAVAILABLE within its
    statement bound plus the rollback's, and nothing of it is committed."""
    from domain.orders import service as orders

    paused, release = asyncio.Event(), asyncio.Event()
    real = orders.audit.record

    async def record(**kwargs: Any) -> Any:
        if kwargs.get("action") == "order.transition" and not paused.is_set():
            paused.set()
            await asyncio.wait_for(release.wait(), 60)
        return await real(**kwargs)

    monkeypatch.setattr(orders.audit, "record", record)
    async for api in _api_for(settings_for(cluster.url, tmp_path, **TIMEOUTS)):
        token = await api.token("ops")
        found = await api.gql(
            "{ orders(first: 1, filter: {status: [PAID]}) { edges { node { id } } } }",
            authorization=f"Bearer {token}",
        )
        order = found["data"]["orders"]["edges"][0]["node"]["id"]
        move = asyncio.create_task(
            api.post(
                {
                    "query": "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) "
                    "{ status } }",
                    "variables": {"id": order},
                },
                authorization=f"Bearer {token}",
            )
        )
        try:
            await asyncio.wait_for(paused.wait(), 30)
            cluster.freeze()
            started = time.monotonic()
            release.set()
            answer = await asyncio.wait_for(move, 60)
            waited = time.monotonic() - started
        finally:
            release.set()
            cluster.thaw()
        await asyncio.sleep(0.5)
        after = await api.gql(
            "query($id: ID!) { order(id: $id) { status } }",
            {"id": order},
            authorization=f"Bearer {token}",
        )

    _unavailable(answer)
    assert waited < 8, waited  # the 2 s statement bound, then the 2 s rollback bound
    assert after["data"]["order"]["status"] == "PAID"  # nothing of it committed


# ---- an export that cannot be written ----------------------------------------------------------

EXPORT_ONE = "query($id: ID!) { exportRequest(id: $id) { status failureReason rowCount } }"


async def _approved_export(api: Api, entity: str, field: str = "id") -> str:
    made = await api.gql(
        "mutation($e: ExportEntity!, $f: String!) { requestExport(input: {entity: $e, "
        'fields: [$f], reason: "x"}) { id } }',
        {"e": entity, "f": field},
        as_="finance",
    )
    export_id = made["data"]["requestExport"]["id"]
    for approver in ("approver", "compliance"):
        await api.gql(
            "mutation($id: ID!) { approveExport(id: $id) { status } }",
            {"id": export_id},
            as_=approver,
        )
    await api.app.state.runtime.drain()
    return export_id


async def test_an_export_that_cannot_be_written_is_retried_then_failed_and_others_go_on(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        database_url,
        tmp_path,
        ORDERGATE_EXPORT_MAX_ATTEMPTS="3",
        ORDERGATE_EXPORT_RETRY_SECONDS="60",
    )
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        directory = runtime.exports.directory
        directory.mkdir(parents=True, exist_ok=True)
        # The next export's file cannot be created: a directory stands where it would go.
        blocked = int(
            (await api.gql("{ exportRequests(first: 1) { totalCount } }", as_="compliance"))[
                "data"
            ]["exportRequests"]["totalCount"]
        )
        (directory / f"export-{blocked + 1}-customers.partial").mkdir()
        failing = await _approved_export(api, "CUSTOMERS")
        first = await api.gql(EXPORT_ONE, {"id": failing}, as_="finance")
        healthy = await api.gql(
            'mutation { requestExport(input: {entity: STOCK, fields: ["sku"], reason: "y"}) '
            "{ id } }",
            as_="finance",
        )
        healthy_id = healthy["data"]["requestExport"]["id"]
        # approve without letting it be produced yet: it waits for the sweep with the failing one
        runtime.spawn = lambda work: work.close()
        for approver in ("approver", "compliance"):
            await api.gql(
                "mutation($id: ID!) { approveExport(id: $id) { status } }",
                {"id": healthy_id},
                as_=approver,
            )
        start = runtime.clock()
        for minutes in (2, 5):  # past the first backoff (60 s), then past the second (120 s)
            runtime.clock = partial(operator.add, start, dt.timedelta(minutes=minutes))
            await _export_housekeeping(runtime)

        final = await api.gql(EXPORT_ONE, {"id": failing}, as_="finance")
        seen_by_approver = await api.gql(EXPORT_ONE, {"id": failing}, as_="approver")
        other = await api.gql(EXPORT_ONE, {"id": healthy_id}, as_="finance")
        row = str(db_id(failing))
        attempts = [e for e in await events(api, action="export.produce") if e["target_id"] == row]

        assert first["data"]["exportRequest"]["status"] == "APPROVED"
        assert final["data"]["exportRequest"]["status"] == "FAILED"
        reason = final["data"]["exportRequest"]["failureReason"]
        assert reason == "IsADirectoryError: the export file could not be written (Is a directory)"
        assert str(directory) not in json.dumps(attempts, default=str)  # no path, audit included
        assert seen_by_approver["data"]["exportRequest"]["status"] == "FAILED"
        assert other["data"]["exportRequest"]["status"] == "READY"
        assert [e["details"]["attempt"] for e in attempts] == [1, 2, 3]
        assert all(e["outcome"] == "failure" for e in attempts)
        assert attempts[-1]["details"]["final"] is True


async def test_a_failed_production_never_becomes_an_unretrieved_task_exception(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async for api in _api_for(settings_for(database_url, tmp_path)):
        directory = api.app.state.runtime.exports.directory
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.write_text("a file where the export directory should be")

        export_id = await _approved_export(api, "STOCK", "sku")
        found = await api.gql(EXPORT_ONE, {"id": export_id}, as_="finance")

        assert found["data"]["exportRequest"]["status"] == "APPROVED"  # to be retried
        assert "never retrieved" not in caplog.text


async def test_shutdown_waits_for_background_work_only_as_long_as_its_grace(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path, ORDERGATE_SHUTDOWN_GRACE_SECONDS="0.5")
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        stuck = asyncio.Event()
        runtime.spawn(stuck.wait())  # an export that would never finish

        started = time.monotonic()
        await runtime.drain(grace=settings.shutdown_grace_seconds)

        assert time.monotonic() - started < 3
        assert not runtime.background


async def test_an_exhausted_pool_is_overload_not_an_outage(
    pg_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #29: a request that waited for one of the pooled connections was told "the
    database is not answering" while the database idled. It is 503 UNAVAILABLE still (the
    contract's code, with Retry-After), with reason OVERLOADED, its own message, log line
    and metric."""
    settings = settings_for(
        pg_database, tmp_path, ORDERGATE_DB_POOL_SIZE="1", ORDERGATE_DB_POOL_TIMEOUT_SECONDS="1"
    )
    async for api in _api_for(settings):
        headers = {"authorization": f"Bearer {await api.token('ops')}"}
        async with api.app.state.runtime.engine.connect() as held:  # the pool's one connection
            await held.exec_driver_sql("SELECT 1")
            with caplog.at_level(logging.ERROR, logger="ordergate.outage"):
                response = await api.post({"query": QUERY}, **headers)
        after = await api.gql(QUERY, **headers)
        metrics = (await api.client.get("/metrics")).text

    body = response.json()
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert body["errors"][0]["extensions"] == {"code": "UNAVAILABLE", "reason": "OVERLOADED"}
    assert "busy" in body["errors"][0]["message"]
    lines = [r.getMessage() for r in caplog.records if r.name == "ordergate.outage"]
    assert lines == ["database pool exhausted: requests waited"]  # not "database unavailable"
    assert 'ordergate_unavailable_total{reason="OVERLOADED"}' in metrics
    assert "errors" not in after  # the connection back in the pool, the next request runs
