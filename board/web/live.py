"""WS /api/v1/boards/{join_code}/events: replay from ?since=, then live frames.

API clients get JSON frames {"seq", "type", "data"}; pages add ?view=participant|projector|
animator&lang=fr|en and get the same frames with a rendered "content" (htmx hx-ws swaps it).
When several frames wait for one socket (a busy board), a page gets them as one "batch" frame
whose content is theirs one after the other; API clients only with ?batch=1 (a JSON array).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy import Row
from sqlmodel import Session, col
from starlette.websockets import WebSocket, WebSocketDisconnect

from board.commands import PUBLIC, Actor, BoardRef, settings_dict
from board.domain import normalize_join_code
from board.errors import RuleViolation
from board.events import Event
from board.fanout import Client, DirectWrite, Feed, batch_text, ws_text_frame
from board.render import LANGS, Audience
from board.security import animator_cookie, bearer_token, origin_allowed, participant_cookie
from board.socket_protocol import DIRECT_WRITE
from board.store import Store
from board.tables import Board
from board.web.common import (
    client_ip,
    error_json,
    find_caller,
    services,
)

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


# Seconds a shared snapshot is reused at the same seq (a wave of arrivals); kept short so
# that nothing that changes without an event (names anonymised…) stays stale for long.
SNAPSHOT_REUSE = 2.0
_ARRIVAL = sa.select(col(Board.seq), col(Board.silent), col(Board.timer_running)).where(
    col(Board.id) == sa.bindparam("board_id"))
CLOSE_TIMEOUT = 2.0  # seconds; a client that never reads cannot take its close frame either


async def close_within(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, but never wait long: a stalled reader must not keep its slot and memory."""
    with contextlib.suppress(RuntimeError, OSError, TimeoutError):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), CLOSE_TIMEOUT)


async def send(websocket: WebSocket, text: str) -> None:
    """Every frame leaves within the send timeout, or the socket is given up (TimeoutError):
    a peer that stopped reading fills the transport, and a send would otherwise wait forever —
    during a replay, on a quiet board, as much as in the live loop. (``asyncio.timeout``, not
    ``wait_for``: no task per frame.) While the transport takes it, the frame is written
    straight to it (no ASGI layers, the catch-up of a wave of arrivals included)."""
    write = _direct_writer(websocket)
    if write is not None and write(ws_text_frame(text)):
        return
    async with asyncio.timeout(services(websocket).settings.ws_send_timeout):
        await websocket.send_text(text)


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
        board, actor = await _board_and_actor(websocket, view)
        if view == "animator" and not actor.is_animator:
            raise RuleViolation("animator_only")
    except RuleViolation as error:
        await deny(websocket, error)
        return

    audience = Audience(view, lang if view != "api" else "",
                        animator=actor.is_animator and view in ("api", "animator"))
    client = Client(audience, participant_id=actor.participant_id,
                    queue_size=svc.settings.ws_queue_size,
                    batch=websocket.query_params.get("batch") == "1")
    ip = client_ip(websocket)
    try:
        svc.limits.open_socket(ip)
    except RuleViolation as error:
        await deny(websocket, error)
        return
    try:
        await _serve(websocket, board.id, board.join_code, actor, client)
    finally:
        svc.limits.close_socket(ip)


async def _serve(websocket: WebSocket, board_id: int, code: str, actor: Actor,
                 client: Client) -> None:
    svc = services(websocket)
    audience = client.audience
    await websocket.accept()
    _forget_handshake(websocket)
    try:
        async with svc.fanout.attach(board_id, client) as feed:
            await _catch_up(websocket, board_id, code, actor, client, feed, parse_since(
                websocket.query_params.get("since")))
            await send(websocket, svc.renderer.presence_frame(feed.participants, audience))
            await _pump(websocket, client)
    except WebSocketDisconnect:
        pass
    except TimeoutError:
        log.info("websocket of board %s stopped reading; dropped, it will resync", code)
        await close_within(websocket, CLOSE_TRY_AGAIN, "too slow, reconnect")
    except (RuntimeError, OSError, RuleViolation) as exc:  # feed or storage down, socket gone
        log.info("websocket of board %s ended: %s", code, exc)
        await close_within(websocket, CLOSE_TRY_AGAIN, "try again")


