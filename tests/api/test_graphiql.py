"""The GraphiQL page and its assets come from the package: no CDN at run time."""

from __future__ import annotations

import hashlib
import re

from api.view import GRAPHIQL_DIR
from tests.conftest import Api

VENDOR = GRAPHIQL_DIR / "vendor"


async def test_the_page_loads_nothing_from_another_origin(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"accept": "text/html"})

    assert response.status_code == 200
    page = response.text
    assert 'id="og-login"' in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page names its scripts and styles"
    assert all(s.startswith("/graphiql/") or s == "data:," for s in sources), sources
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    for source in sources:
        if source.startswith("/"):
            asset = await api.client.get(source)
            assert asset.status_code == 200, source
            assert b"unpkg.com" not in asset.content
            assert b"cdn.jsdelivr" not in asset.content


def test_vendored_assets_are_the_recorded_releases_with_their_licences() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    recorded = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)
    )

    assert set(recorded) == {p.name for p in VENDOR.glob("*.js")} | {
        p.name for p in VENDOR.glob("*.css")
    }
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    for licence in ("LICENSE.react", "LICENSE.react-dom", "LICENSE.graphiql"):
        assert "MIT License" in (VENDOR / licence).read_text(encoding="utf-8")
