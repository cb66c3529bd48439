"""The real server under uvicorn: hot policy reload by file watch and by SIGHUP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from domain.access import POLICY_DIR
from tests.conftest import DEMO_PASSWORD, TOKEN_KEYS

QUERY = "{ orders(first: 1) { edges { node { total } } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(
    database_url: str, tmp_path: Path, policy_dir: Path, poll: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ORDERGATE_DATA_DIR": str(tmp_path),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
        "ORDERGATE_POLICY_DIR": str(policy_dir),
        "ORDERGATE_POLICY_POLL_SECONDS": poll,
    }
    process = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not start")
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def _policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def _total_as_warehouse(base: str) -> dict:
    login = httpx.post(
        f"{base}/graphql",
        json={
            "query": 'mutation($p: String!) { login(username: "demo-warehouse", password: $p) '
            "{ accessToken } }",
            "variables": {"p": DEMO_PASSWORD},
        },
        timeout=10,
    ).json()
    token = login["data"]["login"]["accessToken"]
    return httpx.post(
        f"{base}/graphql",
        json={"query": QUERY},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    ).json()


def _grant_total_to_warehouse(policy_dir: Path) -> None:
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("p, warehouse, Order.total, read, allow\n")


def _wait_for(check: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_saved_policy_change_takes_effect_without_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    policy_dir = _policy_dir(tmp_path)
    with _serve(database_url, tmp_path, policy_dir, poll="0.2") as (base, _):
        before = _total_as_warehouse(base)

        _grant_total_to_warehouse(policy_dir)

        assert before["errors"][0]["extensions"]["field"] == "Order.total"
        assert _wait_for(lambda: "errors" not in _total_as_warehouse(base))


def test_sighup_reloads_the_policy(database_url: str, tmp_path: Path) -> None:
    policy_dir = _policy_dir(tmp_path)
    with _serve(database_url, tmp_path, policy_dir, poll="0") as (base, process):
        _grant_total_to_warehouse(policy_dir)
        time.sleep(0.5)
        unchanged = _total_as_warehouse(base)

        process.send_signal(signal.SIGHUP)

        assert "errors" in unchanged
        assert _wait_for(lambda: "errors" not in _total_as_warehouse(base))
