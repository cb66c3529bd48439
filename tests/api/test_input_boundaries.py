"""The input guard's rules at their exact edges (api/graphql/inputs.py; issue #30's mutation
run of it): each length allowance at its limit and one past it, line breaks only where a PEM
needs them, keys and nested values of variables, default values, fragments, and the
operation name. The lengths and messages are written out here, not read from the code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { status } }"
REGISTER = "mutation($k: String!) { registerSigningKey(publicKey: $k) { id } }"
APPROVE = "mutation($id: ID!, $s: String!) { approveRequest(id: $id, signature: $s) { status } }"
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"
RESERVE = "mutation($i: ReserveStockInput!) { reserveStock(input: $i) { id } }"


def _first_error(result: dict[str, Any]) -> tuple[str, str]:
    error = result["errors"][0]
    return error["extensions"]["code"], error["message"]


async def _message(api: Api, query: str, variables: dict[str, Any], as_: str | None) -> str:
    result = await api.gql(query, variables, as_=as_)
    assert "errors" in result, result
    return _first_error(result)[1]


@pytest.mark.parametrize(
    ("query", "variable", "role", "limit", "others"),
    [
        (REJECT, "r", "approver", 1000, {"id": "1"}),
        (REGISTER, "k", "approver", 4096, {}),
        (APPROVE, "s", "approver", 16384, {"id": "1"}),
        (LOGIN, "p", None, 1024, {"u": "demo-cs"}),
    ],
    ids=["reason (default)", "publicKey", "signature", "password"],
)
async def test_each_argument_takes_its_length_and_not_one_more(
    api: Api, query: str, variable: str, role: str | None, limit: int, others: dict
) -> None:
    at_limit = await _message(api, query, {**others, variable: "a" * limit}, role)
    past = await api.gql(query, {**others, variable: "a" * (limit + 1)}, as_=role)

    # Refused later, by the service, for its content: not by the guard.
    assert not at_limit.startswith(("variable $", "argument "))
    assert _first_error(past) == (
        "BAD_USER_INPUT",
        f"variable ${variable} is longer than {limit} characters",
    )


async def test_a_literal_argument_is_held_to_the_same_length(api: Api) -> None:
    def literal(n: int) -> str:
        return f'mutation {{ rejectRequest(id: "1", reason: "{"b" * n}") {{ status }} }}'

    at_limit = await _message(api, literal(1000), {}, "approver")
    past = await api.gql(literal(1001), as_="approver")

    assert not at_limit.startswith(("variable $", "argument "))
    assert _first_error(past) == (
        "BAD_USER_INPUT",
        "argument reason is longer than 1000 characters",
    )


async def test_only_a_public_key_may_hold_line_breaks(api: Api) -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
    key = await _message(api, REGISTER, {"k": pem}, "approver")
    reason = await api.gql(REJECT, {"id": "1", "r": "two\nlines"}, as_="approver")
    bell = await api.gql(REGISTER, {"k": "key\u0007"}, as_="approver")

    assert "control character" not in key  # the PEM itself is refused, later
    assert _first_error(reason) == (
        "BAD_USER_INPUT",
        "variable $r contains a control character (U+000A)",
    )
    assert _first_error(bell) == (
        "BAD_USER_INPUT",
        "variable $k contains a control character (U+0007)",
    )


async def test_a_variable_takes_the_rule_of_the_argument_it_is_used_for(api: Api) -> None:
    long_pem = "-----BEGIN PUBLIC KEY-----\n" + "A" * 1500 + "\n-----END PUBLIC KEY-----\n"
    as_key = await _message(api, REGISTER, {"k": long_pem}, "approver")
    as_reason = await api.gql(REJECT, {"id": "1", "r": "c" * 1500}, as_="approver")

    assert "longer than" not in as_key
    assert "control character" not in as_key
    assert _first_error(as_reason)[1] == "variable $r is longer than 1000 characters"


async def test_keys_and_nested_values_of_a_variable_are_checked(api: Api) -> None:
    good = {
        "reference": "ok-1",
        "lines": [{"sku": "SKU-0001", "warehouse": "SH-01", "quantity": 1}],
    }
    bad_key = await api.gql(RESERVE, {"i": {**good, "x\u0000": 1}}, as_="integration")
    nested = await api.gql(RESERVE, {"i": {**good, "reference": "r\u202e"}}, as_="integration")
    in_list = await api.gql(
        RESERVE,
        {"i": {**good, "lines": [{"sku": "S\u0001", "warehouse": "SH-01", "quantity": 1}]}},
        as_="integration",
    )

    assert _first_error(bad_key) == (
        "BAD_USER_INPUT",
        "variable $i (a key) contains a control character (U+0000)",
    )
    assert _first_error(nested) == (
        "BAD_USER_INPUT",
        "variable $i.reference contains a bidirectional control character (U+202E)",
    )
    assert _first_error(in_list) == (
        "BAD_USER_INPUT",
        "variable $i.lines.sku contains a control character (U+0001)",
    )


async def test_default_values_and_strings_in_fragments_are_checked(api: Api) -> None:
    default = await api.gql(
        'mutation($id: ID! = "1", $r: String! = "' + "d" * 1001 + '") '
        "{ rejectRequest(id: $id, reason: $r) { status } }",
        as_="approver",
    )
    in_fragment = await api.gql(
        'query { ...F } fragment F on Query { order(id: "' + "e" * 1001 + '") { id } }',
        as_="cs",
    )
    inline = await api.gql(
        'query { ... on Query { order(id: "' + "f" * 1001 + '") { id } } }', as_="cs"
    )

    assert _first_error(default)[1] == "variable $r is longer than 1000 characters"
    assert _first_error(in_fragment)[1] == "argument id is longer than 1000 characters"
    assert _first_error(inline)[1] == "argument id is longer than 1000 characters"


async def test_a_string_inside_a_list_or_object_literal_is_checked(api: Api) -> None:
    in_list = await api.gql(
        'mutation { setUserRoles(username: "demo-cs", roles: ["' + "h" * 1001 + '"]) { roles } }',
        as_="admin",
    )
    in_filter = await api.gql(
        '{ orders(first: 1, filter: { customerId: "' + "j" * 1001 + '" }) { totalCount } }',
        as_="cs",
    )
    in_object = await api.gql(
        'mutation { reserveStock(input: { reference: "' + "i" * 1001 + '", lines: '
        '[{ sku: "SKU-0001", warehouse: "SH-01", quantity: 1 }] }) { id } }',
        as_="integration",
    )

    assert _first_error(in_list) == (
        "BAD_USER_INPUT",
        "argument roles is longer than 1000 characters",
    )
    assert _first_error(in_filter)[1] == "argument filter is longer than 1000 characters"
    assert _first_error(in_object)[1] == "argument input is longer than 1000 characters"


async def test_the_operation_name_takes_200_characters(api: Api) -> None:
    def named(n: int) -> dict[str, Any]:
        name = "N" * n
        return {"query": f"query {name} {{ viewer {{ username }} }}", "operationName": name}

    at_limit = (await api.post(named(200), as_="cs")).json()
    past = (await api.post(named(201), as_="cs")).json()

    assert at_limit["data"]["viewer"]["username"] == "demo-cs"
    assert _first_error(past) == (
        "BAD_USER_INPUT",
        "operationName is longer than 200 characters",
    )
    assert past["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}  # nothing else
