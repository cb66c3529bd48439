"""Tasks: `tasks(status, first, after)` — what is assigned to one of the caller's roles or to
the caller — and `completeTask(id, note)`. Holders of `task:work`. A task's `details` (the
evidence that raised it) are shown under the caller's field policy, as audit details are."""

from __future__ import annotations

import datetime as dt
from enum import Enum

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, global_id, parse_id, selects
from domain import pagination
from domain.access import AccessProfile
from domain.disclosure import visible
from domain.tasks import models
from domain.tasks import service as tasks


@strawberry.enum(description="Where a task stands.")
class TaskStatus(Enum):
    OPEN = "OPEN"
    DONE = "DONE"


assert {e.value for e in TaskStatus} == {e.value for e in models.TaskStatus}


@strawberry.type(description="Work handed to a role or a person, with what raised it.")
class Task:
    id: strawberry.ID
    kind: str = strawberry.field(
        description="What raised it: STOCK_TRACE, STOCK_COUNT_DUE, STOCK_SHORT (a paid order "
        "no warehouse could hold), RETURN_OVERDUE, RECONCILIATION, ESCALATION, KPI_BREACH, "
        "CUSTOMER_CHANGED, CUSTOMER_CLEANSE."
    )
    title: str
    assignee: str = strawberry.field(
        description="The role (every member may work on it) or the person it is assigned to."
    )
    due_at: dt.datetime | None
    status: TaskStatus
    created_at: dt.datetime
    completed_at: dt.datetime | None
    completed_by: str | None
    note: str | None
    details: JSON = strawberry.field(
        description="The evidence, under the caller's field policy (withheld keys listed)."
    )

    @classmethod
    def from_model(cls, task: models.Task, access: AccessProfile) -> Task:
        return cls(
            id=global_id("Task", task.id),
            kind=task.kind,
            title=task.title,
            assignee=task.assignee_role
            if task.assignee_role is not None
            else f"user:{task.assignee_user_id}",
            due_at=task.due_at,
            status=TaskStatus(task.status.value),
            created_at=task.created_at,
            completed_at=task.completed_at,
            completed_by=task.completed_by,
            note=task.note,
            details=visible(tasks.details_of(task), access, action=f"task.{task.kind}"),
        )


@strawberry.type
class TaskQueries:
    @strawberry.field(
        description="Tasks assigned to one of your roles or to you, newest first. "
        "Holders of task:work."
    )
    async def tasks(
        self,
        info: Info[RequestContext, None],
        status: TaskStatus | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[Task] | None:
        ctx = info.context
        actor = ctx.require_actor()
        stmt = tasks.tasks_query(
            actor, models.TaskStatus(status.value) if status is not None else None
        )
        async with ctx.read() as session:
            page = await pagination.by_id(
                session,
                stmt,
                models.Task.id,
                ordering=f"tasks:{status.value if status else 'ALL'}:DESC",
                first=first,
                after=after,
                descending=True,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, lambda t: Task.from_model(t, actor.access))


@strawberry.type
class TaskMutations:
    @strawberry.mutation(description="Close one of your tasks, with a note of what was done.")
    async def complete_task(
        self, info: Info[RequestContext, None], id: strawberry.ID, note: str | None = None
    ) -> Task | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.write(
            action="task.complete", operation="completeTask", target_type="Task", target_id=id
        ) as session:
            task = await tasks.complete(
                session=session, actor=actor, task_id=parse_id(id, "task"), note=note
            )
            return Task.from_model(task, actor.access)
