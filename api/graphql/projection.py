"""The one place a governed field's value is produced.

Every object type the policy governs declares, per field, how to read the value from the
model. `project` asks the caller's compiled `AccessProfile` once per field: `FULL` reads the
value, `MASKED` reads it and passes it through the field's mask, `NONE` never reads it at all.
A field with no policy line is `NONE`. Nothing else converts models to governed types.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from domain.access import SENSITIVE_FIELDS, AccessProfile, FieldAccess

Getter = Callable[[Any, AccessProfile], Any]


@dataclass
class ReadScope:
    """Per operation: the coordinates it asks for, and how many records of each sensitive
    coordinate were returned with a value (audited afterwards by the access extension)."""

    asked: frozenset[str]
    tally: Counter[str] = field(default_factory=Counter)


READ_SCOPE: ContextVar[ReadScope | None] = ContextVar("read_scope", default=None)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Projection:
    type_name: str
    fields: tuple[tuple[str, str, Getter], ...]  # (python attribute, coordinate, getter)
    sensitive: tuple[tuple[str, str], ...] = field(init=False)  # (attribute, coordinate)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "sensitive",
            tuple((a, c) for a, c, _ in self.fields if c in SENSITIVE_FIELDS),
        )

    @classmethod
    def of(
        cls, type_name: str, *, names: dict[str, str] | None = None, **getters: Getter
    ) -> Projection:
        """`names` gives the GraphQL name where it is not the camelCase of the attribute."""
        names = names or {}
        return cls(
            type_name,
            tuple(
                (attr, f"{type_name}.{names.get(attr, camel(attr))}", g)
                for attr, g in getters.items()
            ),
        )

    def __call__(self, model: Any, access: AccessProfile) -> dict[str, Any]:
        granted = access.fields
        scope = READ_SCOPE.get()
        asked = scope.asked if scope is not None else None
        out: dict[str, Any] = {}
        for attr, coordinate, getter in self.fields:
            level = granted.get(coordinate, FieldAccess.NONE)
            if asked is not None and coordinate not in asked:
                out[attr] = None  # not selected by the operation: not read at all
            elif level is FieldAccess.FULL:
                out[attr] = getter(model, access)
            elif level is FieldAccess.MASKED:
                out[attr] = access.present(coordinate, getter(model, access))
            else:
                out[attr] = None
        if self.sensitive and scope is not None:
            for attr, coordinate in self.sensitive:
                if out[attr] is not None:
                    scope.tally[coordinate] += 1
        return out


def note_read(coordinate: str, value: Any) -> Any:
    """`value` as handed out under `coordinate` outside a Projection (a contact field's
    history, a merge preview): counted, when sensitive and not None, with the operation's
    other sensitive reads, so it reaches the audit log and access reports (issue #30, L1)."""
    scope = READ_SCOPE.get()
    if scope is not None and value is not None and coordinate in SENSITIVE_FIELDS:
        scope.tally[coordinate] += 1
    return value


def attr(name: str) -> Getter:
    return lambda model, _access: getattr(model, name)
