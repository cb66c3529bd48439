"""The one place a governed field's value is produced.

Every object type the policy governs declares, per field, how to read the value from the
model. `project` asks the caller's compiled `AccessProfile` once per field: `FULL` reads the
value, `MASKED` reads it and passes it through the field's mask, `NONE` never reads it at all.
A field with no policy line is `NONE`. Nothing else converts models to governed types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.access import AccessProfile, FieldAccess

Getter = Callable[[Any, AccessProfile], Any]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Projection:
    type_name: str
    fields: tuple[tuple[str, str, Getter], ...]  # (python attribute, coordinate, getter)

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
        out: dict[str, Any] = {}
        for attr, coordinate, getter in self.fields:
            level = granted.get(coordinate, FieldAccess.NONE)
            if level is FieldAccess.FULL:
                out[attr] = getter(model, access)
            elif level is FieldAccess.MASKED:
                out[attr] = access.present(coordinate, getter(model, access))
            else:
                out[attr] = None
        return out


def attr(name: str) -> Getter:
    return lambda model, _access: getattr(model, name)
