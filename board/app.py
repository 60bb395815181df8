"""create_app() and the lifespan that owns the engine, the hub and the fan-out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from board import paths
from board.commands import Commands
from board.errors import RuleViolation
from board.fanout import Fanout
from board.hub import MemoryHub
from board.migrate import upgrade
from board.netaddr import lan_addresses
from board.ratelimit import RateLimits
from board.render import Renderer
from board.security import BodyLimit, SecurityHeaders
from board.settings import Settings
from board.store import Store, make_engine
from board.web import animator, api, event_pages, pages
from board.web.common import (
    Services,
    http_exception_handler,
    rule_violation_handler,
    server_error_handler,
)


class MissingAssets(RuntimeError):
    pass


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> Starlette:
    settings = settings or Settings()
    missing = paths.missing_vendor_files()
    if missing:
        raise MissingAssets(
            f"static/vendor is missing {', '.join(missing)}: run `npm ci` in the project "
            "folder (or `make run`, which does it) before starting the board"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        engine = make_engine(settings.database_url, busy_timeout=settings.db_busy_timeout)
        store = Store(engine)
        hub = MemoryHub()
        renderer = Renderer()
        fanout = Fanout(hub=hub, store=store, renderer=renderer,
                        presence_interval=settings.presence_interval)
        app.state.services = Services(
            settings=settings, store=store, hub=hub,
            commands=Commands(store, hub, settings), renderer=renderer, fanout=fanout,
            limits=RateLimits(settings),
            lan_addresses=[] if settings.public_url else lan_addresses(),
        )
        try:
            yield
        finally:
            await fanout.close()
            await hub.close()
            await engine.dispose()

    app = Starlette(
        routes=[
            *api.routes,
            *pages.routes,
            *animator.routes,
            *event_pages.routes,
            Mount("/static", StaticFiles(directory=paths.STATIC), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, limit=settings.max_body_bytes),
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
    return app
