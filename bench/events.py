"""Commit-to-delivery latency of order events, and delivery throughput with 1 and 2 workers.

PostgreSQL, 50,000 orders. Four webhooks (one loopback receiver each, in a process of its
own) subscribe to ORDER_STATUS_CHANGED. Status changes are committed at 200 a second through
the domain service (ops, audited, with their outbox event), while `ordergate worker`
processes deliver; each receiver notes when each event arrives, against the event's `at`
(the commit's clock on this machine). Then a backlog of deliveries is drained by 1 and by 2
workers, for the throughput ratio. Targets: p95 <= 2 s at 200/s; 2 workers / 1 >= 1.6.

    .venv/bin/python bench/events.py [--rate 200] [--seconds 10] [--backlog 1500]
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
from bench._live import PY, ROOT, base_env, database
from domain.access import PolicyDecisionPoint
from domain.actor import Actor
from domain.db import create_engine, session_factory
from domain.events import webhooks
from domain.orders import service as orders
from domain.orders.rules import OrderStatus
from domain.users.models import User

WEBHOOKS = 4


def _receive(port_out, log_path: str) -> None:
    """A receiver process: appends `event id, arrival time` per request to its log."""
    sink = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            sink.write(f"{time.time()} {body.decode()}\n")
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


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


async def _change(sessions, ops: Actor, ids: list[int], rate: float, seconds: float) -> int:
    """PAID -> PICKING at `rate` a second, each its own transaction."""
    interval, done, started = 1 / rate, 0, time.perf_counter()
    for order_id in ids:
        if time.perf_counter() - started >= seconds:
            break
        async with sessions() as session:
            await orders.transition(
                session=session, actor=ops, order_id=order_id, to=OrderStatus.PICKING
            )
            await session.commit()
        done += 1
        delay = started + done * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return done


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


async def _pending(sessions) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                text("SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING'")
            )
        )


async def main(rate: float, seconds: float, backlog: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(50_000, Path(tmp)) as url:
        env = base_env(url, Path(tmp), ORDERGATE_WORKER_IN_SERVER="0")
        engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        sessions = session_factory(engine)
        pdp = PolicyDecisionPoint(ROOT / "policies")
        ops = await _actor(sessions, "demo-ops", pdp)
        integration = await _actor(sessions, "demo-integration", pdp)
        async with sessions() as session:
            paid = list(
                (await session.scalars(text("SELECT id FROM orders WHERE status = 'PAID'"))).all()
            )
        logs = [Path(tmp) / f"receiver-{i}.log" for i in range(WEBHOOKS)]
        queue: multiprocessing.Queue = multiprocessing.Queue()
        receivers = [
            multiprocessing.Process(target=_receive, args=(queue, str(p)), daemon=True)
            for p in logs
        ]
        for r in receivers:
            r.start()
        async with sessions() as session:
            for _ in receivers:
                await webhooks.register(
                    session=session,
                    actor=integration,
                    url=f"http://127.0.0.1:{queue.get(timeout=30)}/hook",
                    events=["ORDER_STATUS_CHANGED"],
                    secret="bench-secret-0123456789",  # noqa: S106 - a bench receiver
                    allow_private=True,
                )
            await session.commit()
        print(f"PostgreSQL, {len(paid)} PAID orders; {WEBHOOKS} webhooks on loopback")
        print(f"{'workers':>7} {'changes/s':>9} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
        cursor = 0
        for n in (1, 2):
            for p in logs:
                p.write_text("")
            workers = _workers(env, n)
            await asyncio.sleep(2)  # started, and caught up with nothing
            ids = paid[cursor : cursor + int(rate * seconds * 1.2)]
            began = time.perf_counter()
            done = await _change(sessions, ops, ids, rate, seconds)
            achieved = done / (time.perf_counter() - began)
            cursor += done
            deadline = time.monotonic() + 60
            while await _pending(sessions) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            _stop(workers)
            lat = sorted(
                at - dt.datetime.fromisoformat(body["at"]).timestamp()
                for at, body in _arrivals(logs)
            )
            print(
                f"{n:>7} {achieved:>9.1f} {statistics.median(lat):>7.3f} "
                f"{lat[int(len(lat) * 0.95)]:>7.3f} {lat[-1]:>7.3f}"
                f"   ({len(lat)} deliveries)"
            )
        # Throughput: a backlog of deliveries, drained by 1 worker and by 2.
        rates = {}
        for n in (1, 2):
            async with sessions() as session:
                for order_id in paid[cursor : cursor + backlog // WEBHOOKS]:
                    await orders.transition(
                        session=session, actor=ops, order_id=order_id, to=OrderStatus.PICKING
                    )
                    await session.commit()
            cursor += backlog // WEBHOOKS
            async with sessions() as session:  # fan out first: the drain is pure delivery
                while await webhooks.fan_out(session=session, pdp=pdp):
                    await session.commit()
                await session.commit()
            queued = await _pending(sessions)
            began = time.perf_counter()
            workers = _workers(env, n)
            while await _pending(sessions):  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.05)
            rates[n] = queued / (time.perf_counter() - began)
            _stop(workers)
            print(f"backlog of {queued} deliveries, {n} worker(s): {rates[n]:7.1f}/s")
        print(f"2 workers / 1: {rates[2] / rates[1]:.2f} (target >= 1.60)")
        for r in receivers:
            r.terminate()
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backlog", type=int, default=1500)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rate, arguments.seconds, arguments.backlog))
