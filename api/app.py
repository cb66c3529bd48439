"""create_app(): Starlette routes, middleware and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.logging import configure_logging
from api.middleware import EdgeMiddleware
from api.runtime import Runtime
from api.schema import build_schema
from api.settings import Settings, load_settings
from api.view import GraphQLView
from domain.access import ROLES, PolicyInvalid

log = logging.getLogger("ordergate.app")


def _reload_policy(runtime: Runtime, why: str) -> None:
    try:
        if runtime.pdp.reload(known_roles=ROLES):
            log.info("policy reloaded", extra={"version": runtime.pdp.version, "trigger": why})
    except PolicyInvalid as exc:
        log.error("policy refused; keeping the previous one", extra={"problems": exc.problems})
    except Exception:
        # A broken policy file must not take the service down: keep serving the last good one.
        log.exception("policy reload failed; keeping the previous policy")


async def _watch_policy(runtime: Runtime) -> None:
    interval = runtime.settings.policy_poll_seconds
    while True:
        await asyncio.sleep(interval)
        _reload_policy(runtime, "file change")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Starlette:
    settings = settings or load_settings()
    runtime = runtime or Runtime.build(settings)
    view = GraphQLView(build_schema(production=settings.production), runtime)

    async def healthz(_request: Request) -> JSONResponse:
        try:
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check failed")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "policyVersion": runtime.pdp.version})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        configure_logging()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, _reload_policy, runtime, "SIGHUP")
        watcher = (
            asyncio.create_task(_watch_policy(runtime))
            if settings.policy_poll_seconds > 0
            else None
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await runtime.engine.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(EdgeMiddleware, settings=settings)],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
