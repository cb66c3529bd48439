"""ordergate's pages: small server-sent HTML shells whose scripts read through the GraphQL API.

A page holds no data of its own. The browser signs in with `login` (the token stays in the
tab's memory) and asks `/graphql` for what it shows. The same field policy, row scope and
audit apply as to any other client, so a page cannot show more than its user may read.
Assets come from the package (`api/static/pages`): no CDN, the pages work offline. Every
response carries a strict Content-Security-Policy: scripts from this server only, no inline
script, no framing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PAGES_DIR = Path(__file__).parent / "static" / "pages"
PAGES_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": PAGES_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class _Assets(StaticFiles):
    """The pages' scripts and styles, with the pages' security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def _shell(name: str):
    html = (PAGES_DIR / name).read_text(encoding="utf-8")

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers=HEADERS)

    return page


def routes() -> list[Route | Mount]:
    return [
        # The list's global ID is read by the page's script and sent as a GraphQL variable.
        Route("/picking-lists/{picking_id}", _shell("picking.html"), methods=["GET"]),
        # The approver's inbox: signs with a device-bound WebCrypto key (see approvals.js).
        Route("/approvals", _shell("approvals.html"), methods=["GET"]),
        # The operations dashboard: KPIs with SVG charts, filters and open tasks.
        Route("/dashboard", _shell("dashboard.html"), methods=["GET"]),
        Mount("/assets", _Assets(directory=PAGES_DIR), name="assets"),
    ]