def _forget_handshake(websocket: WebSocket) -> None:
    """The handshake's headers were read (Origin, token, cookie, language) and a socket lives
    for hours: its scope stops holding them (about a kilobyte per phone)."""
    websocket.scope["headers"] = []
    for cached in ("_headers", "_cookies"):  # Starlette's parsed copies, if it made them
        vars(websocket).pop(cached, None)


async def _board_and_actor(websocket: WebSocket, view: str) -> tuple[BoardRef, Actor]:
    """Bearer header for API clients (strict); the page's cookie otherwise (lenient)."""
    raw_code = websocket.path_params["join_code"]
    token = bearer_token(websocket.headers)
    if token is not None:
        return await find_caller(websocket, raw_code, token)
    name = animator_cookie if view == "animator" else participant_cookie
    cookie = websocket.cookies.get(name(normalize_join_code(raw_code)))
    try:
        return await find_caller(websocket, raw_code, cookie)
    except RuleViolation as error:
        if error.code != "invalid_token":
            raise
        return await find_caller(websocket, raw_code, None)  # a stale cookie still watches


async def _catch_up(websocket: WebSocket, board_id: int, code: str, actor: Actor,
                    client: Client, feed: Feed, since: int | None) -> None:
    """Send exactly what the caller missed, or a snapshot when that is too much or unknown."""
    if since is not None and since == feed.last_seq and not feed.deleted:
        # Already where the feed is (a page's socket opening at the seq the page was rendered
        # at, on a quiet board): nothing to replay, and what comes next comes through the feed.
        client.last_seq = since
        return
    svc = services(websocket)
    store, renderer, audience = svc.store, svc.renderer, client.audience
    # The board as this caller may see it: a participant's own cards stay in view during
    # silent writing; a projector (or an animator cookie on a public view) sees the public.
    viewer = actor if audience.animator or actor.role == "participant" else PUBLIC
    if since is None and _viewer_shares(audience, viewer):
        # A wave of newcomers: while the feed has seen nothing since the shared snapshot was
        # built, it is still the board, and reading the board's seq again would tell nothing
        # new (a shared snapshot exists only for a seq at which the board allowed one).
        known = feed.current_snapshot(audience, SNAPSHOT_REUSE)
        if known is not None:
            try:
                current, text = await asyncio.shield(known)
            except Exception:  # its build failed or was abandoned: the usual way below
                pass
            else:
                await send(websocket, text)
                client.last_seq = current
                return

    def read(session: Session) -> tuple[int, Board | Row[int, bool, bool],
                                        list[Event] | None, frozenset[int] | None]:
        # What decides between a replay and a snapshot, without the ORM: a wave of newcomers
        # needs only the seq and whether a shared snapshot serves them. That first read's seq
        # is the one replayed up to and recorded. A read is one snapshot (REPEATABLE READ on
        # PostgreSQL, see Store), so the Board read next has the same seq; were it newer,
        # recording its seq would skip what lies between.
        state = session.connection().execute(_ARRIVAL, {"board_id": board_id}).first()
        if state is None:  # deleted since its look-up
            raise RuleViolation("unknown_board", code="?")
        current = state.seq
        if since is None or since < 0 or since > current or (
                current - since > svc.settings.snapshot_after):
            return current, state, None, None  # far behind, or a newcomer: a snapshot
        fresh = session.get(Board, board_id)
        if fresh is None:
            raise RuleViolation("unknown_board", code="?")
        return current, fresh, Store.events_since(session, board_id=board_id, since=since,
                                                  until=current), (
            None if audience.animator else Store.invisible_card_ids(
                session, fresh, actor.participant_id))

    current, fresh, events, invisible = await store.query(read)
    far = events is None
    if far:
        # A wave of arrivals on a quiet board asks for the same snapshot again and again:
        # when it cannot depend on who asks, it is built once per (audience, seq), and those
        # who ask while it is being built wait for that one.

        async def build() -> tuple[int, str]:
            view = await svc.commands.view(BoardRef(board_id, code), viewer)
            return view.board.seq, renderer.snapshot_frame(view, audience)

        if _snapshot_shared(fresh, audience, viewer):
            current, text = await feed.shared_snapshot(audience, current, build,
                                                       SNAPSHOT_REUSE)
        else:
            current, text = await build()
        await send(websocket, text)
        client.last_seq = current
        return
    assert isinstance(fresh, Board)
    st = settings_dict(fresh)
    for event in events or ():
        await send(websocket, renderer.frame(event, audience, fresh.join_code, st, invisible))
    client.last_seq = current


