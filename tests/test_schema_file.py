from pathlib import Path

from api.schema import sdl


def test_schema_graphql_matches_the_code() -> None:
    committed = (Path(__file__).resolve().parent.parent / "schema.graphql").read_text()

    assert committed == sdl(), "schema.graphql is stale: run `make schema` and commit it"
