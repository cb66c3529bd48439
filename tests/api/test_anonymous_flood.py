"""Anonymous requests are counted before they write (issue #30, M6): a flood of downloads
without a token or of malformed logins grows the audit chain by a bounded number of events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from domain.audit.models import AuditEvent
from tests.api.test_limits import pinned_clock
from tests.conftest import Api, _api_for, settings_for


@pytest.fixture
async def pinned(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for api in _api_for(settings_for(database_url, tmp_path)):
        api.app.state.runtime.clock = pinned_clock()  # one rate-limit minute for the test
        yield api


async def _events(api: Api) -> int:
    async with api.app.state.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_anonymous_downloads_write_one_event_a_minute_not_one_each(pinned: Api) -> None:
    api = pinned
    before = await _events(api)

    answers = [
        (await api.client.get(f"/exports/{n}/download?token=x")).status_code for n in range(1, 101)
    ]

    assert set(answers[:60]) == {401}
    assert set(answers[60:]) == {429}  # past the address's budget of refusals
    assert await _events(api) - before == 1


async def test_malformed_logins_write_one_event_a_minute_not_one_each(pinned: Api) -> None:
    api = pinned
    before = await _events(api)
    login = 'mutation { login(username: "demo-cs\\u0007", password: "x") { accessToken } }'

    codes = []
    for _ in range(80):
        body = await api.gql(login)
        codes.append(body["errors"][0]["extensions"]["code"])

    assert set(codes[:60]) == {"BAD_USER_INPUT"}
    assert set(codes[60:]) == {"RATE_LIMITED"}
    assert await _events(api) - before == 1
