"""Password hashing with argon2id."""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

# Verified against when the username does not exist, so that an unknown user costs the same
# time as a wrong password and response timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("ordergate-dummy-password-for-timing")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Check a password. Returns (ok, new_hash): new_hash is set when the stored hash was made
    with older parameters, so the caller can store a stronger one while it has the plain text.
    """
    if stored_hash is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return False, None
    try:
        _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if _hasher.check_needs_rehash(stored_hash):
        return True, _hasher.hash(password)
    return True, None
