"""`ordergate serve --workers N`: several app processes, housekeeping in exactly one of them,
and a new leader when that one is killed (kill -9, a real process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN_KEYS
from tests.integration.test_live_server import _free_port

LEADS = "housekeeping: this process leads"


def _leaders(log: Path) -> list[int]:
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if LEADS in line:
            found.append(json.loads(line)["pid"])
    return found


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail("timed out")


def _start_two_workers(database_url: str, tmp_path: Path, port: int, sink) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ORDERGATE_DATA_DIR": str(tmp_path),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
    }
    return subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=sink,
        start_new_session=True,
    )


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_two_workers_serve_and_one_leads_the_housekeeping(
    any_database_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = _start_two_workers(any_database_url, tmp_path, port, sink)
        base = f"http://127.0.0.1:{port}"
        try:

            def healthy() -> bool:
                return _healthy(base)

            _wait(healthy)
            workers = _children(server.pid)
            # uvicorn's supervisor has the two app processes as children (plus, on some
            # Pythons, a resource tracker that serves nothing).
            _wait(lambda: len(_leaders(log)) >= 1)
            time.sleep(2)  # the second worker has had its chance to claim the lead too
            [leader] = _leaders(log)
            assert leader in workers
            assert sum(healthy() for _ in range(20)) == 20

            os.kill(leader, signal.SIGKILL)  # mid-whatever: the lock dies with its holder
            _wait(lambda: len(_leaders(log)) >= 2)
            _wait(healthy)
            # Read before shutting down: on SIGTERM the second leader lets go of the lock and
            # the worker uvicorn respawned for the killed one may lead for a moment.
            first, second = _leaders(log)[:2]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    assert first == leader
    assert second != first


def _listeners(port: int) -> list[set[int]]:
    """The processes holding each socket listening on `port` (one set per socket)."""
    out = subprocess.run(  # noqa: S603
        ["ss", "-Hltnp", f"sport = :{port}"],  # noqa: S607 - iproute2's ss, from PATH
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [{int(p) for p in re.findall(r"pid=(\d+)", line)} for line in out.splitlines()]


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing is checked on Linux")
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's `ss` to list sockets")
def test_each_worker_listens_on_its_own_socket_and_a_replacement_takes_it_over(
    database_url: str, tmp_path: Path
) -> None:
    """Workers sharing one socket let one of them take every kept-alive connection; with a
    socket each, the kernel spreads connections across them. A killed worker's replacement
    listens on the socket it left."""
    port = _free_port()
    server = _start_two_workers(database_url, tmp_path, port, subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            return _healthy(base)

        _wait(healthy)
        _wait(lambda: len(_listeners(port)) == 2 and all(_listeners(port)))
        workers = set(_children(server.pid))
        owners = [holders & workers for holders in _listeners(port)]
        assert [len(o) for o in owners] == [1, 1], owners
        assert owners[0] != owners[1]

        [victim] = owners[0]
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = [holders & set(_children(server.pid)) for holders in _listeners(port)]
            return len(now) == 2 and all(len(o) == 1 for o in now) and {victim} not in now

        _wait(replaced)
        _wait(healthy)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
