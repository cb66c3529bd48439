from tests.conftest import Api


async def test_login_then_orders_returns_demo_orders(any_api: Api) -> None:
    result = await any_api.gql(
        "{ orders(first: 5) { totalCount edges { node { number } } } }", as_="ops"
    )

    assert "errors" not in result
    assert result["data"]["orders"]["totalCount"] == 200
    assert len(result["data"]["orders"]["edges"]) == 5
