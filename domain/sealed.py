"""Secrets the product must use again but must not keep as given (webhook signing secrets):
sealed at rest with Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`), under keys
kept apart from the database (ORDERGATE_SECRETS_KEY_FILE). A copy of the database, a backup or
a replica read then yields no secret. The first key seals; every key opens, so a key is
rotated by putting a new one first and re-sealing (`ordergate migrate` seals what is not).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "sealed:v1:"


class SealError(Exception):
    """A sealed value that none of the keys opens (a key lost or swapped)."""


class Sealer:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a sealer needs at least one key")
        self._first = Fernet(keys[0])
        self._keys = MultiFernet([self._first, *(Fernet(k) for k in keys[1:])])

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        """Keys from a file, one per line (the first seals); blank lines and `#` comments
        are skipped. Raises ValueError when a line is not a Fernet key."""
        lines = [ln.strip() for ln in path.read_text(encoding="ascii").splitlines()]
        keys = [ln.encode() for ln in lines if ln and not ln.startswith("#")]
        try:
            return cls(keys)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a list of Fernet keys ({exc})") from None

    @staticmethod
    def write_new_key(path: Path) -> None:
        """A new key file, readable by this user only; never overwrites."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(Fernet.generate_key().decode() + "\n")

    def seal(self, plain: str) -> str:
        return PREFIX + self._keys.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored value holds. A value stored before sealing existed is returned
        as it is (`ordergate migrate` seals those)."""
        if not is_sealed(stored):
            return stored
        try:
            return self._keys.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SealError("a sealed secret does not open with the configured keys") from None

    def sealed_by_first(self, stored: str) -> bool:
        """True when `stored` is sealed under the first key (nothing to re-seal)."""
        if not is_sealed(stored):
            return False
        try:
            self._first.decrypt(stored.removeprefix(PREFIX).encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, stored: str) -> str:
        """`stored` sealed under the first key (unsealed values sealed, older keys replaced)."""
        return self.seal(self.open(stored))


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)
