"""The long-lived parts of a running app, built once from settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth.tokens import TokenService
from api.settings import Settings, checkpoint_key
from domain.access import PolicyDecisionPoint
from domain.approvals.service import Deployment
from domain.audit.keys import CheckpointKey
from domain.db import create_engine, session_factory


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pdp: PolicyDecisionPoint
    tokens: TokenService
    checkpoint_key: CheckpointKey
    deployment: Deployment

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings.database_url, pool_pre_ping=True)
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            pdp=PolicyDecisionPoint(settings.policy_dir),
            checkpoint_key=checkpoint_key(settings),
            deployment=Deployment(
                audience=settings.audience,
                ttl=dt.timedelta(seconds=settings.approval_ttl_seconds),
            ),
            tokens=TokenService(
                keys=settings.token_keys,
                issuer=settings.issuer,
                audience=settings.audience,
                ttl_seconds=settings.token_ttl_seconds,
            ),
        )
