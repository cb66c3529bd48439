"""Commit-to-delivery latency of order events beside a slow receiver, and delivery throughput
with 1 and 2 workers.

PostgreSQL, 50,000 orders. Part 1: two webhooks on loopback subscribe to ORDER_STATUS_CHANGED,
one answering at once and one answering in 8 s (issue #29: a slow receiver held every other
receiver's deliveries); status changes are committed at 200 a second (two generator processes,
each change its own transaction writing the order, its history row and its outbox event as
`transitionOrder` does, without the audit record — `--domain-generator` uses the service itself,
which this 2-core machine cannot run at 200/s beside the workers) while `ordergate worker`
processes deliver; the fast receiver notes when each event arrives, against the event's `at`,
and the run counts the committed changes against the events in the outbox. Part 2: a backlog
of deliveries is drained by 1 and by 2 workers, timed from the moment the webhooks are
un-paused (the workers are already running), in two settings: the four instant loopback
receivers (CPU-bound on this machine), and 40 webhooks whose receivers take 100 ms to answer,
as endpoints across the internet do. Targets: the fast receiver's p95 <= 2 s at 200/s with
the slow one beside it; events == committed changes; 2 workers / 1 >= 1.6.

    .venv/bin/python bench/events.py [--rate 200] [--seconds 10] [--backlog 2000] [--slow 8]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text

import domain.models  # noqa: F401 - every table, for the ORM
from api.settings import load_settings, sealer
from bench._live import PY, ROOT, base_env, database
from domain.access import PolicyDecisionPoint
from domain.actor import Actor
from domain.db import create_engine, session_factory
from domain.events import service as events
from domain.events import webhooks
from domain.orders import service as orders
from domain.orders.rules import OrderStatus
from domain.users.models import User

WEBHOOKS = 4  # the instant receivers of the drain
LATENCY_WEBHOOKS = 1  # part 1: one fast consumer, so its deliveries/s = changes/s
LANES = 4  # concurrent committers per generator process


def _receive(port_out, log_path: str, latency: float) -> None:
    """A receiver process: appends `arrival time, body` per request to its log, answering
    after `latency` seconds (one thread per connection)."""
    sink = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if latency:
                time.sleep(latency)
            sink.write(f"{time.time()} {body.decode()}\n")
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def _receivers(tmp: str, name: str, count: int, latency: float):
    logs = [Path(tmp) / f"{name}-{i}.log" for i in range(count)]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_receive, args=(queue, str(p), latency), daemon=True)
        for p in logs
    ]
    for r in processes:
        r.start()
    ports = [queue.get(timeout=30) for _ in processes]
    return logs, processes, ports


def _arrivals(paths: list[Path]) -> list[tuple[float, dict]]:
    found = []
    for path in paths:
        for line in path.read_text().splitlines():
            at, _, body = line.partition(" ")
            found.append((float(at), json.loads(body)))
    return found


async def _actor(sessions, username: str, pdp: PolicyDecisionPoint) -> Actor:
    async with sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
        roles = frozenset(user.roles)
        return Actor(user.id, user.username, roles, frozenset(user.channels), pdp.profile(roles))


LEAN = True
SEALER: list = []  # the workers' sealer (the same key file), set in main


async def _lean_transition(session, order_id: int) -> None:
    """PAID -> PICKING as `transitionOrder` writes it (the order, its history row, its outbox
    event, one transaction), in Core statements and without the audit record: the full domain
    path costs ~6 ms of CPU a change, and at 200 a second that alone would take more than this
    2-core machine has beside the workers being measured. The event path is the same."""
    version = (
        await session.execute(
            text(
                "UPDATE orders SET status = 'PICKING', version = version + 1, updated_at = now() "
                "WHERE id = :id AND status = 'PAID' RETURNING version"
            ),
            {"id": order_id},
        )
    ).scalar_one()
    now = dt.datetime.now(dt.UTC)
    await session.execute(
        text(
            "INSERT INTO order_status_changes (order_id, from_status, to_status, actor_username, "
            "at) VALUES (:id, 'PAID', 'PICKING', 'bench', :at)"
        ),
        {"id": order_id, "at": now},
    )
    events.publish(
        session=session,
        type=events.EventType.ORDER_STATUS_CHANGED,
        aggregate_type="Order",
        aggregate_id=order_id,
        version=version,
        at=now,
        payload={"orderId": order_id, "from": "PAID", "to": "PICKING"},
    )


async def _change(url: str, ids: list[int], rate: float, seconds: float, ready, go) -> tuple:
    """PAID -> PICKING at `rate` a second, each its own transaction, from when `go` is set;
    returns (changes, seconds taken)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    sessions = session_factory(engine)
    ops = await _actor(sessions, "demo-ops", PolicyDecisionPoint(ROOT / "policies"))
    async with sessions() as session:  # connected and warm before the clock starts
        await session.execute(text("SELECT 1"))
    ready.put(True)
    await asyncio.to_thread(go.wait)
    started = time.perf_counter()

    async def lane(mine: list[int], pace: float) -> int:
        """One connection's share: each commit waits for its WAL flush, so a single
        sequential committer is bound by that latency, not by CPU."""
        done = 0
        for order_id in mine:
            if time.perf_counter() - started >= seconds:
                break
            async with sessions() as session:
                if LEAN:
                    await _lean_transition(session, order_id)
                else:
                    await orders.transition(
                        session=session, actor=ops, order_id=order_id, to=OrderStatus.PICKING
                    )
                await session.commit()
            done += 1
            delay = started + done / pace - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        return done

    done = sum(await asyncio.gather(*(lane(ids[i::LANES], rate / LANES) for i in range(LANES))))
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return done, elapsed


