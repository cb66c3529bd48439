"""Anonymous requests are counted before they write (issue #30, M6): a flood of downloads
without a token or of malformed logins grows the audit chain by a bounded number of events."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.app import _purge_rate_counters
from domain.audit.models import AuditEvent
from tests.api.test_audit import events
from tests.api.test_limits import pinned_clock
from tests.conftest import Api, _api_for, settings_for


@pytest.fixture
async def pinned(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for api in _api_for(settings_for(database_url, tmp_path)):
        api.app.state.runtime.clock = pinned_clock()  # one rate-limit minute for the test
        yield api


async def _code(api: Api, query: str) -> str:
    """The error code of an anonymous request, answered by GraphQL (200) or, past the
    address's budget, at the door (429)."""
    response = await api.post({"query": query})
    assert response.status_code in (200, 429), response.text
    return response.json()["errors"][0]["extensions"]["code"]


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
        codes.append(await _code(api, login))

    assert set(codes[:60]) == {"BAD_USER_INPUT"}
    assert set(codes[60:]) == {"RATE_LIMITED"}
    assert await _events(api) - before == 1


async def test_an_address_past_its_budget_is_turned_away_before_its_request_is_read(
    pinned: Api,
) -> None:
    """The 60-second flood kept the loop busy with requests that would be refused anyway:
    once an address has spent its budget, its unauthenticated requests are answered 429 at
    the door — a body that is not even JSON gets RATE_LIMITED, not BAD_USER_INPUT — with
    one audit event for all of them, while the same address with a token is served."""
    api = pinned
    runtime = api.app.state.runtime
    await api.token("cs")  # logged in before the flood
    for _ in range(61):
        await _code(api, "{ viewer { username } }")
    before = await _events(api)

    malformed = await api.client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    download = await api.client.get("/exports/1/download?token=x")
    bombs = [await _code(api, "{ orders { totalCount } }") for _ in range(47)]
    # A header is not a token: only a token this server signed passes the door.
    for header in ("", "x", "Bearer junk"):
        forged = await api.post({"query": "{ orders { totalCount } }"}, authorization=header)
        bombs.append(forged.json()["errors"][0]["extensions"]["code"])
    with_token = await api.gql("{ viewer { username } }", as_="cs")
    during = await _events(api)
    await _purge_rate_counters(runtime)
    summary = (await events(api, action="auth.refusals"))[-1]
    minute = runtime.clock
    runtime.clock = lambda: minute() + dt.timedelta(minutes=1)
    try:
        next_minute = await _code(api, "{ viewer { username } }")
    finally:
        runtime.clock = minute

    assert malformed.status_code == 429
    assert malformed.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(malformed.headers["retry-after"]) >= 1
    assert download.status_code == 429
    assert set(bombs) == {"RATE_LIMITED"}
    assert with_token["data"]["viewer"]["username"] == "demo-cs"
    assert during == before  # nothing written while turned away
    assert summary["details"]["turnedAwayAtTheDoor"] == 52
    assert next_minute == "UNAUTHENTICATED"


async def test_a_burst_of_wrong_passwords_writes_a_bounded_number_of_events(pinned: Api) -> None:
    api = pinned
    await api.token("cs")  # logged in before the flood
    before = await _events(api)
    login = 'mutation { login(username: "demo-cs", password: "guess-%d") { accessToken } }'

    codes = []
    for n in range(200):
        codes.append(await _code(api, login % n))
    written = await _events(api) - before
    reading = await api.gql("{ viewer { username } }", as_="cs")

    assert set(codes[:10]) == {"UNAUTHENTICATED"}
    assert set(codes[31:]) == {"RATE_LIMITED"}
    assert written <= 32  # each attempt inside the budget, and the first refusal past it
    assert reading["data"]["viewer"]["username"] == "demo-cs"  # no session ended (M5)
