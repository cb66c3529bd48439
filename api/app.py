"""create_app(): Starlette routes, middleware and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from api import metrics, pages
from api.context import MINUTE, REFUSED_PREFIX
from api.downloads import download_endpoint
from api.graphql.limits import Limits
from api.leader import HousekeepingLease
from api.logging import configure_logging
from api.middleware import EdgeMiddleware
from api.outage import OutageLog, is_unavailable
from api.runtime import Runtime
from api.schema import build_schema
from api.settings import Settings, load_settings
from api.view import GRAPHIQL_DIR, LOCAL_ORIGINS, GraphQLView
from domain import ratelimit
from domain.access import ROLES, PolicyInvalid
from domain.actor import SYSTEM_ORIGIN, Origin
from domain.approvals import service as approvals
from domain.audit import service as audit
from domain.audit.service import Outcome, Subject
from domain.db import utcnow
from domain.events import webhooks
from domain.exports import service as exports
from domain.migrations import current_revision, head_revision

# How long /healthz and /readyz wait for the database before answering 503.
HEALTH_SECONDS = 1.0
log = logging.getLogger("ordergate.app")


SERVER = Subject(None, "ordergate-server", (), SYSTEM_ORIGIN)


async def _audit(runtime: Runtime, **event: Any) -> None:
    async with runtime.sessions() as session:
        await audit.record(session=session, who=SERVER, **event)
        await session.commit()


async def _reload_policy(runtime: Runtime, why: str) -> None:
    """Take a changed policy into force if it passes `policy check` and keeps every grant it
    does not declare removed; otherwise keep the one in force. A refused version is logged and
    audited once, not on every poll; missing files are one log line when they go missing and
    one when they are back."""
    before = runtime.pdp.version
    watch = runtime.policy_watch
    try:
        # Checking a policy compiles every role twice: off the event loop, so requests go on.
        changed = await asyncio.to_thread(runtime.pdp.reload, known_roles=ROLES)
    except FileNotFoundError as exc:
        if not watch.missing:
            watch.missing = True
            log.error(
                "policy file missing; the policy in force stays",
                extra={"file": str(exc.filename), "kept": before},
            )
        return
    except PolicyInvalid as exc:
        watch.missing = False
        if exc.version in watch.refused:
            return
        watch.refused.add(exc.version or "")
        log.error(
            "policy refused; keeping the previous one",
            extra={"problems": exc.problems, "refused": exc.version},
        )
        await _audit(
            runtime,
            action="policy.reload",
            outcome=Outcome.FAILURE,
            code="BAD_USER_INPUT",
            details={
                "trigger": why,
                "kept": before,
                "refused": exc.version,
                "problems": exc.problems,
            },
        )
        return
    except Exception:
        # A broken policy file must not take the service down: keep serving the last good one.
        log.exception("policy reload failed; keeping the previous policy")
        return
    if watch.missing:
        watch.missing = False
        log.info("policy files are back", extra={"version": runtime.pdp.version})
    if changed:
        log.info("policy reloaded", extra={"version": runtime.pdp.version, "trigger": why})
        await _audit(
            runtime,
            action="policy.reload",
            details={"trigger": why, "from": before, "to": runtime.pdp.version},
        )


async def _every(
    seconds: float, job: Callable[[], Awaitable[None]], what: str, outage: OutageLog
) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception as exc:
            if is_unavailable(exc):
                # The database is away: the outage's one line per interval, not a traceback
                # per job per round (92 a minute from the webhook round alone; issue #29).
                outage.failed(exc, job=what)
            else:
                log.exception(f"{what} failed; will try again")


async def _quietly(work: Awaitable[object]) -> None:
    await work


async def _expire_requests(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        expired = await approvals.expire_pending(session=session, who=SERVER, now=utcnow())
        await session.commit()
    if expired:
        log.info("approval requests expired", extra={"count": expired})


async def _export_housekeeping(runtime: Runtime) -> None:
    now = runtime.clock()
    async with runtime.sessions() as session:
        waiting = await exports.sweep(session=session, settings=runtime.exports, now=now)
        await session.commit()
    # Approved but not produced: the server stopped meanwhile, or an attempt failed and its
    # backoff has passed. Each on its own: produce() records a failure instead of raising.
    for export_id in waiting:
        await exports.produce(
            sessions=runtime.sessions,
            export_id=export_id,
            pdp=runtime.pdp,
            settings=runtime.exports,
            now=runtime.clock(),
        )


async def _purge_rate_counters(runtime: Runtime) -> None:
    """Drop ended rate-limit windows; first record one event per address and minute that had
    more anonymous refusals than the one recorded when it happened."""
    turned_away = runtime.door.drain()  # requests refused at the door (api/door.py)
    async with runtime.sessions() as session:
        ended = await ratelimit.purge(
            session=session, now=runtime.clock(), per=MINUTE, keep_prefix=REFUSED_PREFIX
        )
        for key, window, count in ended:
            address = key.removeprefix(REFUSED_PREFIX)
            at_door = turned_away.pop(address, 0)
            if count + at_door > 1:
                await audit.record(
                    session=session,
                    who=Subject(None, None, (), Origin(client_ip=address)),
                    action="auth.refusals",
                    outcome=Outcome.DENIED,
                    code="UNAUTHENTICATED",
                    details={
                        "windowStart": ratelimit.window_start(window, MINUTE).isoformat(),
                        "seconds": int(MINUTE.total_seconds()),
                        "refused": count + at_door,
                        **({"turnedAwayAtTheDoor": at_door} if at_door else {}),
                    },
                )
        # Addresses turned away at the door with no ended window to join (their logins ran
        # out, or their minute is still running): one event per address, with the count.
        for address, at_door in sorted(turned_away.items()):
            await audit.record(
                session=session,
                who=Subject(None, None, (), Origin(client_ip=address)),
                action="auth.refusals",
                outcome=Outcome.DENIED,
                code="RATE_LIMITED",
                details={"turnedAwayAtTheDoor": at_door, "until": runtime.clock().isoformat()},
            )
        await session.commit()


async def _checkpoint(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        checkpoint = await audit.create_checkpoint(session=session, key=runtime.checkpoint_key)
        await session.commit()
    if checkpoint is not None:
        log.info("audit checkpoint", extra={"seq": checkpoint.seq, "hash": checkpoint.hash})


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Starlette:
    settings = settings or load_settings()
    runtime = runtime or Runtime.build(settings)
    limits = Limits(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
    )
    view = GraphQLView(
        build_schema(production=settings.production, limits=limits, tracing=settings.tracing),
        runtime,
    )

    async def healthz(_request: Request) -> JSONResponse:
        try:
            # A load balancer's probe is answered within HEALTH_SECONDS whatever the database
            # does (frozen, partitioned): past that, the answer is 503 (issue #29: 12-17 s).
            async with asyncio.timeout(HEALTH_SECONDS):
                async with runtime.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as exc:
            runtime.outage.failed(exc, check="healthz")
            return JSONResponse(
                {"status": "unavailable"},
                status_code=503,
                headers={"retry-after": str(settings.retry_after_seconds)},
            )
        return JSONResponse({"status": "ok", "policyVersion": runtime.pdp.version})

    expected_revision = head_revision()
    metrics.POOLS.engines.add(runtime.engine)
    if metrics.AUDIT_APPEND.observe not in audit.append_observers:
        audit.append_observers.append(metrics.AUDIT_APPEND.observe)

    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus exposition. With ORDERGATE_METRICS_TOKEN set, scrapers must send it as a
        bearer token; the figures hold no personal data, but they describe the business."""
        token = settings.metrics_token
        if token and not hmac.compare_digest(
            request.headers.get("authorization", ""), f"Bearer {token}"
        ):
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": "metrics need their token",
                            "extensions": {"code": "UNAUTHENTICATED"},
                        }
                    ]
                },
                status_code=401,
            )
        # Rendering is plain CPU work: off the event loop, so a scrape never holds requests.
        body, media_type = await anyio.to_thread.run_sync(metrics.exposition)
        return Response(body, media_type=media_type)

    async def readyz(_request: Request) -> JSONResponse:
        """Ready to take traffic: the database answers and is at the migration head."""
        try:
            async with asyncio.timeout(HEALTH_SECONDS):
                async with runtime.engine.connect() as connection:
                    revision = await connection.run_sync(current_revision)
        except Exception as exc:
            runtime.outage.failed(exc, check="readyz")
            return JSONResponse(
                {"status": "not ready", "reason": "the database does not answer"},
                status_code=503,
                headers={"retry-after": str(settings.retry_after_seconds)},
            )
        if revision != expected_revision:
            return JSONResponse(
                {
                    "status": "not ready",
                    "reason": f"database at revision {revision}, code expects "
                    f"{expected_revision}: run ordergate migrate",
                },
                status_code=503,
            )
        return JSONResponse(
            {"status": "ready", "revision": revision, "policyVersion": runtime.pdp.version}
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        configure_logging()
        loop = asyncio.get_running_loop()
        background: set[asyncio.Task[None]] = set()
        worker_http: httpx.AsyncClient | None = None
        deliverer: webhooks.Deliverer | None = None

        def on_sighup() -> None:
            task = loop.create_task(_reload_policy(runtime, "SIGHUP"))
            background.add(task)
            task.add_done_callback(background.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        if settings.policy_poll_seconds > 0:
            background.add(
                asyncio.create_task(
                    _every(
                        settings.policy_poll_seconds,
                        lambda: _reload_policy(runtime, "file change"),
                        "policy reload",
                        runtime.outage,
                    )
                )
            )
        # Housekeeping runs once per deployment, in whichever process holds the lease
        # (api/leader.py); with `serve --workers N` or several machines the others skip it.
        lease = HousekeepingLease(runtime.engine, settings.data_dir)

        def led(job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                if await lease.held():
                    await job()

            return run

        background.add(
            asyncio.create_task(
                _every(
                    60,
                    led(lambda: _expire_requests(runtime)),
                    "expiring approval requests",
                    runtime.outage,
                )
            )
        )
        background.add(
            asyncio.create_task(
                _every(
                    60,
                    led(lambda: _export_housekeeping(runtime)),
                    "export housekeeping",
                    runtime.outage,
                )
            )
        )
        background.add(
            asyncio.create_task(
                _every(
                    60,
                    led(lambda: _purge_rate_counters(runtime)),
                    "rate counter purge",
                    runtime.outage,
                )
            )
        )
        if settings.audit_checkpoint_seconds > 0:
            background.add(
                asyncio.create_task(
                    _every(
                        settings.audit_checkpoint_seconds,
                        led(lambda: _checkpoint(runtime)),
                        "audit checkpoint",
                        runtime.outage,
                    )
                )
            )
        if settings.worker_in_server:
            # Development: this server delivers events itself (the leader only), so `make run`
            # is one command; production runs `ordergate worker` processes instead.
            from api.worker import deliver_round, scheduled_jobs

            jobs = scheduled_jobs(runtime)  # ScheduleInvalid here: the server does not start
            http = worker_http = httpx.AsyncClient()
            deliverer = webhooks.Deliverer(
                sessions=runtime.sessions,
                http=http,
                sealer=runtime.sealer,
                timeout_seconds=runtime.settings.webhook_timeout_seconds,
                allow_private=not runtime.settings.production,
            )
            background.add(
                asyncio.create_task(
                    _every(
                        1,
                        led(lambda: _quietly(deliver_round(runtime, http, jobs, deliverer))),
                        "webhooks",
                        runtime.outage,
                    )
                )
            )
        # Claim the lease at start, so the leader is known (and logged) from the first minute.
        with contextlib.suppress(Exception):
            await lease.held()
        try:
            yield
        finally:
            for task in list(background):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await lease.release()
            if deliverer is not None:
                await deliverer.aclose(grace_seconds=1)
            if worker_http is not None:
                await worker_http.aclose()
            if runtime.budget is not None:
                await runtime.budget.close()
            await runtime.feed.close()
            await runtime.drain(grace=settings.shutdown_grace_seconds)
            metrics.POOLS.engines.discard(runtime.engine)
            await runtime.engine.dispose()
            for replica in runtime.replica_engines:
                await replica.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", view),  # every method: the view answers others with a JSON 405
            # `orderEvents` subscriptions, over graphql-transport-ws.
            WebSocketRoute("/graphql", view),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/exports/{export_id}/download", download_endpoint(runtime), methods=["GET"]),
            # Pages for staff (the printable picking list), served in production too.
            *pages.routes(),
            # GraphiQL's assets, from the package: the page works without internet access.
            *(
                []
                if settings.production
                else [Mount("/graphiql", StaticFiles(directory=GRAPHIQL_DIR), name="graphiql")]
            ),
        ],
        middleware=[
            Middleware(EdgeMiddleware, settings=settings, door=runtime.door),
            # Browsers may call from the front-end origins listed, and from nowhere else.
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                # In development a front-end dev server on any local port works out of the box
                # (`npm run dev`); production and tests keep the explicit allow-list only.
                allow_origin_regex=LOCAL_ORIGINS if settings.env == "development" else None,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
                max_age=600,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
