"""Tamper evidence: whatever is done to the stored log behind the product's back, `verify`
names the first bad sequence number, and the database refuses edits in the first place."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import _checkpoint
from domain.actor import SYSTEM_ORIGIN
from domain.audit import service as audit
from domain.audit.chain import compute_hash
from domain.audit.keys import CheckpointKey
from domain.audit.service import Subject
from domain.db import create_engine, session_factory
from tests.conftest import Api
from tests.integration.test_cli import _run

WHO = Subject(7, "zhang.wei", ("ops",), SYSTEM_ORIGIN)


@pytest.fixture
def key(tmp_path: Path) -> CheckpointKey:
    return CheckpointKey.generate_into(tmp_path / "audit-key.pem")


@pytest.fixture
async def session(any_database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(any_database_url)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def _append(session: AsyncSession, n: int) -> None:
    for i in range(n):
        await audit.record(
            session=session,
            who=WHO,
            action="test.event",
            target_type="Order",
            target_id=i,
            details={"i": i, "名字": "测试"},
        )
    await session.commit()


async def _tamper(session: AsyncSession, *statements: str) -> None:
    """What someone with direct database access could do: lift the guard, then edit."""
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        await session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
    else:
        await session.execute(text("DROP TRIGGER audit_events_no_update"))
        await session.execute(text("DROP TRIGGER audit_events_no_delete"))
    for statement in statements:
        await session.execute(text(statement))
    await session.commit()


async def _base(session: AsyncSession) -> int:
    """The demo load wrote events already; tamper relative to where the test's begin."""
    return int(await session.scalar(text("SELECT seq FROM audit_head")))


async def test_an_untouched_chain_verifies(session: AsyncSession, key: CheckpointKey) -> None:
    await _append(session, 30)
    await audit.create_checkpoint(session=session, key=key)
    await session.commit()

    result = await audit.verify(session=session, key=key)

    assert result.ok, result.problems
    assert result.checkpoints == 1
    assert result.last_checkpoint["seq"] == result.head_seq


async def test_an_edited_event_is_named(session: AsyncSession, key: CheckpointKey) -> None:
    base = await _base(session)
    await _append(session, 10)

    await _tamper(
        session, f"UPDATE audit_events SET username = 'someone.else' WHERE seq = {base + 4}"
    )
    result = await audit.verify(session=session, key=key)

    assert not result.ok
    assert result.first_bad_seq == base + 4


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(
    session: AsyncSession, key: CheckpointKey
) -> None:
    base = await _base(session)
    await _append(session, 10)
    target = base + 4
    [row] = [e async for e in audit.iter_events(session) if e["seq"] == target]
    forged = {**row, "details": json.dumps({"i": 999})}

    new_hash = compute_hash(row["prev_hash"], forged)
    await _tamper(
        session,
        f"UPDATE audit_events SET details = '{forged['details']}', hash = '{new_hash}' "
        f"WHERE seq = {target}",
    )
    result = await audit.verify(session=session, key=key)

    assert result.first_bad_seq == target + 1


async def test_a_deleted_event_is_named(session: AsyncSession, key: CheckpointKey) -> None:
    base = await _base(session)
    await _append(session, 10)

    await _tamper(session, f"DELETE FROM audit_events WHERE seq = {base + 6}")
    result = await audit.verify(session=session, key=key)

    assert result.first_bad_seq == base + 6


async def test_reordered_events_are_named(session: AsyncSession, key: CheckpointKey) -> None:
    base = await _base(session)
    await _append(session, 10)
    a, b = base + 3, base + 5

    await _tamper(
        session,
        f"UPDATE audit_events SET seq = -1 WHERE seq = {a}",
        f"UPDATE audit_events SET seq = {a} WHERE seq = {b}",
        f"UPDATE audit_events SET seq = {b} WHERE seq = -1",
    )
    result = await audit.verify(session=session, key=key)

    assert result.first_bad_seq == a


async def test_a_truncated_tail_is_caught_by_the_last_checkpoint(
    session: AsyncSession, key: CheckpointKey
) -> None:
    base = await _base(session)
    await _append(session, 10)
    await audit.create_checkpoint(session=session, key=key)
    await session.commit()

    # Cut the tail and make the head agree, as a careful intruder would.
    keep = base + 7
    last_kept = await session.scalar(text(f"SELECT hash FROM audit_events WHERE seq = {keep}"))
    await _tamper(
        session,
        f"DELETE FROM audit_events WHERE seq > {keep}",
        f"UPDATE audit_head SET seq = {keep}, hash = '{last_kept}'",
    )
    result = await audit.verify(session=session, key=key)

    assert not result.ok
    assert result.first_bad_seq == keep + 1
    assert any("truncated" in p for p in result.problems)


