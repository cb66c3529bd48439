"""What `ordergate serve` checks before it listens, so that a misconfigured or unmigrated
deployment stops with one clear line instead of serving errors (or a traceback).

- the settings themselves (`api/settings.py`), including the database URL's kind;
- the data directory can be written, the policy directory holds a policy that passes
  `policy check`, the audit checkpoint key can be read;
- the database answers — retried for `ORDERGATE_DB_START_TIMEOUT_SECONDS`, then give up —
  and is at the migration head this code expects (unless `--allow-unmigrated`).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from api.outage import is_unavailable
from api.settings import Settings, SettingsError, checkpoint_key, sealer
from domain.access import ROLES, PolicyDecisionPoint, PolicyInvalid
from domain.db import create_engine, database_timeouts
from domain.migrations import current_revision, head_revision

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


class StartupError(Exception):
    """One line naming the setting at fault; `serve` prints it and exits non-zero."""


def check_database_url(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StartupError(
            "DATABASE_URL cannot be parsed; use sqlite:///path/to/file.db or "
            "postgresql://user@host:5432/db"
        ) from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise StartupError(
            f"DATABASE_URL names {parsed.get_backend_name()!r}; ordergate runs on SQLite "
            "(sqlite:///…) or PostgreSQL (postgresql://…)"
        )


def check_files(settings: Settings) -> None:
    data = settings.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"ORDERGATE_DATA_DIR {data} cannot be written ({exc.strerror or exc})"
        ) from None
    policy = settings.policy_dir
    missing = [n for n in ("model.conf", "policy.csv") if not (policy / n).is_file()]
    if missing:
        raise StartupError(f"ORDERGATE_POLICY_DIR {policy} has no {' or '.join(missing)}")
    try:
        problems = PolicyDecisionPoint(policy).check(ROLES)
    except PolicyInvalid as exc:
        problems = exc.problems
    if problems:
        raise StartupError(
            f"ORDERGATE_POLICY_DIR {policy}: the policy fails its check ({problems[0]}"
            + (f", and {len(problems) - 1} more" if len(problems) > 1 else "")
            + "); see `ordergate policy check`"
        )
    try:
        sealer(settings)
    except SettingsError as exc:
        raise StartupError(f"ORDERGATE_SECRETS_KEY_FILE: {exc}") from None
    except (ValueError, OSError) as exc:
        raise StartupError(f"ORDERGATE_SECRETS_KEY_FILE: {exc}") from None
    try:
        checkpoint_key(settings)
    except SettingsError as exc:
        raise StartupError(f"ORDERGATE_AUDIT_KEY_FILE: {exc}") from None
    except (ValueError, TypeError, OSError):
        raise StartupError(
            f"ORDERGATE_AUDIT_KEY_FILE {settings.audit_key_file} is not an Ed25519 private "
            "key in PEM"
        ) from None


async def database_revision(settings: Settings, *, wait_seconds: float) -> str | None:
    """The database's migration revision, waiting up to `wait_seconds` for it to answer."""
    engine = create_engine(
        settings.database_url,
        **database_timeouts(
            settings.database_url,
            connect=settings.db_connect_timeout_seconds,
            statement=settings.db_statement_timeout_seconds,
            pool=settings.db_pool_timeout_seconds,
        ),
    )
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                async with engine.connect() as connection:
                    return await connection.run_sync(current_revision)
            except Exception as exc:
                if not is_unavailable(exc) or time.monotonic() >= deadline:
                    raise StartupError(
                        f"DATABASE_URL: the database did not answer within {wait_seconds:g} s "
                        f"({type(exc).__name__}); set ORDERGATE_DB_START_TIMEOUT_SECONDS to "
                        "wait longer"
                    ) from None
                await asyncio.sleep(1)
    finally:
        await engine.dispose()


def check_before_serving(settings: Settings, *, allow_unmigrated: bool = False) -> dict[str, Any]:
    """Every check above; returns what the startup log line reports."""
    check_database_url(settings.database_url)
    check_files(settings)
    revision = asyncio.run(
        database_revision(settings, wait_seconds=settings.db_start_timeout_seconds)
    )
    expected = head_revision()
    if revision != expected and not allow_unmigrated:
        raise StartupError(
            f"database is at revision {revision or 'none (empty)'}, code expects {expected}: "
            "run ordergate migrate"
        )
    return {"revision": revision, "expected": expected}
