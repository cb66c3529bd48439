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
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_digest_input(event: Mapping[str, Any]) -> bytes:
    body = {name: event[name] for name in FIELDS}
    body["at"] = format_time(event["at"])
    return canonical_json(body).encode()


def compute_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + event_digest_input(event)).hexdigest()
