"""`ordergate serve` refuses to start on a bad configuration or an unmigrated database with
one line naming the setting, and a non-zero exit; `/readyz` says whether migrations are at head.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from domain.audit.keys import CheckpointKey
from domain.migrations import head_revision
from domain.sealed import Sealer
from tests.conftest import settings_for
from tests.integration.test_cli import _run


def _refused(done: object, *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ordergate: ")
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://root@127.0.0.1/test", "DATABASE_URL names 'mysql'"),
        ("::not a url::", "DATABASE_URL cannot be parsed"),
    ],
)
def test_an_unsupported_or_unparsable_database_url(tmp_path: Path, url: str, needle: str) -> None:
    done = _run(["serve", "--port", "0"], url, tmp_path)

    _refused(done, needle)


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["worker", "--once"]])
def test_an_unmigrated_database_is_refused(tmp_path: Path, command: list[str]) -> None:
    """By `serve` and (issue #29) by the worker, which used to start and log a traceback a
    round."""
    empty = f"sqlite:///{tmp_path / 'empty.db'}"

    done = _run(command, empty, tmp_path)

    _refused(done, "database is at revision none", f"code expects {head_revision()}", "migrate")


def test_a_missing_policy_directory(database_url: str, tmp_path: Path) -> None:
    done = _run(
        ["serve"], database_url, tmp_path, env={"ORDERGATE_POLICY_DIR": str(tmp_path / "nope")}
    )

    _refused(done, "ORDERGATE_POLICY_DIR", "model.conf")


def test_a_data_directory_that_cannot_be_written(database_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")

    done = _run(["serve"], database_url, blocker / "data")

    _refused(done, "ORDERGATE_DATA_DIR", "cannot be written")


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "does not exist"), (b"garbage", "is not an Ed25519 private key in PEM")],
)
def test_production_audit_key_file_missing_or_garbage(
    database_url: str, tmp_path: Path, content: bytes | None, needle: str
) -> None:
    key = tmp_path / "audit.pem"
    if content is not None:
        key.write_bytes(content)
    Sealer.write_new_key(tmp_path / "secrets.key")

    done = _run(
        ["serve"],
        database_url,
        tmp_path,
        env={
            "ORDERGATE_ENV": "production",
            "ORDERGATE_AUDIT_KEY_FILE": str(key),
            "ORDERGATE_SECRETS_KEY_FILE": str(tmp_path / "secrets.key"),
        },
    )

    _refused(done, "ORDERGATE_AUDIT_KEY_FILE", needle)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("unset", "needs ORDERGATE_SECRETS_KEY_FILE"),
        (None, "does not exist"),
        (b"not a key\n", "not a list of Fernet keys"),
    ],
)
def test_production_secrets_key_missing_or_garbage(
    database_url: str, tmp_path: Path, content: bytes | str | None, needle: str
) -> None:
    """Webhook secrets are sealed under this key (issue #30): production does not start
    without one it can use, and says which setting and why in one line."""
    CheckpointKey.generate_into(tmp_path / "audit.pem")
    key = tmp_path / "secrets.key"
    env = {"ORDERGATE_ENV": "production", "ORDERGATE_AUDIT_KEY_FILE": str(tmp_path / "audit.pem")}
    if content != "unset":
        env["ORDERGATE_SECRETS_KEY_FILE"] = str(key)
    if isinstance(content, bytes):
        key.write_bytes(content)

    done = _run(["serve"], database_url, tmp_path, env=env)

    _refused(done, "ORDERGATE_SECRETS_KEY_FILE", needle)


def test_an_unreachable_database_is_retried_for_a_bounded_time(tmp_path: Path) -> None:
    started = time.monotonic()

    done = _run(
        ["serve"],
        "postgresql://postgres@127.0.0.1:1/nothing",
        tmp_path,
        env={"ORDERGATE_DB_START_TIMEOUT_SECONDS": "2"},
    )

    _refused(done, "did not answer within 2 s", "ORDERGATE_DB_START_TIMEOUT_SECONDS")
    assert 2 <= time.monotonic() - started < 20


async def test_readyz_reports_migrations_at_head(database_url: str, tmp_path: Path) -> None:
    from api.app import create_app

    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    answers = {}
    for name, url in (("migrated", database_url), ("empty", empty)):
        app = create_app(settings_for(url, tmp_path))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers[name] = await client.get("/readyz")
        await app.state.runtime.engine.dispose()

    assert answers["migrated"].status_code == 200
    assert answers["migrated"].json()["revision"] == head_revision()
    assert answers["empty"].status_code == 503
    assert "run ordergate migrate" in answers["empty"].json()["reason"]


def test_an_unknown_mode_is_refused(database_url: str, tmp_path: Path) -> None:
    done = _run(["serve"], database_url, tmp_path, env={"ORDERGATE_ENV": "prod"})

    assert done.returncode == 2
    assert "ORDERGATE_ENV is one of development, test, production, not 'prod'" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("ORDERGATE_TRUSTED_PROXIES", "10.0.0.0/33", "ORDERGATE_TRUSTED_PROXIES"),
        ("ORDERGATE_TIMEZONE", "Mars/Olympus", "unknown ORDERGATE_TIMEZONE"),
    ],
)
def test_malformed_settings_are_one_line(
    database_url: str, tmp_path: Path, variable: str, value: str, needle: str
) -> None:
    done = _run(["serve"], database_url, tmp_path, env={variable: value})

    _refused(done, needle)


def test_the_cli_has_manners(database_url: str, tmp_path: Path) -> None:
    version = _run(["--version"], database_url, tmp_path)
    unknown_role = _run(
        ["policy", "explain", "--role", "root", "--field", "Order.total"], database_url, tmp_path
    )
    unknown_field = _run(
        ["policy", "explain", "--role", "cs", "--field", "Order.totl"], database_url, tmp_path
    )
    bad_channel = _run(
        [
            "users",
            "create",
            "--username",
            "x.y",
            "--role",
            "sales",
            "--channel",
            "AMAZON",
            "--password-stdin",
        ],
        database_url,
        tmp_path,
        stdin="a-long-enough-password\n",
    )
    no_password = _run(
        ["users", "create", "--username", "x.z", "--role", "cs"], database_url, tmp_path
    )

    assert version.returncode == 0
    assert version.stdout.startswith("ordergate ")
    assert unknown_role.returncode == 2
    assert "unknown role 'root'" in unknown_role.stderr
    assert unknown_field.returncode == 2
    assert "is not a governed Type.field" in unknown_field.stderr
    assert "channels: JD, PINDUODUO, TAOBAO, WEB" in bad_channel.stderr
    assert "reading the password for x.z from standard input" in no_password.stderr
    assert "no password on standard input" in no_password.stderr
    assert no_password.returncode != 0