async def test_deleting_checkpoints_too_is_caught_by_an_external_copy(
    session: AsyncSession, key: CheckpointKey
) -> None:
    base = await _base(session)
    await _append(session, 10)
    checkpoint = await audit.create_checkpoint(session=session, key=key)
    await session.commit()
    kept_elsewhere = [audit.checkpoint_record(checkpoint)]

    keep = base + 5
    last_kept = await session.scalar(text(f"SELECT hash FROM audit_events WHERE seq = {keep}"))
    dialect = session.bind.dialect.name
    lift = (
        "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"
        if dialect == "postgresql"
        else "DROP TRIGGER audit_checkpoints_no_delete"
    )
    await _tamper(
        session,
        lift,
        "DELETE FROM audit_checkpoints",
        f"DELETE FROM audit_events WHERE seq > {keep}",
        f"UPDATE audit_head SET seq = {keep}, hash = '{last_kept}'",
    )
    alone = await audit.verify(session=session, key=key)
    with_copy = await audit.verify(session=session, key=key, external_checkpoints=kept_elsewhere)

    assert alone.ok  # nothing inside the database contradicts the shortened chain
    assert with_copy.first_bad_seq == keep + 1


async def test_a_checkpoint_signed_by_another_key_is_rejected(
    session: AsyncSession, key: CheckpointKey, tmp_path: Path
) -> None:
    await _append(session, 3)
    impostor = CheckpointKey.generate_into(tmp_path / "other.pem")
    await audit.create_checkpoint(session=session, key=impostor)
    await session.commit()

    result = await audit.verify(session=session, key=key)

    assert any("signature invalid" in p for p in result.problems)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET username = 'x'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_checkpoints SET hash = 'x'",
    ],
)
async def test_the_database_refuses_updates_and_deletes_of_the_log(
    session: AsyncSession, key: CheckpointKey, statement: str
) -> None:
    await _append(session, 2)
    await audit.create_checkpoint(session=session, key=key)
    await session.commit()

    with pytest.raises(DBAPIError, match="append-only"):
        await session.execute(text(statement))
    await session.rollback()


def test_audit_verify_command_exits_non_zero_and_names_the_bad_seq(
    database_url: str, tmp_path: Path
) -> None:
    import asyncio

    async def tamper() -> int:
        engine = create_engine(database_url)
        async with session_factory(engine)() as s:
            base = await _base(s)
            await _append(s, 5)
            await _tamper(s, f"UPDATE audit_events SET outcome = 'denied' WHERE seq = {base + 2}")
        await engine.dispose()
        return base + 2

    good = _run(["audit", "verify"], database_url, tmp_path)
    bad_seq = asyncio.run(tamper())
    bad = _run(["audit", "verify"], database_url, tmp_path)

    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("OK")
    assert bad.returncode == 1
    assert f"first bad sequence number: {bad_seq}" in bad.stdout


