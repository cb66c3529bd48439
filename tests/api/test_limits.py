"""Limits at and just over each bound: depth, aliases, tokens, cost, rate, body, page size."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
from graphql import GraphQLSchema

from api.graphql.limits import introspection_budget
from api.schema import build_schema
from api.settings import SettingsError
from domain.audit.keys import CheckpointKey
from domain.db import utcnow
from domain.sealed import Sealer
from tests.conftest import DEMO_PASSWORD, Api, _api_for, errors_of, settings_for

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


def pinned_clock() -> Callable[[], dt.datetime]:
    """The middle of the minute that has most recently passed it, for every call: a test's
    requests all fall into one rate-limit window, however long the test takes."""
    now = utcnow()
    middle = now.replace(second=30, microsecond=0)
    fixed = middle if middle <= now else middle - dt.timedelta(minutes=1)
    return lambda: fixed


async def _with(database_url: str, tmp_path: Path, **env: str):
    async for api in _api_for(settings_for(database_url, tmp_path, **env)):
        api.app.state.runtime.clock = pinned_clock()
        yield api


NESTED = """{ orders(first: 1) { edges { node { customer { orders(first: 1) {
    customer { orders(first: 1) { customer { addresses { city } } } } } } } } } }"""
# orders 1, edges 2, node 3, customer 4, orders 5, customer 6, orders 7, customer 8,
# addresses 9, city 10
NESTED_DEPTH = 10


@pytest.mark.parametrize(("maximum", "refused"), [(NESTED_DEPTH, False), (NESTED_DEPTH - 1, True)])
async def test_query_depth(database_url: str, tmp_path: Path, maximum: int, refused: bool) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_MAX_DEPTH=str(maximum)):
        result = await api.gql(NESTED, as_="cs")

        assert result["extensions"]["cost"]["depth"] == NESTED_DEPTH
        codes = [c for c, _ in errors_of(result)]
        assert ("QUERY_TOO_COMPLEX" in codes) is refused


@pytest.mark.parametrize(("aliases", "refused"), [(30, False), (31, True)])
async def test_aliases(api: Api, aliases: int, refused: bool) -> None:
    query = "{ " + " ".join(f"a{i}: viewer {{ username }}" for i in range(aliases)) + " }"

    result = await api.gql(query, as_="cs")

    assert (errors_of(result) == [("QUERY_TOO_COMPLEX", None)]) is refused


@pytest.mark.parametrize(("tokens", "refused"), [(2000, False), (2001, True)])
async def test_tokens(api: Api, tokens: int, refused: bool) -> None:
    # "{ viewer { username } }" is 6 tokens; pad with more fields to reach the count exactly.
    fields = " ".join(["username"] * (tokens - 5))
    query = "{ viewer { " + fields + " } }"

    result = await api.gql(query, as_="cs")

    assert (errors_of(result) == [("QUERY_TOO_COMPLEX", None)]) is refused


async def test_cost_multiplies_by_first_and_is_reported(api: Api) -> None:
    small = await api.gql(
        "{ orders(first: 10) { edges { node { number lines { sku } } } } }", as_="cs"
    )
    large = await api.gql(
        "{ orders(first: 100) { edges { node { number lines { sku } } } } }", as_="cs"
    )

    assert large["extensions"]["cost"]["requested"] > 9 * small["extensions"]["cost"]["requested"]
    assert small["extensions"]["cost"]["maximum"] == 20_000


COSTLY = "{ orders(first: 100) { edges { node { number status total customerName } } } }"
COSTLY_COST = 1 + (1 + (1 + 4)) * 100  # orders + 100 x (edges + node + 4 fields)


@pytest.mark.parametrize(("maximum", "refused"), [(COSTLY_COST, False), (COSTLY_COST - 1, True)])
async def test_cost_at_and_over_the_maximum(
    database_url: str, tmp_path: Path, maximum: int, refused: bool
) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_MAX_COST=str(maximum)):
        result = await api.gql(COSTLY, as_="cs")

        assert result["extensions"]["cost"] == {
            "requested": COSTLY_COST,
            "introspection": 0,
            "maximum": maximum,
            "depth": 4,
        }
        codes = [c for c, _ in errors_of(result)]
        assert ("QUERY_TOO_COMPLEX" in codes) is refused
        assert (result["data"] is None) is refused


async def test_a_refused_query_runs_nothing(api: Api) -> None:
    query = (
        "{ orders(first: 100) { edges { node { customer { orders(first: 50) "
        "{ lines { sku } } } } } } }"
    )

    result = await api.gql(query, as_="cs")

    assert errors_of(result) == [("QUERY_TOO_COMPLEX", None)]
    assert result["data"] is None


@pytest.mark.parametrize(("attempts", "limited"), [(3, False), (4, True)])
async def test_login_attempts_per_account(
    database_url: str, tmp_path: Path, attempts: int, limited: bool
) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_LOGIN_PER_ACCOUNT_PER_MINUTE="3"):
        results = [
            await api.gql(LOGIN, {"u": "demo-cs", "p": DEMO_PASSWORD}) for _ in range(attempts)
        ]

        last = results[-1]
        assert (errors_of(last) == [("RATE_LIMITED", None)]) is limited
        if limited:
            assert 1 <= last["errors"][0]["extensions"]["retryAfter"] <= 60


async def test_a_flood_of_logins_for_an_account_does_not_keep_its_owner_out(
    database_url: str, tmp_path: Path
) -> None:
    """Issue #30 (M5, found again by the flood bench): the per-account count was account-wide,
    so ten wrong passwords a minute from one address kept the owner out everywhere."""
    async for api in _with(database_url, tmp_path, ORDERGATE_LOGIN_PER_ACCOUNT_PER_MINUTE="3"):
        attacker = [await api.gql(LOGIN, {"u": "demo-cs", "p": "a-wrong-guess"}) for _ in range(4)]
        owner = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app, client=("198.51.100.20", 50000)),
            base_url="http://test",
        )
        async with owner:
            response = await owner.post(
                "/graphql",
                json={"query": LOGIN, "variables": {"u": "demo-cs", "p": DEMO_PASSWORD}},
            )

        assert errors_of(attacker[-1]) == [("RATE_LIMITED", None)]
        assert response.json()["data"]["login"]["accessToken"]


async def test_login_attempts_per_address_count_across_accounts(
    database_url: str, tmp_path: Path
) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_LOGIN_PER_IP_PER_MINUTE="2"):
        first = await api.gql(LOGIN, {"u": "demo-cs", "p": DEMO_PASSWORD})
        second = await api.gql(LOGIN, {"u": "demo-ops", "p": DEMO_PASSWORD})
        third = await api.gql(LOGIN, {"u": "demo-finance", "p": DEMO_PASSWORD})

        assert "errors" not in first
        assert "errors" not in second
        assert errors_of(third) == [("RATE_LIMITED", None)]


@pytest.mark.parametrize(("requests", "limited"), [(5, False), (6, True)])
async def test_query_budget_per_account(
    database_url: str, tmp_path: Path, requests: int, limited: bool
) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE="5"):
        token = await api.token("cs")
        results = [
            await api.gql("{ viewer { username } }", authorization=f"Bearer {token}")
            for _ in range(requests)
        ]
        other = await api.gql("{ viewer { username } }", as_="ops")

        assert (errors_of(results[-1]) == [("RATE_LIMITED", None)]) is limited
        assert "errors" not in other  # budgets are per account


async def test_integration_accounts_have_their_own_larger_budget(
    database_url: str, tmp_path: Path
) -> None:
    """A channel feed sends far more than a person: ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE gives
    `integration` its own budget, and everyone else keeps the per-account one."""
    async for api in _with(
        database_url,
        tmp_path,
        ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE="5",
        ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE="integration=8",
    ):
        feed = [await api.gql("{ viewer { username } }", as_="integration") for _ in range(9)]
        person = [await api.gql("{ viewer { username } }", as_="cs") for _ in range(6)]

        assert [errors_of(r) for r in feed[:8]] == [[]] * 8
        assert errors_of(feed[8]) == [("RATE_LIMITED", None)]
        assert [errors_of(r) for r in person[:5]] == [[]] * 5
        assert errors_of(person[5]) == [("RATE_LIMITED", None)]


@pytest.mark.parametrize(
    "value", ["integration", "nobody=5", "integration=lots", "integration=5,cs"]
)
def test_role_budgets_that_do_not_parse_stop_startup(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE"):
        settings_for(
            "sqlite+aiosqlite:///x.db", tmp_path, ORDERGATE_QUERIES_PER_MINUTE_BY_ROLE=value
        )


@pytest.mark.parametrize(("first", "code"), [(100, None), (101, "BAD_USER_INPUT")])
async def test_page_size(api: Api, first: int, code: str | None) -> None:
    result = await api.gql(
        "query($n: Int) { orders(first: $n) { totalCount } }", {"n": first}, as_="cs"
    )

    assert [c for c, _ in errors_of(result)] == ([code] if code else [])


@pytest.mark.parametrize(("size", "status"), [(1_000_000, 200), (1_000_001, 413)])
async def test_body_size(api: Api, size: int, status: int) -> None:
    query = "{ viewer { username } }"
    empty = f'{{"query": "{query}", "variables": {{"pad": ""}}}}'
    body = empty.replace('"pad": ""', '"pad": "' + "x" * (size - len(empty)) + '"')
    assert len(body) == size
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {await api.token('cs')}",
    }

    response = await api.client.post("/graphql", content=body.encode(), headers=headers)

    assert response.status_code == status


async def test_cors_allows_only_listed_origins(database_url: str, tmp_path: Path) -> None:
    async for api in _with(
        database_url, tmp_path, ORDERGATE_CORS_ORIGINS="https://shop.example.com"
    ):
        allowed = await api.client.options(
            "/graphql",
            headers={"origin": "https://shop.example.com", "access-control-request-method": "POST"},
        )
        refused = await api.client.options(
            "/graphql",
            headers={"origin": "https://evil.example.net", "access-control-request-method": "POST"},
        )

        assert allowed.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert "access-control-allow-origin" not in refused.headers


async def test_field_suggestions_are_off_in_production(database_url: str, tmp_path: Path) -> None:
    async for dev in _with(database_url, tmp_path):
        hinted = await dev.gql("{ viewer { usernme } }", as_="cs")
    CheckpointKey.generate_into(tmp_path / "audit.pem")
    Sealer.write_new_key(tmp_path / "secrets.key")
    async for prod in _with(
        database_url,
        tmp_path,
        ORDERGATE_ENV="production",
        ORDERGATE_AUDIT_KEY_FILE=str(tmp_path / "audit.pem"),
        ORDERGATE_SECRETS_KEY_FILE=str(tmp_path / "secrets.key"),
    ):
        plain = await prod.gql("{ viewer { usernme } }", as_="cs")

    assert "Did you mean" in hinted["errors"][0]["message"]
    assert "Did you mean" not in plain["errors"][0]["message"]


async def test_graphiql_is_not_served_in_production(database_url: str, tmp_path: Path) -> None:
    CheckpointKey.generate_into(tmp_path / "audit.pem")
    Sealer.write_new_key(tmp_path / "secrets.key")
    async for prod in _with(
        database_url,
        tmp_path,
        ORDERGATE_ENV="production",
        ORDERGATE_AUDIT_KEY_FILE=str(tmp_path / "audit.pem"),
        ORDERGATE_SECRETS_KEY_FILE=str(tmp_path / "secrets.key"),
    ):
        page = await prod.client.get("/graphql", headers={"accept": "text/html"})
        asset = await prod.client.get("/graphiql/vendor/graphiql.min.js")

        assert "graphiql" not in page.text.lower()
        assert asset.status_code == 404


@pytest.mark.parametrize(
    ("mode", "origin", "allowed"),
    [
        ("development", "http://localhost:5173", True),
        ("development", "http://127.0.0.1:3000", True),
        ("development", "http://localhost.evil.example", False),
        ("development", "https://evil.example.net", False),
        ("test", "http://localhost:5173", False),
    ],
)
async def test_development_allows_local_front_end_servers(
    database_url: str, tmp_path: Path, mode: str, origin: str, allowed: bool
) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_ENV=mode):
        answer = await api.client.options(
            "/graphql", headers={"origin": origin, "access-control-request-method": "POST"}
        )

        assert (answer.headers.get("access-control-allow-origin") == origin) is allowed


def test_the_schema_lists_every_error_code() -> None:
    from api.errors import ErrorCode
    from domain import errors

    raised = {
        cls.code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "code")
    }
    contract = {
        "UNAUTHENTICATED", "FORBIDDEN", "BAD_USER_INPUT", "NOT_FOUND", "CONFLICT",
        "INVALID_TRANSITION", "INSUFFICIENT_STOCK", "SIGNATURE_INVALID", "SEPARATION_OF_DUTIES",
        "QUERY_TOO_COMPLEX", "RATE_LIMITED", "UNAVAILABLE", "INTERNAL",
    }  # fmt: skip

    assert {c.value for c in ErrorCode} == contract
    assert raised <= contract


async def test_each_refusal_says_which_limit_and_by_how_much(
    database_url: str, tmp_path: Path
) -> None:
    settings = {
        "ORDERGATE_MAX_DEPTH": "3",
        "ORDERGATE_MAX_ALIASES": "1",
        "ORDERGATE_MAX_COST": "10",
    }
    async for api in _with(database_url, tmp_path, **settings):
        deep = await api.gql(
            "{ orders(first: 1) { edges { node { customer { id } } } } }", as_="cs"
        )
        aliased = await api.gql("{ a: viewer { username } b: viewer { username } }", as_="cs")
        costly = await api.gql("{ orders(first: 20) { totalCount } }", as_="cs")

    assert deep["errors"][0]["message"] == "query depth 5 is over the maximum of 3"
    assert aliased["errors"][0]["message"] == "2 aliases are over the maximum of 1"
    assert costly["errors"][0]["message"] == (
        "query cost 21 is over the maximum of 10; ask for fewer items per page or fewer nested "
        "lists"
    )


async def test_too_much_introspection_is_refused_with_its_budget_named(api: Api) -> None:
    query = (
        "{ "
        + " ".join(
            f"a{i}: __schema {{ types {{ name description fields {{ name description "
            f"args {{ name description }} }} }} }}"
            for i in range(29)
        )
        + " }"
    )

    result = await api.gql(query, as_="cs")

    message = result["errors"][0]["message"]
    assert message.startswith("introspection cost ")
    assert message.endswith(
        f"is over the maximum of {introspection_budget(build_schema()._schema)} "
        "(one full introspection of this schema, and half again)"
    )


def _introspection_padding(schema: GraphQLSchema, remaining: int, max_pieces: int) -> str:
    """Aliased `__type`/`__schema` selections whose introspection cost adds up to exactly
    `remaining`, in as few pieces as possible (each costs what `measure` says, on this schema)."""
    from graphql import parse
    from graphql.utilities import get_operation_ast

    from api.graphql.limits import measure

    shapes = [
        '__type(name: "Order") { name }',
        '__type(name: "Order") { name kind }',
        '__type(name: "Order") { fields { name } }',
        '__type(name: "Order") { fields { name args { name } } }',
        "__schema { directives { name } }",
        "__schema { types { name } }",
        "__schema { types { enumValues { name } } }",
        "__schema { types { fields { name } } }",
        "__schema { types { fields { name type { name } } } }",
        # Larger pieces, so a growing schema's half-again budget fits in few aliases.
        "__schema { types { fields { name type { name } args { name } } } }",
        "__schema { types { fields { name type { name kind } args { name type { name } } } } }",
    ]
    costs: dict[int, str] = {}
    for shape in shapes:
        document = parse("{ " + shape + " }")
        costs.setdefault(
            measure(schema, document, get_operation_ast(document), None).introspection, shape
        )
    # Fewest pieces for each total up to `remaining` (coin change).
    fewest: list[list[int] | None] = [[]] + [None] * remaining
    for total in range(1, remaining + 1):
        for cost in costs:
            before = fewest[total - cost] if cost <= total else None
            if before is not None and (
                fewest[total] is None or len(before) + 1 < len(fewest[total])
            ):
                fewest[total] = [*before, cost]
    pieces = fewest[remaining]
    assert pieces is not None
    assert len(pieces) <= max_pieces
    return " ".join(f"pad{i}: {costs[cost]}" for i, cost in enumerate(pieces))


@pytest.mark.parametrize("over", [0, 1])
async def test_introspection_exactly_at_its_budget_runs_and_one_more_is_refused(
    api: Api, over: int
) -> None:
    from graphql import get_introspection_query, parse
    from graphql.utilities import get_operation_ast

    from api.graphql.limits import measure

    schema = build_schema()._schema
    full = get_introspection_query(descriptions=True)
    document = parse(full)
    full_cost = measure(schema, document, get_operation_ast(document), None).introspection
    budget = introspection_budget(schema)
    padding = _introspection_padding(schema, budget - full_cost + over, max_pieces=29)
    query = full.replace("query IntrospectionQuery {", "query IntrospectionQuery { " + padding, 1)

    result = await api.gql(query, as_="cs")

    if over:
        assert result["errors"][0]["message"] == (
            f"introspection cost {budget + 1} is over the maximum of {budget} "
            "(one full introspection of this schema, and half again)"
        )
        assert result.get("data") is None
    else:
        assert "errors" not in result
        assert result["extensions"]["cost"]["introspection"] == budget
        assert result["data"]["__schema"]["queryType"]["name"] == "Query"


def _at(minute: dt.datetime, second: float) -> Callable[[], dt.datetime]:
    moment = minute + dt.timedelta(seconds=second)
    return lambda: moment


async def _ask_at(
    api: Api, headers: dict[str, str], minute: dt.datetime, at: float
) -> list[tuple[str, str | None]]:
    api.app.state.runtime.clock = _at(minute, at)
    return errors_of(await api.gql("{ viewer { username } }", **headers))


async def test_a_burst_on_both_sides_of_a_minute_boundary_cannot_spend_the_budget_twice(
    database_url: str, tmp_path: Path
) -> None:
    async for api in _with(database_url, tmp_path, ORDERGATE_QUERIES_PER_ACCOUNT_PER_MINUTE="6"):
        headers = {"authorization": f"Bearer {await api.token('cs')}"}
        minute = utcnow().replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
        ask = partial(_ask_at, api, headers, minute)
        before = [await ask(58) for _ in range(6)]
        just_after = await ask(61)  # a new minute, but the last one's burst is a second old
        # 58 s into the new minute the old burst weighs 7 x 2/60 (the refused hit counted too)
        later = [await ask(118) for _ in range(4)]

        assert before == [[]] * 6
        assert just_after == [("RATE_LIMITED", None)]
        assert later == [[]] * 4


def _doubling_chain(n: int) -> str:
    """`F0` spreads `F1` twice, `F1` spreads `F2` twice…: 2^n fields when executed, a few
    hundred bytes when sent (issue #30, H1)."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n))
    return f"query {{ ...F0 }} {chain} fragment F{n} on Query {{ __typename }}"


def test_walking_a_doubling_fragment_chain_is_linear_in_the_document() -> None:
    """Both walkers that run before authentication finish a 2^150 chain at once (each
    fragment is measured once); before, n=20 held the event loop for 9 s and n=150 never
    finished. Run in a thread with a deadline so a regression fails instead of hanging."""
    import threading

    from graphql import parse

    from api.graphql.inputs import input_problem
    from api.graphql.limits import measure

    schema = build_schema()._schema
    document = parse(_doubling_chain(150))
    [operation] = [d for d in document.definitions if d.kind == "operation_definition"]
    found: dict[str, object] = {}

    def walk() -> None:
        found["measure"] = measure(schema, document, operation, None)
        found["input"] = input_problem(document, operation, None, None)

    walker = threading.Thread(target=walk, daemon=True)
    walker.start()
    walker.join(timeout=20)

    assert not walker.is_alive(), "walking the fragment chain did not finish within 20 s"
    assert found["measure"].cost == 2**150  # type: ignore[attr-defined]
    assert found["input"] is None


async def test_an_anonymous_doubling_fragment_chain_is_refused_and_the_server_answers(
    api: Api,
) -> None:
    refused = await api.gql(_doubling_chain(150))
    health = await api.client.get("/healthz")

    assert errors_of(refused)[0][0] in {"QUERY_TOO_COMPLEX", "UNAUTHENTICATED"}
    assert health.status_code == 200
