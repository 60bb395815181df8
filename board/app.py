"""create_app() and the lifespan that owns the engine, the hub and the fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Match, Mount, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from board import assets, paths
from board.archive import Archive
from board.commands import Commands
from board.errors import RuleViolation
from board.fanout import Fanout
from board.hub import make_hub
from board.migrate import upgrade
from board.netaddr import lan_addresses
from board.ratelimit import RateLimits
from board.render import Renderer
from board.security import BodyLimit, SecurityHeaders
from board.settings import Settings
from board.store import Store
from board.web import animator, api, event_pages, pages, syntheses
from board.web.common import (
    Services,
    http_exception_handler,
    rule_violation_handler,
    server_error_handler,
)

log = logging.getLogger("board.app")
RETENTION_EVERY = 3600.0  # seconds between two retention sweeps
GC_THRESHOLDS = (10_000, 20, 100)  # Python's defaults: (700, 10, 10)


class MissingAssets(RuntimeError):
    pass


class BoardApp(Starlette):
    """Starlette, except that the live socket goes straight to its endpoint.

    None of the middleware acts on a websocket (security headers, body limit and gzip are
    HTTP's), but each layer, the router and Starlette's wrappers are coroutine frames that
    every open socket keeps suspended for hours: a few KiB per socket, times thousands of
    phones in a plenary. An exception from the endpoint reaches uvicorn, which closes the
    socket with 1011, as it did through the stack."""

    socket_route: WebSocketRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.socket_route
        if scope["type"] == "websocket" and route is not None:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope["app"] = self
                scope.update(child)
                await route.endpoint(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)


async def _retention_loop(archive: Archive, settings: Settings) -> None:
    """Anonymise boards past BOARD_RETENTION_DAYS: at start, then every hour."""
    if settings.retention_days is None:
        return
    while True:
        try:
            codes = await archive.apply_retention(settings.retention_days)
            if codes:
                log.info("retention: pseudonyms deleted from %d board(s)", len(codes))
        except Exception:  # a failed sweep is retried at the next one
            log.exception("retention sweep failed")
        await asyncio.sleep(RETENTION_EVERY)


def quiet_collector() -> None:
    """Keep Python's cyclic garbage collector off the hot path.

    With Python's defaults the young generation is examined every 700 allocations, and each
    full collection walks every object of the process (the ORM's, the templates', and each
    open socket's). What exists once the app has started lives as long as the process, so it
    is frozen out of the collections; and the young generation may grow to 10,000 objects
    before it is examined, so that a wave of arrivals (whose sockets live on) is not walked
    again and again (a 2,000-phone ramp, timed by hand with gc.callbacks: 0.55 s of
    collections -> 0.19 s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def check_assets() -> None:
    """Refuse to start without the npm files (htmx…) the pages need."""
    missing = paths.missing_vendor_files()
    if missing:
        raise MissingAssets(
            f"static/vendor is missing {', '.join(missing)}: run `npm ci` in the project "
            "folder (or `make run`, which does it) before starting the board"
        )


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> Starlette:
    settings = settings or Settings()
    check_assets()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        store = Store.open(settings.database_url, busy_timeout=settings.db_busy_timeout)
        hub = make_hub(settings.pubsub())
        renderer = Renderer(settings.timezone)
        fanout = Fanout(hub=hub, store=store, renderer=renderer,
                        presence_interval=settings.presence_interval)
        commands = Commands(store, hub, settings)
        archive = Archive(commands, pdf=importlib.util.find_spec("weasyprint") is not None)
        for env in renderer.envs.values():  # the animator's panel offers these downloads
            env.globals["exports"] = archive.exports()
        app.state.services = Services(
            settings=settings, store=store, hub=hub,
            commands=commands, renderer=renderer, fanout=fanout,
            limits=RateLimits(settings),
            lan_addresses=[] if settings.public_url else lan_addresses(), archive=archive,
        )
        quiet_collector()
        retention = asyncio.create_task(_retention_loop(archive, settings))
        try:
            yield
        finally:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await fanout.close()
            await hub.close()
            await store.close()

    app = BoardApp(
        routes=[
            *api.routes,
            *pages.routes,
            *animator.routes,
            *event_pages.routes,
            *syntheses.routes,
            # Hashed URLs (templates' asset()) and per-page bundles, gzipped once, from memory.
            Mount("/static", assets.AssetFiles(assets.load()), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, limit=settings.max_body_bytes,
                       overrides={"/api/v1/import": settings.max_import_bytes}),
            # Pages, fragments, JSON and exports (HTTP only: websockets pass through; /static
            # comes gzipped already). Bodies under 500 bytes are not worth it.
            Middleware(assets.GZipDynamic, minimum_size=500),
        ],
        exception_handlers={
            RuleViolation: rule_violation_handler,
            HTTPException: http_exception_handler,
            Exception: server_error_handler,
        },
        lifespan=lifespan,
    )
    # A trailing slash is an unknown path (JSON 404), not an empty 307 to another URL.
    app.router.redirect_slashes = False
    app.socket_route = api.events_route
    return app


def worker_app() -> Starlette:
    """One of `board serve --workers N`'s workers: settings from BOARD_* variables, and no
    migration (the parent ran it once before starting the workers)."""
    from board.cli import RedactSecrets

    logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
    return create_app(Settings(), migrate=False)
