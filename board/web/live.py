"""WS /api/v1/boards/{join_code}/events: replay from ?since=, then live frames.

API clients get JSON frames {"seq", "type", "data"}; pages add ?view=participant|projector|
animator&lang=fr|en and get the same frames with a rendered "content" (htmx hx-ws swaps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from board.commands import PUBLIC, Actor, settings_dict
from board.errors import RuleViolation
from board.fanout import Client
from board.render import LANGS, Audience
from board.security import animator_cookie, bearer_token, origin_allowed, participant_cookie
from board.tables import Board
from board.web.common import client_ip, error_json, find_board, services

log = logging.getLogger("board.live")

CLOSE_TRY_AGAIN = 1013  # queue overflow: reconnect and catch up
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


async def deny(websocket: WebSocket, error: RuleViolation) -> None:
    """Refuse the handshake with an HTTP status and the usual JSON error body."""
    response = error_json(error)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # server without the denial extension: plain 403
        await websocket.close(code=1008, reason=error.code)


CLOSE_TIMEOUT = 2.0  # seconds; a client that never reads cannot take its close frame either


async def close_within(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, but never wait long: a stalled reader must not keep its slot and memory."""
    with contextlib.suppress(RuntimeError, OSError, TimeoutError):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), CLOSE_TIMEOUT)


async def send(websocket: WebSocket, text: str) -> None:
    """Every frame leaves within the send timeout, or the socket is given up (TimeoutError):
    a peer that stopped reading fills the transport, and a send would otherwise wait forever —
    during a replay, on a quiet board, as much as in the live loop."""
    timeout = services(websocket).settings.ws_send_timeout
    await asyncio.wait_for(websocket.send_text(text), timeout)


def parse_since(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1  # forged: answered with a snapshot


async def events_endpoint(websocket: WebSocket) -> None:
    svc = services(websocket)
    if not origin_allowed(websocket.headers, svc.settings.allowed_origins):
        origin = websocket.headers.get("origin", "")[:80]
        log.warning("websocket refused: Origin %s", origin)
        await deny(websocket, RuleViolation("origin_not_allowed", origin=origin))
        return
    view = websocket.query_params.get("view", "api")
    lang = websocket.query_params.get("lang", "fr")
    if view not in ("api", "participant", "projector", "animator") or lang not in LANGS:
        await deny(websocket, RuleViolation("invalid_field", field="view"))
        return
    try:
        board = await find_board(websocket, websocket.path_params["join_code"])
        actor = await _actor(websocket, board, view)
        if view == "animator" and not actor.is_animator:
            raise RuleViolation("animator_only")
    except RuleViolation as error:
        await deny(websocket, error)
        return

    audience = Audience(view, lang if view != "api" else "",
                        animator=actor.is_animator and view in ("api", "animator"))
    client = Client(audience, participant_id=actor.participant_id,
                    queue_size=svc.settings.ws_queue_size)
    ip = client_ip(websocket)
    try:
        svc.limits.open_socket(ip)
    except RuleViolation as error:
        await deny(websocket, error)
        return
    try:
        await _serve(websocket, board, actor, client)
    finally:
        svc.limits.close_socket(ip)


async def _serve(websocket: WebSocket, board: Board, actor: Actor, client: Client) -> None:
    svc = services(websocket)
    audience = client.audience
    await websocket.accept()
    assert board.id is not None
    try:
        async with svc.fanout.attach(board.id, client) as feed:
            await _catch_up(websocket, board, actor, client, parse_since(
                websocket.query_params.get("since")))
            await send(websocket, svc.renderer.presence_frame(feed.participants, audience))
            await _pump(websocket, client)
    except WebSocketDisconnect:
        pass
    except TimeoutError:
        log.info("websocket of board %s stopped reading; dropped, it will resync",
                 board.join_code)
        await close_within(websocket, CLOSE_TRY_AGAIN, "too slow, reconnect")
    except (RuntimeError, OSError, RuleViolation) as exc:  # feed or storage down, socket gone
        log.info("websocket of board %s ended: %s", board.join_code, exc)
        await close_within(websocket, CLOSE_TRY_AGAIN, "try again")


async def _actor(websocket: WebSocket, board: Board, view: str) -> Actor:
    """Bearer header for API clients (strict); the page's cookie otherwise (lenient)."""
    commands = services(websocket).commands
    token = bearer_token(websocket.headers)
    if token is not None:
        return await commands.authenticate(board, token)
    name = animator_cookie if view == "animator" else participant_cookie
    cookie = websocket.cookies.get(name(board.join_code))
    try:
        return await commands.authenticate(board, cookie)
    except RuleViolation:
        return PUBLIC  # a stale cookie still lets a page watch the board


async def _catch_up(websocket: WebSocket, board: Board, actor: Actor, client: Client,
                    since: int | None) -> None:
    """Send exactly what the caller missed, or a snapshot when that is too much or unknown."""
    svc = services(websocket)
    store, renderer, audience = svc.store, svc.renderer, client.audience
    assert board.id is not None
    async with store.read() as session:
        fresh = await session.get(Board, board.id)
        assert fresh is not None
        current = fresh.seq
        far = since is None or since < 0 or since > current or (
            current - since > svc.settings.snapshot_after)
        if not far:
            assert since is not None
            events = await store.events_since(session, board_id=board.id, since=since,
                                              until=current)
            invisible = None if audience.animator else await store.invisible_card_ids(
                session, fresh, actor.participant_id)
    if far:
        # The board as this caller may see it: a participant's own cards stay in view during
        # silent writing; a projector (or an animator cookie on a public view) sees the public.
        viewer = actor if audience.animator or actor.role == "participant" else PUBLIC
        view = await svc.commands.view(fresh, viewer)
        await send(websocket, renderer.snapshot_frame(view, audience))
        client.last_seq = view.board.seq
        return
    st = settings_dict(fresh)
    for event in events:
        await send(websocket, renderer.frame(event, audience, board.join_code, st, invisible))
    client.last_seq = current


async def _pump(websocket: WebSocket, client: Client) -> None:
    """Send queued frames and read the client, in one task group: the first to end wins."""

    async def send_loop() -> None:
        async for text in client.frames():
            await send(websocket, text)

    limits = services(websocket).limits
    key = client.key

    async def receive_loop() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            # Clients have nothing to say yet (what they send is ignored), but a client that
            # floods the socket is cut off.
            try:
                limits.hit_socket(key)
            except RuleViolation:
                await close_within(websocket, CLOSE_POLICY, "too many messages")
                return

    async def overflow_watch() -> None:
        await client.overflowed.wait()

    tasks = [asyncio.create_task(coro) for coro in
             (send_loop(), receive_loop(), overflow_watch())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if client.overflowed.is_set():
        log.info("slow client cut off (queue full); it will resync")
        await close_within(websocket, CLOSE_TRY_AGAIN, "too slow, reconnect")
    for task in done:
        exc = task.exception()
        if exc is not None and not isinstance(exc, WebSocketDisconnect | asyncio.CancelledError):
            raise exc


