"""What pages, API and sockets share: the app's services, language, errors as responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from board.archive import Archive
from board.commands import Actor, BoardRef, Commands
from board.errors import RuleViolation
from board.fanout import Fanout
from board.hub import Hub
from board.netaddr import is_loopback_host
from board.ratelimit import RateLimits
from board.render import DEFAULT_LANG, LANGS, Renderer
from board.settings import Settings
from board.store import Store
from board.tables import Board

log = logging.getLogger("board.web")
T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    store: Store
    hub: Hub
    commands: Commands
    renderer: Renderer
    fanout: Fanout
    limits: RateLimits
    lan_addresses: list[str]
    archive: Archive


def services(conn: HTTPConnection) -> Services:
    svc: Services = conn.app.state.services
    return svc


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


async def find_board(conn: HTTPConnection, raw_code: str) -> Board:
    """Look a join code up; an address that keeps trying unknown codes is slowed down."""
    board, _ = await find_board_and_actor(conn, raw_code, None)
    return board


async def find_board_and_actor(conn: HTTPConnection, raw_code: str, token: str | None, *,
                               required: bool = False) -> tuple[Board, Actor]:
    """find_board, and who holds ``token`` on that board, in one read."""
    return await guarded_lookup(conn, services(conn).commands.board_and_actor(
        raw_code, token, required=required))


async def find_caller(conn: HTTPConnection, raw_code: str, token: str | None, *,
                      required: bool = False) -> tuple[BoardRef, Actor]:
    """find_board_and_actor for who needs only the board's id and code (a post, a socket):
    a token checked moments ago is not read again."""
    return await guarded_lookup(conn, services(conn).commands.caller(
        raw_code, token, required=required))


async def guarded_lookup(conn: HTTPConnection, lookup: Coroutine[Any, Any, T]) -> T:
    """A look-up of a join code: an address that keeps trying unknown codes is slowed down."""
    svc, ip = services(conn), client_ip(conn)
    try:
        await svc.limits.check("code_miss_ip", ip)
        return await lookup
    except RuleViolation as error:
        if error.code == "unknown_board":
            await svc.limits.hit("code_miss_ip", ip)
        raise
    finally:
        lookup.close()  # not awaited when the address was refused: no warning


async def limit_post(conn: HTTPConnection, join_code: str, author_key: str) -> None:
    limits = services(conn).limits
    await limits.hit("post_participant", join_code, author_key)  # "a" is per board
    await limits.hit("post_ip", client_ip(conn))


def pick_lang(conn: HTTPConnection) -> str:
    """?lang= (sockets), then the lang cookie (the switch), then the browser, then French."""
    for candidate in (conn.query_params.get("lang"), conn.cookies.get("lang")):
        if candidate in LANGS:
            return candidate
    best: tuple[float, str] | None = None
    for part in conn.headers.get("accept-language", "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower()[:2]
        if lang not in LANGS:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if best is None or q > best[0]:
            best = (q, lang)
    return best[1] if best else DEFAULT_LANG


def base_url(conn: HTTPConnection) -> str:
    configured = services(conn).settings.public_url
    if configured:
        return configured.rstrip("/")
    return str(conn.base_url).rstrip("/")


def _lan_base(conn: HTTPConnection) -> str | None:
    """This server on the LAN, when the page came through loopback (and no public URL is set):
    the address phones in the room can reach."""
    svc = services(conn)
    if svc.settings.public_url or not svc.lan_addresses:
        return None
    if not is_loopback_host(conn.url.hostname):
        return None
    port = f":{conn.url.port}" if conn.url.port else ""
    return f"http://{svc.lan_addresses[0]}{port}"


def room_url(conn: HTTPConnection) -> str:
    """Base URL for what people in the room use (the QR code, the join line, links for
    phones): never 127.0.0.1, which would send their phones nowhere."""
    return _lan_base(conn) or base_url(conn)


def lan_hint(conn: HTTPConnection) -> str | None:
    """The same page on the LAN address, for a page opened through loopback (a form's answer
    points to the home page: its address takes posts, not visits)."""
    lan = _lan_base(conn)
    if lan is None:
        return None
    return lan + (conn.url.path if conn.scope.get("method", "GET") == "GET" else "/")


def is_api(conn: HTTPConnection) -> bool:
    return conn.url.path.startswith("/api/")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


RETRY_AFTER = "2"  # seconds; for 503 unavailable and 429 too_many


def error_json(exc: RuleViolation, **extra: Any) -> JSONResponse:
    response = JSONResponse({"error": exc.to_dict(), **extra}, status_code=exc.status)
    if exc.status in (429, 503):
        response.headers["retry-after"] = RETRY_AFTER
    return response


def error_page(request: Request, exc: RuleViolation) -> HTMLResponse:
    lang = pick_lang(request)
    html = services(request).renderer.page(
        "error.html", lang, request=request, error=exc, message=exc.message(lang)
    )
    response = HTMLResponse(html, status_code=exc.status)
    if exc.status in (429, 503):
        response.headers["retry-after"] = RETRY_AFTER
    return response


def error_response(request: Request, exc: RuleViolation) -> Response:
    return error_json(exc) if is_api(request) else error_page(request, exc)


async def rule_violation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RuleViolation)
    return error_response(request, exc)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
            413: "body_too_large"}.get(exc.status_code, "bad_request")
    params: dict[str, Any] = {}
    if code == "body_too_large":
        params["limit"] = services(request).settings.max_body_bytes
    return error_response(request, RuleViolation(code, **params))


async def server_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path,
                  exc_info=exc)
    return error_response(request, RuleViolation("internal_error"))


async def read_json(request: Request, limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object, or a clear 400/413 (limit: BOARD_MAX_BODY_BYTES)."""
    return json_object(await read_body(request, limit or services(request).settings.max_body_bytes))


def json_object(body: bytes) -> dict[str, Any]:
    """Bytes that must hold one JSON object (a request body, an imported file), or 400."""
    try:
        data = json.loads(body or b"null")
        # JSON may escape lone surrogates ("\ud800"): text no database or page can hold.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise RuleViolation("invalid_json") from exc
    if not isinstance(data, dict):
        raise RuleViolation("invalid_json")
    return data


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RuleViolation("body_too_large", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RuleViolation("body_too_large", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
