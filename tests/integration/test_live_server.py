"""The real server under uvicorn: hot policy reload by file watch and by SIGHUP."""

from __future__ import annotations

import contextlib
import json
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
from tests.conftest import DEMO_PASSWORD, TOKEN_KEYS, db_id
from tests.support import wait_until_healthy

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
    # The server's log goes to a file: a pipe nobody reads fills up under load, and the
    # server then blocks writing its access log.
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(base, process, tmp_path / "serve.log")
        except AssertionError as exc:  # it refused to start, or never answered: say why
            pytest.fail(str(exc))
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        log.close()


def _tail(path: Path, lines: int = 5) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def _warehouse_token(base: str) -> str:
    login = httpx.post(
        f"{base}/graphql",
        json={
            "query": 'mutation($p: String!) { login(username: "demo-warehouse", password: $p) '
            "{ accessToken } }",
            "variables": {"p": DEMO_PASSWORD},
        },
        timeout=30,
    ).json()
    assert "errors" not in login, login
    return login["data"]["login"]["accessToken"]


def _total_as_warehouse(base: str, token: str) -> dict:
    # One login per test: polling by logging in again would run into the login rate limit
    # whenever the reload takes a few seconds.
    return httpx.post(
        f"{base}/graphql",
        json={"query": QUERY},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ).json()


def _grant_total_to_warehouse(policy_dir: Path) -> None:
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("p, warehouse, Order.total, read, allow\n")


def _wait_for(check: Callable[[], bool], seconds: float = 30) -> bool:
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
        token = _warehouse_token(base)
        before = _total_as_warehouse(base, token)

        _grant_total_to_warehouse(policy_dir)

        assert before["errors"][0]["extensions"]["field"] == "Order.total"
        assert _wait_for(lambda: "errors" not in _total_as_warehouse(base, token))


def test_sighup_reloads_the_policy(database_url: str, tmp_path: Path) -> None:
    policy_dir = _policy_dir(tmp_path)
    with _serve(database_url, tmp_path, policy_dir, poll="0") as (base, process):
        token = _warehouse_token(base)
        _grant_total_to_warehouse(policy_dir)
        time.sleep(0.5)
        unchanged = _total_as_warehouse(base, token)

        process.send_signal(signal.SIGHUP)

        assert "errors" in unchanged
        assert _wait_for(lambda: "errors" not in _total_as_warehouse(base, token))


def _login(base: str, role: str) -> str:
    answer = httpx.post(
        f"{base}/graphql",
        json={
            "query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
            "{ accessToken } }",
            "variables": {"u": f"demo-{role}", "p": DEMO_PASSWORD},
        },
        timeout=30,
    ).json()
    return answer["data"]["login"]["accessToken"]


def _gql(base: str, token: str, query: str, variables: dict | None = None) -> dict:
    return httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ).json()


def test_an_interrupted_download_can_be_fetched_once_more(
    database_url: str, tmp_path: Path
) -> None:
    with _serve(database_url, tmp_path, POLICY_DIR, poll="0") as (base, _):
        finance = _login(base, "finance")
        made = _gql(
            base,
            finance,
            'mutation { requestExport(input: {entity: STOCK, fields: ["sku"], reason: "x"}) '
            "{ id } }",
        )
        export_id = made["data"]["requestExport"]["id"]
        for role in ("approver", "compliance"):
            _gql(
                base,
                _login(base, role),
                "mutation($id: ID!) { approveExport(id: $id) { status } }",
                {"id": export_id},
            )
        one = "query($id: ID!) { exportRequest(id: $id) { status downloadUrl } }"
        assert _wait_for(
            lambda: (
                _gql(base, finance, one, {"id": export_id})["data"]["exportRequest"]["status"]
                == "READY"
            )
        )
        url = _gql(base, finance, one, {"id": export_id})["data"]["exportRequest"]["downloadUrl"]
        # A large file, so the transfer is still going when the client drops it.
        [produced] = (tmp_path / "exports").glob(f"export-{db_id(export_id)}-*.csv")
        with produced.open("a") as file:
            file.write(("#" * 99 + "\n") * 80_000)

        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as raw:
            raw.sendall(
                f"GET {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {finance}\r\n\r\n".encode()
            )
            first = raw.recv(65536)
        given_back = _wait_for(
            lambda: (
                _gql(base, finance, one, {"id": export_id})["data"]["exportRequest"]["status"]
                == "READY"
            )
        )
        again = httpx.get(
            f"{base}{url}", headers={"authorization": f"Bearer {finance}"}, timeout=30
        )
        third = httpx.get(
            f"{base}{url}", headers={"authorization": f"Bearer {finance}"}, timeout=30
        )
        log = _gql(
            base,
            _login(base, "compliance"),
            '{ auditEvents(first: 10, filter: {action: "export.download"}) '
            "{ edges { node { outcome details } } } }",
        )

        assert first.startswith(b"HTTP/1.1 200")
        assert given_back
        assert again.status_code == 200
        assert len(again.content) == produced.stat().st_size
        assert third.status_code == 410
        outcomes = [e["node"]["outcome"] for e in log["data"]["auditEvents"]["edges"]]
        assert "failure" in outcomes  # the interrupted attempt
        interrupted = next(
            e["node"]["details"]
            for e in log["data"]["auditEvents"]["edges"]
            if e["node"]["outcome"] == "failure" and e["node"]["details"].get("interrupted")
        )
        assert interrupted["downloadGivenBack"] is True
        assert interrupted["sentBytes"] < produced.stat().st_size


def test_every_line_the_server_logs_is_json(database_url: str, tmp_path: Path) -> None:
    """Issue #29: lines from the libraries under the app (uvicorn, websockets, strawberry)
    had no handler and fell through to Python's last resort: plain text and multi-line
    tracebacks in the middle of the JSON log. A malformed request makes uvicorn complain;
    that line is JSON like the rest, and so is every other line the server wrote."""
    with _serve(database_url, tmp_path, POLICY_DIR, poll="0") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(b"GARBAGE \x00\x01 nonsense\r\n\r\n")
            answer = raw.recv(200)
        log = tmp_path / "serve.log"
        assert _wait_for(lambda: "Invalid HTTP request" in log.read_text(errors="replace"))
    lines = log.read_text(errors="replace").splitlines()

    assert answer.startswith(b"HTTP/1.1 400")
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == []
    complaint = next(json.loads(x) for x in lines if "Invalid HTTP request" in x)
    assert (complaint["logger"], complaint["level"]) == ("uvicorn.error", "warning")
