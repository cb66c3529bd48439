"""The one error mapper: every error leaves the API with a contract `extensions.code`."""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy.exc import IntegrityError

from api.outage import is_overloaded, is_unavailable
from domain.errors import DomainError

log = logging.getLogger("ordergate.errors")

# Detail keys a domain error may pass on to clients (others stay in the log).
_PUBLIC_DETAILS = {
    "retry_after": "retryAfter",
    "field": "field",
    "action": "action",
    "current_version": "currentVersion",
    "current": "currentStatus",
}


def _camel_details(details: dict[str, Any]) -> dict[str, Any]:
    return {_PUBLIC_DETAILS[k]: v for k, v in details.items() if k in _PUBLIC_DETAILS}


@strawberry.enum(
    description="Every `extensions.code` an error may carry (the API contract's error table), "
    "listed here so code generators can use them. An error's `extensions.code` is one of these."
)
class ErrorCode(Enum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    SEPARATION_OF_DUTIES = "SEPARATION_OF_DUTIES"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


OVERLOADED_MESSAGE = (
    "the server is busy (every database connection is in use); nothing was changed, "
    "try again shortly"
)

# Codes that mean "not allowed" rather than "went wrong"; the audit log records them as denied.
DENIAL_CODES = frozenset(
    {"UNAUTHENTICATED", "FORBIDDEN", "SEPARATION_OF_DUTIES", "SIGNATURE_INVALID", "RATE_LIMITED"}
)


def error_code(exc: BaseException) -> str:
    """The contract code an exception leaves the API with."""
    if isinstance(exc, DomainError):
        return exc.code
    if is_unavailable(exc):
        return "UNAVAILABLE"
    if isinstance(exc, IntegrityError):
        return "CONFLICT"
    return "INTERNAL"


def format_error(error: GraphQLError, *, request_id: str) -> dict[str, Any]:
    payload = error.formatted
    extensions = dict(payload.get("extensions") or {})
    direct = original = error.original_error
    # graphql-core wraps errors raised inside resolvers; unwrap to reach ours.
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error

    if isinstance(original, DomainError):
        payload["message"] = original.message
        extensions.update(_camel_details(original.details))
        extensions["code"] = original.code
    elif is_overloaded(original):
        payload["message"] = OVERLOADED_MESSAGE
        extensions = {"code": "UNAVAILABLE", "reason": "OVERLOADED"}
    elif is_unavailable(original):
        payload["message"] = "the database is not answering; nothing was changed, try again"
        extensions = {"code": "UNAVAILABLE", "reason": "DATABASE_UNAVAILABLE"}
    elif isinstance(original, IntegrityError):
        log.info("integrity error mapped to CONFLICT", extra={"request_id": request_id})
        payload["message"] = "conflicts with existing data"
        extensions["code"] = "CONFLICT"
    elif "code" in extensions:
        pass
    elif "Document contains more than" in error.message and "tokens" in error.message:
        # graphql-core's parser refusing a document over the token limit (api/graphql/limits.py)
        extensions["code"] = "QUERY_TOO_COMPLEX"
    elif error.path is None and (
        direct is None or isinstance(direct, GraphQLError | ValueError | TypeError)
    ):
        # Parse, validation and variable-coercion errors: the request itself is malformed.
        extensions["code"] = "BAD_USER_INPUT"
    else:
        log.error(
            "unexpected error",
            exc_info=original or error,
            extra={"request_id": request_id, "path": error.path},
        )
        payload["message"] = f"internal error (request id {request_id})"
        extensions = {"code": "INTERNAL", "requestId": request_id}
    payload["extensions"] = extensions
    return payload
