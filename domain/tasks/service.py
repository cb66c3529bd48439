"""Tasks: what a condition the system watches hands to people — a stock count whose
discrepancy needs tracing, a weekly count due, a channel's reconciliation differences, orders
escalated to manual handling (and, later, KPIs that slip).

A task is assigned to a role (every member sees and may complete it) or to one person. It is
raised in the transaction of what raised it, with an audit record and a `TASK_CREATED` event,
and at most once while open for its `dedupe_key`. `tasks` lists what the caller may work on;
`completeTask` closes one with a note, audited and published.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Action
from domain.actor import Actor
from domain.audit import service as audit
from domain.audit.chain import canonical_json
from domain.audit.service import Subject
from domain.db import utcnow
from domain.errors import Conflict, NotFound
from domain.events import service as events
from domain.tasks.models import Task, TaskStatus
from domain.values import clean_text

MAX_NOTE = 2000


async def raise_task(
    session: AsyncSession,
    *,
    kind: str,
    title: str,
    details: Mapping[str, Any],
    by: Actor | Subject,
    assignee_role: str | None = None,
    assignee_user_id: int | None = None,
    dedupe_key: str | None = None,
    due_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Task | None:
    """Create a task in the caller's transaction; None when an open one with the same
    `dedupe_key` exists (the condition was already handed over)."""
    if (assignee_role is None) == (assignee_user_id is None):
        raise ValueError("a task goes to a role or to a person")
    now = now or utcnow()
    if dedupe_key is not None:
        open_one = await session.scalar(
            select(Task.id).where(Task.dedupe_key == dedupe_key, Task.status == TaskStatus.OPEN)
        )
        if open_one is not None:
            return None
    task = Task(
        kind=kind,
        title=title[:200],
        assignee_role=assignee_role,
        assignee_user_id=assignee_user_id,
        due_at=due_at,
        status=TaskStatus.OPEN,
        created_at=now,
        details=canonical_json(dict(details)),
        dedupe_key=dedupe_key,
    )
    try:
        async with session.begin_nested():
            session.add(task)
            await session.flush()
    except IntegrityError:  # raised concurrently for the same key: that one stands
        return None
    events.publish(
        session=session,
        type=events.EventType.TASK_CREATED,
        aggregate_type="Task",
        aggregate_id=task.id,
        version=1,
        at=now,
        payload={"taskId": task.id, "kind": kind, "assigneeRole": assignee_role},
    )
    await audit.record(
        session=session,
        who=by,
        action="task.create",
        operation="task",
        target_type="Task",
        target_id=task.id,
        at=now,
        details={"kind": kind, "title": task.title, "assigneeRole": assignee_role},
    )
    return task


def _mine(actor: Actor) -> Any:
    return or_(
        Task.assignee_role.in_(sorted(actor.roles)),
        Task.assignee_user_id == actor.user_id if actor.user_id is not None else False,
    )


def tasks_query(actor: Actor, status: TaskStatus | None = None) -> Select[Any]:
    """The tasks assigned to one of the caller's roles or to the caller."""
    actor.access.require(Action.TASK_WORK)
    stmt = select(Task).where(_mine(actor))
    if status is not None:
        stmt = stmt.where(Task.status == status)
    return stmt


async def complete(
    *,
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    note: str | None,
    now: dt.datetime | None = None,
) -> Task:
    """Close one of the caller's tasks with a note. A task of someone else is NOT_FOUND; one
    already done is a CONFLICT."""
    actor.access.require(Action.TASK_WORK)
    if note is not None:
        note = clean_text(note, what="note", max_length=MAX_NOTE, allow_newlines=True) or None
    task = await session.scalar(
        select(Task)
        .where(Task.id == task_id, _mine(actor))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if task is None:
        raise NotFound("no such task")
    if task.status is TaskStatus.DONE:
        raise Conflict(f"task {task.id} was completed by {task.completed_by}")
    now = now or utcnow()
    task.status = TaskStatus.DONE
    task.completed_at = now
    task.completed_by = actor.username
    task.note = note
    await session.flush()
    events.publish(
        session=session,
        type=events.EventType.TASK_COMPLETED,
        aggregate_type="Task",
        aggregate_id=task.id,
        version=2,
        at=now,
        payload={"taskId": task.id, "kind": task.kind},
    )
    await audit.record(
        session=session,
        who=actor,
        action="task.complete",
        operation="completeTask",
        target_type="Task",
        target_id=task.id,
        at=now,
        details={"kind": task.kind, "note": note},
    )
    return task


def details_of(task: Task) -> dict[str, Any]:
    return json.loads(task.details)