def _snapshot_shared(board: Board | Row[int, bool, bool], audience: Audience,
                     viewer: Actor) -> bool:
    """Whether this snapshot is the same for everyone of this audience at this seq: not for
    animators (hidden cards), not during silent writing (each sees their own cards), not for a
    participant's page (their dots), not while the timer runs (it holds the seconds left)."""
    return not (board.silent or board.timer_running) and _viewer_shares(audience, viewer)


def _viewer_shares(audience: Audience, viewer: Actor) -> bool:
    """The part of _snapshot_shared that does not depend on the board."""
    if audience.animator or viewer.is_animator:
        return False
    return not audience.html or viewer.participant_id is None


async def _pump(websocket: WebSocket, client: Client) -> None:
    """Live frames out, the client's messages in. This task reads; frames go straight to the
    transport while the socket keeps up (``Client.direct``); a backlog is sent by a writer task
    that lives only as long as the backlog. When several frames wait, pages get them as one
    message (as do API clients that asked with ?batch=1). Overflow, a send timeout or a dead
    socket in the writer stops the reading too."""
    html, batch = client.audience.html, client.batch
    limits = services(websocket).limits
    me = asyncio.current_task()
    assert me is not None
    reading = True
    stopped = False
    writer: asyncio.Task[None] | None = None
    failure: BaseException | None = None

    def stop() -> None:
        nonlocal stopped
        if reading and not stopped:
            stopped = True
            me.cancel()

    async def send_backlog() -> None:
        nonlocal writer, failure
        try:
            while not client.overflowed:
                frames = client.take()
                if not frames:
                    break
                if len(frames) == 1:
                    await send(websocket, frames[0].text)
                elif batch:
                    await send(websocket, batch_text(frames, html=html))
                else:
                    for frame in frames:
                        await send(websocket, frame.text)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # timeout, socket gone: this socket is over
            failure = exc
            stop()
            return
        finally:
            client.writing = False
            writer = None
        if client.overflowed:
            stop()

    def wake() -> None:
        nonlocal writer
        if client.overflowed:
            stop()
        elif writer is None:
            client.writing = True
            writer = asyncio.create_task(send_backlog())

    client.wake = wake
    if client.overflowed or client.pending:
        wake()
    client.direct = _direct_writer(websocket)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            # Clients have nothing to say yet (what they send is ignored), but a client that
            # floods the socket is cut off.
            try:
                limits.hit_socket(client.key)
            except RuleViolation:
                reading = False
                await close_within(websocket, CLOSE_POLICY, "too many messages")
                break
    except asyncio.CancelledError:
        if not stopped or me.cancelling() > 1:
            raise  # cancelled from outside (shutdown), not by the writer
        me.uncancel()
    finally:
        reading = False
        client.wake = client.direct = None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    if client.overflowed:
        log.info("slow client cut off (queue full); it will resync")
        await close_within(websocket, CLOSE_TRY_AGAIN, "too slow, reconnect")
        return
    if failure is not None and not isinstance(failure, WebSocketDisconnect):
        raise failure


def _direct_writer(websocket: WebSocket) -> DirectWrite | None:
    """A way to write prepared frames straight to this socket's transport, or None.

    Offered by ``board serve``'s socket protocol (without compression): the ASGI ``send`` of
    each frame (several coroutine layers, one websocket frame encoded per socket) is then
    skipped, and one encoding of a frame serves a whole audience. Under another server,
    every frame takes the ASGI path."""
    write: DirectWrite | None = websocket.scope.get("extensions", {}).get(DIRECT_WRITE)
    return write
