from __future__ import annotations

from dataclasses import dataclass

from domain.access import AccessProfile


@dataclass(frozen=True)
class Actor:
    """Who is acting, with what access, from where. Every service takes one."""

    user_id: int | None
    username: str
    roles: frozenset[str]
    channels: frozenset[str]
    access: AccessProfile
    client_ip: str | None = None
    request_id: str | None = None
