"""`ordergate serve --workers N`: several app processes, housekeeping in exactly one of them,
and a new leader when that one is killed (kill -9, a real process)."""

from __future__ import annotations

import json
import os
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


def test_two_workers_serve_and_one_leads_the_housekeeping(
    any_database_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "DATABASE_URL": any_database_url,
        "ORDERGATE_DATA_DIR": str(tmp_path),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
    }
    with log.open("wb") as sink:
        server = subprocess.Popen(  # noqa: S603 - our own server
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def healthy() -> bool:
                try:
                    return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

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
            _wait(lambda: len(_leaders(log)) == 2)
            _wait(healthy)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    first, second = _leaders(log)
    assert second != first
