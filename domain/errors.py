"""The small family of errors the domain raises; `api/errors.py` maps each to a contract code."""


class DomainError(Exception):
    """Base class; `code` is the contract's `extensions.code`.

    `persist` marks the few errors raised after a state change that must stand although the
    operation failed (a request voided because its order changed); the API commits those
    changes instead of rolling them back.
    """

    code = "INTERNAL"
    persist = False

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class BadInput(DomainError):
    code = "BAD_USER_INPUT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class InvalidTransition(DomainError):
    code = "INVALID_TRANSITION"


class InsufficientStock(DomainError):
    code = "INSUFFICIENT_STOCK"


class SignatureInvalid(DomainError):
    code = "SIGNATURE_INVALID"


class SeparationOfDuties(DomainError):
    code = "SEPARATION_OF_DUTIES"


class RateLimited(DomainError):
    code = "RATE_LIMITED"