def _generate(
    url: str, ids: list[int], rate: float, seconds: float, ready, go, out, lean: bool
) -> None:
    global LEAN
    LEAN = lean
    out.put(asyncio.run(_change(url, ids, rate, seconds, ready, go)))


def _generators(
    url: str, ids: list[int], rate: float, seconds: float, n: int = 2
) -> tuple[int, float]:
    """`n` processes committing changes at `rate / n` each (one process tops out near 150/s
    on this machine), started together once all are connected. Returns (changes, per
    second)."""
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited loop or pool
    ready, out, go = spawn.Queue(), spawn.Queue(), spawn.Event()
    share = len(ids) // n
    processes = [
        spawn.Process(
            target=_generate,
            args=(url, ids[i * share : (i + 1) * share], rate / n, seconds, ready, go, out, LEAN),
        )
        for i in range(n)
    ]
    for p in processes:
        p.start()
    for _ in processes:
        ready.get(timeout=120)
    go.set()
    results = [out.get(timeout=seconds + 600) for _ in processes]
    for p in processes:
        p.join()
    done = sum(d for d, _ in results)
    return done, done / max(e for _, e in results)


def _workers(env: dict[str, str], n: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [PY, "-m", "api.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        p.wait(timeout=30)


async def _pending(sessions, webhook_ids: list[int] | None = None) -> int:
    """Deliveries still pending (of `webhook_ids` only, when given)."""
    only = "" if webhook_ids is None else " AND webhook_id = ANY(:ids)"
    async with sessions() as session:
        return int(
            await session.scalar(
                text(f"SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING'{only}"),  # noqa: S608 - a fixed clause
                {} if webhook_ids is None else {"ids": webhook_ids},
            )
        )


async def _counts(sessions) -> tuple[int, int]:
    """(committed status changes, their events in the outbox) so far."""
    async with sessions() as session:
        changes = await session.scalar(
            text("SELECT count(*) FROM order_status_changes WHERE actor_username = 'bench'")
        )
        published = await session.scalar(
            text("SELECT count(*) FROM outbox_events WHERE type = 'ORDER_STATUS_CHANGED'")
        )
        return int(changes), int(published)


async def _register(sessions, integration: Actor, urls: list[str]) -> list[int]:
    async with sessions() as session:
        ids = []
        for url in urls:
            hook = await webhooks.register(
                session=session,
                actor=integration,
                url=url,
                events=["ORDER_STATUS_CHANGED"],
                secret="bench-secret-0123456789",  # noqa: S106 - a bench receiver
                allow_private=True,
                sealer=SEALER[0],
            )
            ids.append(hook.id)
        await session.commit()
        return ids


async def _sql(sessions, statement: str) -> None:
    async with sessions() as session:
        await session.execute(text(statement))
        await session.commit()


async def _drain(sessions, pdp, env, url, paid, cursor, events, n) -> tuple[int, float]:
    """`events` status changes fanned out to every active webhook while the webhooks are
    paused; `n` workers started and idle; then the webhooks are un-paused and the clock runs
    until nothing is pending. Returns (deliveries, per second)."""
    await _sql(sessions, "UPDATE webhooks SET paused_until = now() + interval '1 day'")
    _generators(url, paid[cursor : cursor + events], rate=10_000, seconds=600)
    async with sessions() as session:  # fan out first: the drain is pure delivery
        while await webhooks.fan_out(session=session, pdp=pdp):
            await session.commit()
        await session.commit()
    queued = await _pending(sessions)
    workers = _workers(env, n)
    await asyncio.sleep(3)  # started, connected, idle
    began = time.perf_counter()
    await _sql(sessions, "UPDATE webhooks SET paused_until = NULL")
    while await _pending(sessions):  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    _stop(workers)
    return queued, queued / elapsed


async def main(
    rate: float, seconds: float, backlog: int, drain: bool = True, slow: float = 8.0
) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(50_000, Path(tmp)) as url:
        env = base_env(url, Path(tmp), ORDERGATE_WORKER_IN_SERVER="0")
        SEALER[:] = [sealer(load_settings(env))]
        engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        sessions = session_factory(engine)
        pdp = PolicyDecisionPoint(ROOT / "policies")
        integration = await _actor(sessions, "demo-integration", pdp)
        async with sessions() as session:
            paid = list(
                (await session.scalars(text("SELECT id FROM orders WHERE status = 'PAID'"))).all()
            )
        logs, receivers, ports = _receivers(tmp, "instant", WEBHOOKS, 0.0)
        fast_ids = await _register(
            sessions, integration, [f"http://127.0.0.1:{p}/hook" for p in ports[:LATENCY_WEBHOOKS]]
        )
        slow_logs, slow_receivers, slow_port = _receivers(tmp, "slow8", 1, slow)
        receivers += slow_receivers
        slow_ids = await _register(sessions, integration, [f"http://127.0.0.1:{slow_port[0]}/"])
        print(
            f"PostgreSQL, {len(paid)} PAID orders; on loopback a webhook answering at once and "
            f"one answering in {slow:g} s"
        )
        print(
            f"{'workers':>7} {'changes/s':>9} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
            f"{'committed':>9} {'events':>7} {'fast got':>8} {'slow got':>8}"
        )
        cursor = 0
        for n in (1, 2):
            for p in logs + slow_logs:
                p.write_text("")
            before = await _counts(sessions)
            workers = _workers(env, n)
            await asyncio.sleep(3)  # started, and caught up with nothing
            ids = paid[cursor : cursor + int(rate * seconds * 1.2)]
            _, achieved = _generators(url, ids, rate, seconds)
            cursor += len(ids)
            deadline = time.monotonic() + 60
            while await _pending(sessions, fast_ids) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            _stop(workers)
            after = await _counts(sessions)
            committed, published = after[0] - before[0], after[1] - before[1]
            arrived = _arrivals(logs)
            lat = sorted(
                at - dt.datetime.fromisoformat(body["at"]).timestamp() for at, body in arrived
            )
            distinct = len({body["id"] for _, body in arrived})
            print(
                f"{n:>7} {achieved:>9.1f} {statistics.median(lat):>7.3f} "
                f"{lat[int(len(lat) * 0.95)]:>7.3f} {lat[-1]:>7.3f} "
                f"{committed:>9} {published:>7} {distinct:>8} {len(_arrivals(slow_logs)):>8}"
            )
            # The slow receiver's backlog is not this run's business: clear it for the next.
            await _sql(
                sessions,
                f"DELETE FROM webhook_deliveries WHERE webhook_id IN ({slow_ids[0]}) "  # noqa: S608 - an id we made
                "AND status = 'PENDING'",
            )
        print(
            "target: the fast receiver's p95 <= 2 s beside the slow one; events == committed; "
            "fast got == committed"
        )
        await _sql(sessions, f"UPDATE webhooks SET disabled_at = now() WHERE id = {slow_ids[0]}")  # noqa: S608 - an id we made

        if not drain:
            return
        print("\nthroughput: a backlog drained by 1 and by 2 workers (already running)")
        await _register(
            sessions, integration, [f"http://127.0.0.1:{p}/hook" for p in ports[LATENCY_WEBHOOKS:]]
        )
        per_hook = backlog // WEBHOOKS
        instant = {}
        for n in (1, 2):
            queued, instant[n] = await _drain(sessions, pdp, env, url, paid, cursor, per_hook, n)
            cursor += per_hook
            print(f"  {WEBHOOKS} instant receivers, {n} worker(s): {queued} in {instant[n]:7.1f}/s")
        await _sql(sessions, "UPDATE webhooks SET disabled_at = now()")
        _, slow, slow_ports = _receivers(tmp, "slow", 4, 0.1)
        await _register(
            sessions,
            integration,
            [f"http://127.0.0.1:{p}/hook/{i}" for p in slow_ports for i in range(10)],
        )
        remote = {}
        for n in (1, 2):
            queued, remote[n] = await _drain(
                sessions, pdp, env, url, paid, cursor, backlog // 40, n
            )
            cursor += backlog // 40
            print(
                f"  40 receivers answering in 100 ms, {n} worker(s): {queued} in {remote[n]:7.1f}/s"
            )
        print(f"2 workers / 1, instant receivers: {instant[2] / instant[1]:.2f}")
        print(f"2 workers / 1, 100 ms receivers: {remote[2] / remote[1]:.2f} (target >= 1.60)")
        for r in receivers + slow:
            r.terminate()
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--no-drain", action="store_true", help="latency only")
    parser.add_argument("--slow", type=float, default=8.0, help="the slow receiver's seconds")
    parser.add_argument(
        "--domain-generator",
        action="store_true",
        help="commit changes through transitionOrder's service, audit included (CPU-bound here)",
    )
    arguments = parser.parse_args()
    LEAN = not arguments.domain_generator
    asyncio.run(
        main(
            arguments.rate,
            arguments.seconds,
            arguments.backlog,
            drain=not arguments.no_drain,
            slow=arguments.slow,
        )
    )
