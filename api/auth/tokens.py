"""Access tokens: short-lived JWTs signed with HS256 under a key id, so keys can rotate."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from domain.errors import Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: dt.datetime


class TokenService:
    def __init__(
        self, *, keys: dict[str, str], issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        if not keys:
            raise ValueError("at least one token key is needed")
        self._keys = dict(keys)
        self._signing_kid = next(iter(keys))
        self.issuer = issuer
        self.audience = audience
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    def issue(
        self, *, user_id: int, roles: Iterable[str], now: dt.datetime, generation: int = 0
    ) -> IssuedToken:
        expires = now + self.ttl
        claims = {
            # The account's token generation when issued; a lock-out, a disablement, a role or
            # password change moves it on, and every older token stops working at once.
            "gen": generation,
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "roles": sorted(roles),
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims,
            self._keys[self._signing_kid],
            algorithm=ALGORITHM,
            headers={"kid": self._signing_kid},
        )
        return IssuedToken(token, expires.replace(microsecond=0))

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; every kind of invalid token is the same UNAUTHENTICATED.

        Steps: the header names a key we hold (an unknown kid is not guessed at); the algorithm
        is pinned so a token cannot choose `none` or switch families; signature, expiry,
        issuer and audience are all required claims, not optional ones.
        """
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid", ""))
            if key is None:
                raise Unauthenticated("invalid token")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        if not str(claims.get("sub", "")).isdigit():
            raise Unauthenticated("invalid token")
        return claims
