"""The hash chain, as pure functions: what is hashed, and how.

hash(n) = SHA-256(prev_hash(n) ‖ canonical JSON of event n), where prev_hash(n) = hash(n-1) and
prev_hash(1) = GENESIS. Canonical JSON: sorted keys, no insignificant whitespace, UTF-8, times
as ISO 8601 in UTC with microseconds, details as the exact stored JSON text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

GENESIS = "0" * 64

# The columns that make up an event, in the order the CSV export writes them.
FIELDS = (
    "seq",
    "at",
    "actor_id",
    "username",
    "roles",
    "client_ip",
    "peer_ip",
    "user_agent",
    "request_id",
    "operation",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "code",
    "details",
)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_time(value: dt.datetime) -> str:
    if value.utcoffset():
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_SORTED = tuple(sorted(FIELDS))
_AT = _SORTED.index("at")
# '{"action":%s,"actor_id":%s,…}' with one %s per field, in sorted key order.
_TEMPLATE = "{" + ",".join(f'"{name}":%s' for name in _SORTED) + "}"


def stored_time(raw: Any) -> str:
    """The canonical form of `at` as the driver returns it, without building a datetime:
    SQLite holds SQLAlchemy's `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), PostgreSQL a datetime."""
    if raw.__class__ is str:
        if len(raw) == 26 and raw[10] == " ":
            return raw[:10] + "T" + raw[11:] + "Z"
        return format_time(dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC))
    return format_time(raw)


def digest_input_of_row(values: tuple[Any, ...] | list[Any]) -> bytes:
    """`canonical_json` of an event given as values in sorted field order (`at` as a
    datetime, or already in canonical form), written out
    directly: `verify` hashes every event, and this is several times faster than a general
    JSON encoder with sorted keys. A unit test holds it byte-identical to `canonical_json`."""
    values = list(values)
    at = values[_AT]
    values[_AT] = at if at.__class__ is str else format_time(at)
    return (
        _TEMPLATE
        % tuple(
            [
                "null" if v is None else str(v) if v.__class__ is int else encode_basestring(v)
                for v in values
            ]
        )
    ).encode()


def event_digest_input(event: Mapping[str, Any]) -> bytes:
    return digest_input_of_row(tuple(event[name] for name in _SORTED))


def compute_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + event_digest_input(event)).hexdigest()


def hash_of_row(prev_hash: str, values: list[Any]) -> str:
    """The hash of an event given as a list in sorted field order with `at` already in
    canonical form (the list is consumed). The verification loop's hot path."""
    encoded = tuple(
        [
            "null" if v is None else str(v) if v.__class__ is int else encode_basestring(v)
            for v in values
        ]
    )
    return hashlib.sha256(prev_hash.encode() + (_TEMPLATE % encoded).encode()).hexdigest()


_SEQ = _SORTED.index("seq")
_BEFORE_SEQ, _AFTER_SEQ = _TEMPLATE.split('"seq":%s')


def digest_around_seq(event: Mapping[str, Any]) -> tuple[str, str]:
    """An event's canonical JSON (as `event_digest_input` writes it) without its sequence
    number, as the text before it and the text after it: for appenders that learn the number
    only when their transaction commits (PostgreSQL's deferred seal, migration 0009), where
    hash = SHA-256(prev_hash ‖ before ‖ str(seq) ‖ after). A unit test holds the two equal."""
    encoded = []
    for name in _SORTED:
        if name == "seq":
            continue
        v = event[name]
        if name == "at" and v.__class__ is not str:
            v = format_time(v)
        encoded.append(
            "null" if v is None else str(v) if v.__class__ is int else encode_basestring(v)
        )
    head = _BEFORE_SEQ.count("%s")
    return (
        _BEFORE_SEQ % tuple(encoded[:head]) + '"seq":',
        _AFTER_SEQ % tuple(encoded[head:]),
    )


SORTED_FIELDS = _SORTED
AT_INDEX = _AT
