"""Logging in, tokens, lock-out, and what anonymous callers may do."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest

from tests.conftest import DEMO_PASSWORD, TOKEN_KEYS, Api, errors_of, nothing_returned

LOGIN = (
    "mutation($u: String!, $p: String!) "
    "{ login(username: $u, password: $p) { accessToken expiresAt } }"
)
VIEWER = "{ viewer { username roles } }"


async def test_login_gives_a_token_that_identifies_the_caller(api: Api) -> None:
    result = await api.gql(LOGIN, {"u": "demo-cs", "p": DEMO_PASSWORD})
    token = result["data"]["login"]["accessToken"]

    viewer = await api.gql(VIEWER, authorization=f"Bearer {token}")

    assert viewer["data"]["viewer"] == {"username": "demo-cs", "roles": ["cs"]}
    expires = dt.datetime.fromisoformat(result["data"]["login"]["expiresAt"])
    assert expires.tzinfo is not None
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "roles", "iat", "exp", "jti"} <= set(claims)
    assert jwt.get_unverified_header(token)["kid"] == "test-1"


async def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api) -> None:
    wrong = await api.gql(LOGIN, {"u": "demo-cs", "p": "not-the-password"})
    unknown = await api.gql(LOGIN, {"u": "nobody-here", "p": "not-the-password"})

    assert nothing_returned(wrong)
    assert nothing_returned(unknown)
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert errors_of(wrong) == errors_of(unknown) == [("UNAUTHENTICATED", None)]


async def test_five_failures_lock_the_account_even_for_the_right_password(api: Api) -> None:
    for _ in range(5):
        await api.gql(LOGIN, {"u": "demo-ops", "p": "wrong-password"})

    locked = await api.gql(LOGIN, {"u": "demo-ops", "p": DEMO_PASSWORD})
    other = await api.gql(LOGIN, {"u": "demo-finance", "p": DEMO_PASSWORD})

    assert errors_of(locked) == [("UNAUTHENTICATED", None)]
    assert other["data"]["login"]["accessToken"]


def _forge(**overrides: object) -> str:
    kid, secret = TOKEN_KEYS.split(":", 1)
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": "ordergate",
        "aud": "ordergate-api",
        "sub": "2",
        "roles": ["cs"],
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(minutes=5)).timestamp()),
        "jti": "x",
    }
    key = overrides.pop("key", secret)
    headers = {"kid": overrides.pop("kid", kid)}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


@pytest.mark.parametrize(
    "token",
    [
        _forge(exp=int(dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp())),
        _forge(aud="someone-else"),
        _forge(iss="evil"),
        _forge(key="a-different-secret-that-is-long-enough-to-sign"),
        _forge(kid="unknown-kid"),
        _forge(sub="999999"),
        _forge()[:-4] + "AAAA",
        "not.a.jwt",
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "signature",
        "kid",
        "no-such-user",
        "tampered",
        "garbage",
    ],
)
async def test_bad_tokens_are_unauthenticated(api: Api, token: str) -> None:
    result = await api.gql(VIEWER, authorization=f"Bearer {token}")

    assert nothing_returned(result)
    assert errors_of(result) == [("UNAUTHENTICATED", None)]


async def test_a_forged_token_with_the_right_key_works_which_is_why_keys_are_secret(
    api: Api,
) -> None:
    result = await api.gql(VIEWER, authorization=f"Bearer {_forge()}")

    assert result["data"]["viewer"]["username"] == "demo-cs"


@pytest.mark.parametrize(
    "query",
    [
        "{ orders { totalCount } }",
        "{ __schema { types { name } } }",
        '{ __type(name: "Order") { fields { name } } }',
        "{ __typename }",
        'mutation { transitionOrder(id: "1", to: PAID) { id } }',
    ],
)
async def test_anonymous_callers_get_nothing_but_login(api: Api, query: str) -> None:
    result = await api.gql(query)

    assert nothing_returned(result)
    assert errors_of(result) == [("UNAUTHENTICATED", None)]


async def test_authenticated_callers_may_introspect(api: Api) -> None:
    result = await api.gql("{ __schema { queryType { name } } }", as_="cs")

    assert result["data"]["__schema"]["queryType"]["name"] == "Query"
