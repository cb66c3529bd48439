from __future__ import annotations

from dataclasses import dataclass, field

from domain.access import AccessProfile
from domain.errors import Forbidden


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as the audit log records it."""

    client_ip: str | None = None  # resolved through trusted proxies only
    peer_ip: str | None = None  # the TCP peer
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM_ORIGIN = Origin(client_ip="local", peer_ip="local", user_agent="ordergate-cli")


@dataclass(frozen=True)
class Actor:
    """Who is acting, with what access, from where. Every service takes one."""

    user_id: int | None
    username: str
    roles: frozenset[str]
    channels: frozenset[str]
    access: AccessProfile
    origin: Origin = field(default_factory=Origin)
    # The person behind the account (`User.person`): separation of duties compares persons.
    person: str = ""

    def require_channel(self, channel: str) -> None:
        """A channel's service account speaks for its channels only: an account bound to
        channels (`users create … --channel TAOBAO`) may not act for another (FORBIDDEN; issue
        #30, L4). An unbound integration account is a platform-wide one."""
        if self.channels and channel not in self.channels:
            raise Forbidden(f"this account is bound to {', '.join(sorted(self.channels))}")

    @property
    def person_key(self) -> str:
        return self.person or f"account:{self.user_id}"
