from pathlib import Path

from api.schema import sdl


def test_schema_graphql_matches_the_code() -> None:
    committed = (Path(__file__).resolve().parent.parent / "schema.graphql").read_text()

    assert committed == sdl(), "schema.graphql is stale: run `make schema` and commit it"


def test_every_field_of_a_governed_type_is_in_the_policy_catalogue() -> None:
    """A field added to a type but not to `RESOURCES` would be NONE for everyone; one in the
    catalogue but not the schema would be a policy line about nothing. Both fail here."""
    from api.graphql.approvals import APPROVAL_REQUEST
    from api.graphql.exports import EXPORT_REQUEST
    from api.graphql.inventory import STOCK_MOVEMENT
    from api.graphql.types import PROJECTIONS
    from api.schema import build_schema
    from domain.access import RESOURCES

    schema = build_schema()._schema

    for type_name, fields in RESOURCES.items():
        graphql_type = schema.get_type(type_name)
        assert graphql_type is not None, type_name
        assert set(graphql_type.fields) == set(fields), type_name
        projection = {
            "ApprovalRequest": APPROVAL_REQUEST,
            "ExportRequest": EXPORT_REQUEST,
            "StockMovement": STOCK_MOVEMENT,
        }.get(type_name, PROJECTIONS.get(type_name))
        projected = {c.split(".", 1)[1] for _, c, _ in projection.fields}
        resolved_elsewhere = {
            "Customer": {
                "orders",
                "orderCount",
                "totalSpent",
                "totalSpentCurrency",
                "lastOrderAt",
                "channels",
                "returns",
                "contactHistory",
            },
            "ExportRequest": {"downloadUrl"},
        }.get(type_name, set())
        assert projected | resolved_elsewhere == set(fields), type_name
        for name, field in graphql_type.fields.items():
            # A Node's id is non-null: whoever reads any field of the type reads its id
            # (tests/unit/test_policy.py), so it is never withheld.
            if name == "id" and "Node" in {i.name for i in graphql_type.interfaces}:
                assert str(field.type) == "ID!", type_name
                continue
            assert not str(field.type).endswith("!"), f"{type_name}.{name} must be nullable"
