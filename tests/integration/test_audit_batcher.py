"""Group commit of events recorded on their own (domain/audit/batcher.py): concurrent callers
share transactions, every event is committed before its caller returns, and a failed commit
fails every caller whose event it held."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event, text

from domain.actor import SYSTEM_ORIGIN
from domain.audit import service as audit
from domain.audit.batcher import AuditBatcher
from domain.audit.keys import CheckpointKey
from domain.audit.service import Subject
from domain.db import create_engine, session_factory

WHO = Subject(7, "zhang.wei", ("cs",), SYSTEM_ORIGIN)


async def test_concurrent_events_share_commits_and_each_is_committed_on_return(
    any_database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(any_database_url)
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    try:
        sessions = session_factory(engine)
        batcher = AuditBatcher(sessions)
        async with sessions() as session:
            start = int(await session.scalar(text("SELECT seq FROM audit_head")))

        async def read(i: int) -> int:
            await batcher.record(who=WHO, action="data.read", target_id=i)
            async with sessions() as session:  # committed: visible to anyone now
                return int(
                    await session.scalar(
                        text("SELECT count(*) FROM audit_events WHERE seq > :s AND target_id = :t"),
                        {"s": start, "t": str(i)},
                    )
                )

        seen = await asyncio.gather(*(read(i) for i in range(50)))
        async with sessions() as session:
            result = await audit.verify(
                session=session, key=CheckpointKey.generate_into(tmp_path / "k.pem")
            )
    finally:
        await engine.dispose()

    assert seen == [1] * 50
    assert result.ok, result.problems
    assert len(commits) < 50  # 50 events, fewer transactions (the first goes alone)


async def test_a_failed_commit_fails_every_caller_in_its_batch(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    batcher = AuditBatcher(session_factory(engine))
    try:
        outcomes = await asyncio.gather(
            *(batcher.record(who=WHO, action="data.read") for _ in range(5)),
            return_exceptions=True,
        )
    finally:
        await engine.dispose()

    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert batcher._flusher is None  # and the next event starts a new batch


async def test_a_caller_that_gives_up_does_not_cancel_the_batch(any_database_url: str) -> None:
    engine = create_engine(any_database_url)
    try:
        sessions = session_factory(engine)
        batcher = AuditBatcher(sessions)
        impatient = asyncio.create_task(batcher.record(who=WHO, action="test.impatient"))
        patient = asyncio.create_task(batcher.record(who=WHO, action="test.patient"))
        await asyncio.sleep(0)
        impatient.cancel()
        await patient
        with pytest.raises(asyncio.CancelledError):
            await impatient
        if batcher._flusher is not None:
            await batcher._flusher  # the batch carries on without the one who left
        async with sessions() as session:
            actions = set(
                (
                    await session.execute(
                        text("SELECT action FROM audit_events WHERE action LIKE 'test.%'")
                    )
                ).scalars()
            )
    finally:
        await engine.dispose()

    assert actions == {"test.impatient", "test.patient"}  # recorded all the same
