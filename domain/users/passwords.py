"""Password hashing with argon2id, off the event loop.

argon2 is deliberately slow (tens of milliseconds of CPU per check). Run on the event loop it
would stall every other request for that long per login, so the async entry points hand it to
a small thread pool: argon2-cffi releases the GIL while it hashes, and the pool keeps at least
one core free for serving requests. Its size bounds how many checks run at once; a login burst
queues there instead of on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import BadInput

_hasher = PasswordHasher()

# Verified against when the username does not exist, so that an unknown user costs the same
# time as a wrong password and response timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("ordergate-dummy-password-for-timing")

MIN_LENGTH = 10
HASH_THREADS = max(1, (os.cpu_count() or 2) - 1)
# The hashing threads run at the lowest CPU priority (Linux schedules threads one by one): a
# login burst takes the CPU that serving and the database leave, rather than half of it. In
# bench/login_burst.py reads kept 0.84x (0.78x at nice 10, 0.69x at 0) and logins their rate.
HASH_NICE = 19


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        thread = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HASH_NICE)
        )


_pool = ThreadPoolExecutor(
    max_workers=HASH_THREADS, thread_name_prefix="argon2", initializer=_lower_priority
)


def check_length(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise BadInput(f"password must have at least {MIN_LENGTH} characters")


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


async def verify_password_async(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """`verify_password` in the hashing pool, so the event loop keeps serving."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, verify_password, stored_hash, password)


async def hash_password_async(password: str) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, hash_password, password)