def test_audit_export_writes_csv_and_is_itself_audited(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "audit.csv"

    result = _run(
        ["audit", "export", "--from", "2020-01-01T00:00:00+08:00", "--output", str(out)],
        database_url,
        tmp_path,
    )
    naive = _run(["audit", "export", "--from", "2020-01-01T00:00:00"], database_url, tmp_path)
    again = _run(["audit", "export"], database_url, tmp_path)

    assert result.returncode == 0, result.stderr
    header, *rows = out.read_text(encoding="utf-8-sig").splitlines()
    assert header.startswith("seq,at,actor_id,username")
    assert rows
    assert naive.returncode == 2
    assert "audit.export" in again.stdout


def test_checkpoints_are_signed_exported_and_checked_against_a_copy_kept_elsewhere(
    database_url: str, tmp_path: Path
) -> None:
    made = _run(["audit", "checkpoint"], database_url, tmp_path)
    again = _run(["audit", "checkpoint"], database_url, tmp_path)
    listed = _run(["audit", "checkpoints"], database_url, tmp_path)
    public = _run(["audit", "public-key"], database_url, tmp_path)
    (tmp_path / "copy.jsonl").write_text(listed.stdout)
    (tmp_path / "public.pem").write_text(public.stdout)

    verified = _run(
        [
            "audit",
            "verify",
            "--checkpoints",
            str(tmp_path / "copy.jsonl"),
            "--public-key",
            str(tmp_path / "public.pem"),
        ],
        database_url,
        tmp_path,
    )

    assert json.loads(made.stdout)["seq"] > 0
    assert "nothing new" in again.stdout
    assert len(listed.stdout.splitlines()) == 1
    assert public.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert verified.returncode == 0, verified.stdout
    assert "2 checkpoint(s) verified" in verified.stdout  # the stored one and the copy


async def test_the_servers_checkpoint_job_signs_the_head_once(api: Api) -> None:
    runtime = api.app.state.runtime

    await _checkpoint(runtime)
    await _checkpoint(runtime)  # nothing new: no second checkpoint
    async with runtime.sessions() as session:
        result = await audit.verify(session=session, key=runtime.checkpoint_key)

    assert result.ok, result.problems
    assert result.checkpoints == 1
    assert result.last_checkpoint["seq"] == result.head_seq


async def test_an_open_transaction_does_not_hold_the_chain(
    pg_database: str, key: CheckpointKey
) -> None:
    """A transaction that has recorded its event and is still doing its work does not stop
    another from appending and committing: the head is claimed at commit, not at record.
    (PostgreSQL only: SQLite has one writer at a time by design.)"""
    engine = create_engine(pg_database)
    try:
        sessions = session_factory(engine)
        async with sessions() as slow, sessions() as quick:
            await audit.record(session=slow, who=WHO, action="test.slow")
            await slow.execute(text("UPDATE orders SET version = version WHERE id = 1"))

            async def append_quickly() -> None:
                await audit.record(session=quick, who=WHO, action="test.quick")
                await quick.commit()

            await asyncio.wait_for(append_quickly(), timeout=5)  # used to wait for `slow`
            await slow.commit()

            result = await audit.verify(session=quick, key=key)
            actions = (
                await quick.execute(
                    text("SELECT action FROM audit_events ORDER BY seq DESC LIMIT 2")
                )
            ).scalars()
    finally:
        await engine.dispose()

    assert result.ok, result.problems
    assert list(actions) == ["test.slow", "test.quick"]


async def test_events_queued_for_commit_do_not_hold_the_head(
    pg_database: str, key: CheckpointKey
) -> None:
    """PostgreSQL: a transaction's events are numbered and hashed inside its COMMIT (a
    deferred trigger), so a transaction that has already queued them — and then waits, as an
    app under load waits between statements — blocks no other appender. The queue is empty
    afterwards, a rolled-back queue leaves nothing, and the chain verifies."""
    # Waiting on the head's lock fails after 3 s instead of hanging the test.
    engine = create_engine(pg_database, connect_args={"server_settings": {"lock_timeout": "3s"}})
    try:
        sessions = session_factory(engine)
        async with sessions() as slow, sessions() as quick, sessions() as undone:
            await audit.record(session=slow, who=WHO, action="test.slow")
            await slow.run_sync(audit._append_pending)  # what its commit does first

            await audit.record(session=undone, who=WHO, action="test.undone")
            await undone.run_sync(audit._append_pending)
            await undone.rollback()

            async def append_quickly() -> None:
                await audit.record(session=quick, who=WHO, action="test.quick")
                await quick.commit()

            await asyncio.wait_for(append_quickly(), timeout=10)
            await slow.commit()

            result = await audit.verify(session=quick, key=key)
            actions = (
                await quick.execute(
                    text("SELECT action FROM audit_events ORDER BY seq DESC LIMIT 2")
                )
            ).scalars()
            queued = await quick.scalar(text("SELECT count(*) FROM audit_pending"))
            undone_count = await quick.scalar(
                text("SELECT count(*) FROM audit_events WHERE action = 'test.undone'")
            )
    finally:
        await engine.dispose()

    assert result.ok, result.problems
    assert list(actions) == ["test.slow", "test.quick"]
    assert queued == 0
    assert undone_count == 0


async def test_concurrent_appenders_leave_one_gapless_chain(
    any_database_url: str, key: CheckpointKey
) -> None:
    """Twenty transactions of three events each, committed at once: sixty new events,
    numbered without gaps, each transaction's three adjacent and in its own order, and the
    chain (with the head) verifies."""
    engine = create_engine(any_database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as probe:
            start = await _base(probe)

        async def transaction(t: int) -> None:
            async with sessions() as session:
                for i in range(3):
                    await audit.record(
                        session=session, who=WHO, action="test.burst", target_id=f"{t}:{i}"
                    )
                await session.commit()

        await asyncio.gather(*(transaction(t) for t in range(20)))
        async with sessions() as session:
            rows = (
                await session.execute(
                    text("SELECT seq, target_id FROM audit_events WHERE seq > :s ORDER BY seq"),
                    {"s": start},
                )
            ).all()
            result = await audit.verify(session=session, key=key)
    finally:
        await engine.dispose()

    assert result.ok, result.problems
    assert [r.seq for r in rows] == list(range(start + 1, start + 61))
    for first in range(0, 60, 3):
        owners = [r.target_id.split(":") for r in rows[first : first + 3]]
        assert len({t for t, _ in owners}) == 1, owners
        assert [i for _, i in owners] == ["0", "1", "2"]
