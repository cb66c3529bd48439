"""What a transaction keeps in memory until COMMIT (outbox events, audit records), aware of
savepoints.

Each item remembers the savepoint (or the transaction) it was added in. When a savepoint rolls
back, exactly the items added inside it, or inside savepoints nested in it, go with it; what
the transaction added before or beside it stays and is written at COMMIT. When the whole
transaction ends without committing, everything goes.

SQLAlchemy reports a savepoint's rollback through the same `after_rollback` hook as a real
one, so clearing on that hook dropped a committed change's earlier events whenever any
savepoint inside it rolled back (issue #29). Here the two are told apart by the transaction
object SQLAlchemy hands over.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_KEY = "ordergate.pending"


def add(session: Session, name: str, item: Any) -> None:
    """Keep `item` in the list `name` of the session's current transaction."""
    where = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_KEY, {}).setdefault(name, []).append((where, item))


def take(session: Session, name: str) -> list[Any]:
    """Everything the transaction kept under `name`, in the order it was added; the list is
    emptied."""
    kept = session.info.get(_KEY, {}).pop(name, None)
    return [item for _, item in kept] if kept else []


def count(session: Session, name: str) -> int:
    return len(session.info.get(_KEY, {}).get(name, ()))


def _inside(where: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while where is not None:
        if where is savepoint:
            return True
        where = where.parent
    return False


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous: SessionTransaction) -> None:
    lists = session.info.get(_KEY)
    if not lists:
        return
    if not previous.nested:
        lists.clear()
        return
    for kept in lists.values():
        kept[:] = [entry for entry in kept if not _inside(entry[0], previous)]


@event.listens_for(Session, "after_transaction_end")
def _drop_unwritten(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed, rolled back or closed): whatever is still
    # kept was not written with it and must not leak into the session's next transaction.
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_KEY, None)
