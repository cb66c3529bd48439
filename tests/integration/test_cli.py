"""The `ordergate` command, run as a user would run it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from domain.access import POLICY_DIR
from tests.conftest import TOKEN_KEYS, Api


def _run(
    args: list[str],
    database_url: str,
    tmp_path: Path,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ORDERGATE_DATA_DIR": str(tmp_path),
        "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS,
        **(env or {}),
    }
    return subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "api.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_users_create_reads_the_password_from_stdin(database_url: str, tmp_path: Path) -> None:
    result = _run(
        ["users", "create", "--username", "li.na", "--role", "sales", "--channel", "JD"],
        database_url,
        tmp_path,
        stdin="a-long-enough-password\n",
    )

    assert result.returncode == 0, result.stderr
    assert "created li.na with roles sales" in result.stdout


def test_users_create_refuses_a_short_password_and_unknown_channel(
    database_url: str, tmp_path: Path
) -> None:
    short = _run(
        ["users", "create", "--username", "x", "--role", "cs"], database_url, tmp_path, "short\n"
    )
    channel = _run(
        ["users", "create", "--username", "y", "--role", "sales", "--channel", "AMAZON"],
        database_url,
        tmp_path,
        "a-long-enough-password\n",
    )

    assert short.returncode == 1
    assert "at least" in short.stderr
    assert channel.returncode == 1
    assert "AMAZON" in channel.stderr


def test_migrate_then_demo_on_a_new_database_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"

    migrate = _run(["migrate"], url, tmp_path)
    first = _run(["demo"], url, tmp_path)
    second = _run(["demo"], url, tmp_path)

    assert migrate.returncode == 0, migrate.stderr
    assert "200 orders added" in first.stdout
    assert "already loaded" in second.stdout
    assert (tmp_path / "demo-password").stat().st_mode & 0o777 == 0o600


def test_policy_explain_prints_the_decision_and_the_line(database_url: str, tmp_path: Path) -> None:
    result = _run(
        ["policy", "explain", "--role", "cs", "--field", "Order.grossMargin"],
        database_url,
        tmp_path,
    )

    assert result.returncode == 0
    assert "cs on Order.grossMargin: NONE" in result.stdout
    assert "p, cs, Order.grossMargin, read, deny" in result.stdout


def test_policy_check_fails_on_a_typo(database_url: str, tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    for name in ("model.conf", "policy.csv"):
        (policy_dir / name).write_text((POLICY_DIR / name).read_text())
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("p, cs, Order.totl, read, allow\n")

    good = _run(["policy", "check"], database_url, tmp_path)
    bad = _run(
        ["policy", "check"], database_url, tmp_path, env={"ORDERGATE_POLICY_DIR": str(policy_dir)}
    )

    assert good.returncode == 0, good.stdout
    assert bad.returncode == 1
    assert "Order.totl" in bad.stdout


def test_demo_orders_fills_the_database_to_the_number_asked_once(
    any_database_url: str, tmp_path: Path
) -> None:
    first = _run(["demo", "--orders", "1500"], any_database_url, tmp_path)
    again = _run(["demo", "--orders", "1500"], any_database_url, tmp_path)
    refused = _run(["demo", "--orders", "0"], any_database_url, tmp_path)

    assert first.returncode == 0, first.stderr
    assert "bulk: 1300 orders added" in first.stdout  # the database held 200 demo orders
    assert "bulk: 0 orders added" in again.stdout
    assert refused.returncode == 2
    assert "--orders takes a number" in refused.stderr

    async def check() -> tuple[int, int, int]:
        from sqlalchemy import text

        from domain.audit import service as audit_service
        from domain.audit.keys import CheckpointKey
        from domain.db import create_engine, session_factory

        engine = create_engine(any_database_url)
        try:
            async with session_factory(engine)() as session:
                orders = await session.scalar(text("SELECT count(*) FROM orders"))
                orphans = await session.scalar(
                    text(
                        "SELECT count(*) FROM orders o WHERE NOT EXISTS "
                        "(SELECT 1 FROM order_lines l WHERE l.order_id = o.id)"
                    )
                )
                key = CheckpointKey.generate_into(tmp_path / "verify.pem")
                chain = await audit_service.verify(session=session, key=key)
                return orders, orphans, int(chain.ok)
        finally:
            await engine.dispose()

    assert asyncio.run(check()) == (1500, 0, 1)


def test_the_default_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Personal data, password hashes and webhook secrets live in it and its WAL: a new
    database and its side files are 0600, whatever the umask (issue #30, L8)."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"ORDERGATE_DATA_DIR": str(data), "ORDERGATE_TOKEN_KEYS": TOKEN_KEYS}

    migrated = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert migrated.returncode == 0, migrated.stderr
    files = [p for p in data.glob("ordergate.db*") if p.is_file()]
    assert data / "ordergate.db" in files
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: "0o600" for p in files
    }


async def test_audit_export_escapes_control_characters_an_anonymous_client_sent(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    """U+009B is a terminal's CSI: a User-Agent carrying it, printed raw by `audit export`,
    would act on the operator's terminal (issue #30, L7)."""
    agent = "evil\x9b2J\x1b[31mred"
    await api.client.post(
        "/graphql",
        json={
            "query": 'mutation { login(username: "demo-cs", password: "wrong!") { accessToken } }'
        },
        headers={"user-agent": agent.encode("latin-1")},
    )

    exported = _run(["audit", "export"], database_url, tmp_path)

    assert exported.returncode == 0, exported.stderr
    assert "evil" in exported.stdout
    assert "\x9b" not in exported.stdout
    assert "\x1b" not in exported.stdout
    assert "evil\\x9b2J\\x1b[31mred" in exported.stdout


def test_worker_once_without_its_database_says_so_in_one_line_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    """Issue #29: `worker --once` exited 0 after a traceback, and a worker whose database was
    away logged a full traceback every round. It now checks its database before its first
    round, as `serve` does, and refuses in one line (exit 2)."""
    nowhere = "postgresql+asyncpg://postgres@127.0.0.1:1/ordergate"  # nothing listens on 1

    ran = _run(
        ["worker", "--once"],
        nowhere,
        tmp_path,
        env={
            "ORDERGATE_DB_CONNECT_TIMEOUT_SECONDS": "1",
            "ORDERGATE_DB_START_TIMEOUT_SECONDS": "1",
        },
    )

    assert ran.returncode == 2
    assert "Traceback" not in ran.stderr + ran.stdout
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("ordergate: DATABASE_URL: the database did not answer within 1 s")
