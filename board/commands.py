"""The one place that coordinates: load → rule → store (one transaction) → publish.

HTTP pages, the JSON API, websockets and the CLI all call these functions.
"""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from board import domain
from board.errors import RuleViolation
from board.events import Event
from board.hub import Hub
from board.security import hash_secret, new_secret, secret_matches
from board.settings import Settings
from board.store import Store, in_session
from board.tables import (
    Board,
    BoardColumn,
    Card,
    OrgEvent,
    Participant,
    Synthesis,
    Theme,
    Vote,
    unvalidated,
    utcnow,
)

Role = Literal["animator", "participant", "public"]


@dataclass(frozen=True)
class Actor:
    role: Role
    participant_id: int | None = None
    name: str | None = None

    @property
    def is_animator(self) -> bool:
        return self.role == "animator"

    @property
    def author_key(self) -> str:
        return "a" if self.is_animator else f"p{self.participant_id}"


PUBLIC = Actor("public")


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def settings_dict(board: Board) -> dict[str, Any]:
    return {
        "phase": board.phase, "silent": board.silent, "locked": board.locked,
        "vote_budget": board.vote_budget, "max_votes_per_item": board.max_votes_per_item,
        "results_visible": board.results_visible, "anonymous": board.anonymous,
        "frozen": board.frozen,
    }


def timer_dict(board: Board, now: float | None = None) -> dict[str, Any]:
    """The timer as clients show it: seconds left now, and when it ends if running."""
    now = time.time() if now is None else now
    remaining = board.timer_remaining
    if board.timer_running and board.timer_changed_at is not None:
        remaining = max(0.0, remaining - (now - as_utc(board.timer_changed_at).timestamp()))
    ends_at = datetime.fromtimestamp(now + remaining, UTC).isoformat() if (
        board.timer_running) else None
    return {"running": board.timer_running and remaining > 0, "remaining": round(remaining),
            "ends_at": ends_at}


def card_dict(card: Card, votes: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": card.id,
        "column_id": card.column_id,
        "theme_id": card.theme_id,
        "text": card.text,
        "merged_texts": json.loads(card.merged_texts or "[]"),
        "author": card.author,
        "by_animator": card.by_animator,
        "hidden": card.hidden,
        "seq": card.seq,
        "created_at": as_utc(card.created_at).isoformat() if card.created_at else None,
    }
    if votes is not None:
        data["votes"] = votes
    return data


def theme_dict(theme: Theme, votes: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": theme.id, "column_id": theme.column_id, "title": theme.title}
    if votes is not None:
        data["votes"] = votes
    return data


@dataclass
class BoardView:
    """A board as one caller may see it."""

    board: Board
    columns: list[BoardColumn]
    cards: list[Card]
    themes: list[Theme]
    viewer: Actor
    card_votes: Counter[int] = field(default_factory=Counter)
    theme_votes: Counter[int] = field(default_factory=Counter)
    my_votes: Counter[str] = field(default_factory=Counter)  # "c12"/"t3" -> my dots
    # Frozen versions, latest first: loaded for the animator, and for others when frozen.
    syntheses: list[Synthesis] = field(default_factory=list)

    @property
    def id(self) -> int:
        assert self.board.id is not None
        return self.board.id

    @property
    def counts_visible(self) -> bool:
        return self.viewer.is_animator or self.board.results_visible

    @property
    def votes_left(self) -> int:
        return max(0, self.board.vote_budget - sum(self.my_votes.values()))

    def cards_of(self, column_id: int | None, theme_id: int | None = None) -> list[Card]:
        return [c for c in self.cards if c.column_id == column_id and c.theme_id == theme_id]

    def unthemed(self, column_id: int | None) -> list[Card]:
        return self.cards_of(column_id, None)

    def themes_of(self, column_id: int | None) -> list[Theme]:
        return [t for t in self.themes if t.column_id == column_id]

    def votes_for(self, kind: str, item_id: int | None) -> int | None:
        if not self.counts_visible or item_id is None:
            return None
        return (self.card_votes if kind == "c" else self.theme_votes)[item_id]

    def ranking(self) -> list[dict[str, Any]]:
        """Cards and themes with at least one dot, most dots first."""
        columns = {c.id: c.title for c in self.columns}
        items: list[dict[str, Any]] = []
        for card in self.cards:
            if self.card_votes[card.id or 0] and not card.hidden:
                items.append({"kind": "card", "id": card.id, "text": card.text,
                              "column_id": card.column_id, "column": columns.get(card.column_id),
                              "theme_id": card.theme_id, "votes": self.card_votes[card.id or 0]})
        for theme in self.themes:
            if self.theme_votes[theme.id or 0]:
                items.append({"kind": "theme", "id": theme.id, "text": theme.title,
                              "column_id": theme.column_id, "column": columns.get(theme.column_id),
                              "theme_id": theme.id, "votes": self.theme_votes[theme.id or 0]})
        items.sort(key=lambda item: (-item["votes"], item["kind"], item["id"]))
        return items

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.board.id,
            "join_code": self.board.join_code,
            "title": self.board.title,
            "question": self.board.question,
            "template": self.board.template,
            **settings_dict(self.board),
            "timer": timer_dict(self.board),
            "seq": self.board.seq,
            "columns": [
                {
                    "id": column.id,
                    "title": column.title,
                    "themes": [theme_dict(t, self.votes_for("t", t.id))
                               for t in self.themes_of(column.id)],
                    "cards": [card_dict(c, self.votes_for("c", c.id))
                              for c in self.cards if c.column_id == column.id],
                }
                for column in self.columns
            ],
        }


@dataclass
class CreatedBoard:
    board: Board
    columns: list[BoardColumn]
    animator_token: str


@dataclass(frozen=True, slots=True)
class BoardRef:
    """What a post or a socket needs of its board before its own transaction reads it."""

    id: int
    join_code: str


CALLERS_TTL = 30.0  # seconds a checked token is trusted without reading it again
CALLERS_MAX = 50_000  # tokens remembered (a plenary's phones, and then some)


class Callers:
    """Tokens recently checked, with their board and holder, so that a stream of posts (and a
    wave of sockets) does not read the board and the token's holder again each time.

    Safe to remember because nothing a post or a socket takes from here changes while a board
    lives: a join code, a board id, a participant's id; the animator secret is never replaced.
    A participant's name is cleared by anonymisation, which also marks the board anonymous,
    and posts read that mark in their own transaction (as they read frozen, the phase and the
    lock). A deleted board is forgotten here at once in its worker, and within the TTL in the
    others, whose transactions meanwhile find no board and refuse with unknown_board."""

    def __init__(self, ttl: float = CALLERS_TTL, size: int = CALLERS_MAX) -> None:
        self.ttl, self.size = ttl, size
        self._entries: dict[tuple[str, str], tuple[float, BoardRef, Actor]] = {}

    def get(self, code: str, token: str) -> tuple[BoardRef, Actor] | None:
        key = (code, hash_secret(token))
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self.ttl:
            del self._entries[key]
            return None
        return entry[1], entry[2]

    def put(self, code: str, token: str, ref: BoardRef, actor: Actor) -> None:
        if len(self._entries) >= self.size:  # the oldest first: dicts keep insertion order
            for key in list(self._entries)[: self.size // 10]:
                del self._entries[key]
        self._entries[(code, hash_secret(token))] = (time.monotonic(), ref, actor)

    def forget_board(self, board_id: int) -> None:
        for key in [k for k, (_, ref, _a) in self._entries.items() if ref.id == board_id]:
            del self._entries[key]


@dataclass
class PostResult:
    card: Card
    created: bool
    event: Event | None = field(default=None)


class Commands:
    def __init__(self, store: Store, hub: Hub, settings: Settings) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self.callers = Callers()

    async def _emit(self, session: AsyncSession, board_id: int, type_: str,
                    data: dict[str, Any]) -> Event:
        """Take the next seq and log the event in the caller's transaction."""
        seq = await in_session(session, lambda s: Store.take_seq(s, board_id))
        event = Event(board_id, seq, type_, data)
        self.store.log_event(session, event)
        return event

    async def _publish(self, *events: Event | None) -> None:
        """After the commit: hand the events (those that happened) to the hub, in order."""
        for event in events:
            if event is not None:
                await self.hub.publish(event)

    # --- boards -----------------------------------------------------------------------

    async def create_board(
        self,
        *,
        title: object = None,
        question: object = "",
        template: object = None,
        columns: object = None,
        anonymous: object = True,
        event_id: int | None = None,
        slot: object = "",
        room: object = "",
        animator_name: object = "",
    ) -> CreatedBoard:
        clean_title = domain.clean_line(title, field="title", limit=domain.MAX_TITLE,
                                        required=True)
        clean_question = domain.clean_line(question, field="question",
                                           limit=domain.MAX_QUESTION)
        template_id, titles = domain.board_columns(template, columns)
        if not isinstance(anonymous, bool):
            raise RuleViolation("invalid_field", field="anonymous")
        token = new_secret()
        async with self.store.write() as session:
            board = Board(
                join_code=await self._free_code(session, Board),
                title=clean_title,
                question=clean_question,
                template=template_id,
                anonymous=anonymous,
                event_id=event_id,
                animator_secret_hash=hash_secret(token),
                slot=domain.clean_line(slot, field="slot", limit=40),
                room=domain.clean_line(room, field="room", limit=60),
                animator_name=domain.clean_line(animator_name, field="animator_name", limit=60),
            )
            session.add(board)
            await session.flush()
            assert board.id is not None
            cols = [BoardColumn(board_id=board.id, position=i, title=t)
                    for i, t in enumerate(titles)]
            session.add_all(cols)
            await session.flush()
        return CreatedBoard(board=board, columns=cols, animator_token=token)

    async def _free_code(self, session: AsyncSession, table: type[Board] | type[OrgEvent]
                         ) -> str:
        for _ in range(20):
            code = domain.new_join_code()
            found = await session.exec(select(table).where(table.join_code == code)) if (
                table is Board) else await session.exec(
                    select(OrgEvent).where(OrgEvent.code == code))
            if found.first() is None:
                return code
        raise RuntimeError("could not find a free code in 20 tries")

    async def find_board(self, join_code: str) -> Board:
        code = domain.normalize_join_code(join_code)
        board = await self.store.query(lambda session: Store.board_by_code(session, code))
        if board is None:
            raise RuleViolation("unknown_board", code=code[:12])
        return board

    async def authenticate(self, board: Board, token: str | None, *,
                           required: bool = False) -> Actor:
        """Who holds this token on this board: animator, participant, or nobody."""
        board_id = board.id
        assert board_id is not None
        return await self.store.query(
            lambda session: _actor(session, board, board_id, token, required))

    async def board_and_actor(self, join_code: str, token: str | None, *,
                              required: bool = False) -> tuple[Board, Actor]:
        """find_board, then authenticate, read in one go (each API request starts so)."""
        code = domain.normalize_join_code(join_code)

        def read(session: Session) -> tuple[Board, Actor]:
            board = Store.board_by_code(session, code)
            if board is None or board.id is None:
                raise RuleViolation("unknown_board", code=code[:12])
            return board, _actor(session, board, board.id, token, required)

        return await self.store.query(read)

    async def caller(self, join_code: str, token: str | None, *,
                     required: bool = False) -> tuple[BoardRef, Actor]:
        """board_and_actor for who needs only the board's id and code: a token checked in
        the last seconds is not read again (Callers)."""
        code = domain.normalize_join_code(join_code)
        if token:
            known = self.callers.get(code, token)
            if known is not None:
                return known
        board, actor = await self.board_and_actor(code, token, required=required)
        assert board.id is not None
        ref = BoardRef(board.id, board.join_code)
        if token and actor.role != "public":
            self.callers.put(code, token, ref, actor)
        return ref, actor

    async def columns(self, board: Board) -> list[BoardColumn]:
        assert board.id is not None
        async with self.store.read() as session:
            return await self.store.columns(session, board.id)

    async def view(self, board: Board | BoardRef, viewer: Actor,
                   session: AsyncSession | None = None) -> BoardView:
        """The board as `viewer` sees it (inside a write, pass its session: Store.read)."""
        async with self.store.read(session) as reading:
            return await self._view(reading, board, viewer)

    async def _view(self, session: AsyncSession, board: Board | BoardRef,
                    viewer: Actor) -> BoardView:
        assert board.id is not None
        fresh = await session.get(Board, board.id)
        if fresh is None:
            raise RuleViolation("unknown_board", code=board.join_code)
        columns = await self.store.columns(session, board.id)
        cards = await self.store.cards(session, board.id)
        themes = list((await session.exec(
            select(Theme).where(Theme.board_id == board.id).order_by(col(Theme.id)))).all())
        votes = list((await session.exec(
            select(Vote).where(Vote.board_id == board.id))).all())
        # Versions show on the animator's panel, and to others once the board is frozen
        # (the link to the synthesis): a participant's refresh does not need them.
        syntheses = list((await session.exec(
            select(Synthesis).where(Synthesis.board_id == board.id)
            .options(defer(Synthesis.content))  # type: ignore[arg-type]
            .order_by(col(Synthesis.version).desc()))).all()) if (
                viewer.is_animator or fresh.frozen) else []
        visible = [
            c for c in cards
            if domain.card_visible(
                hidden=c.hidden, deleted=c.deleted, merged=c.merged_into is not None,
                own=viewer.participant_id is not None and c.participant_id == viewer.participant_id,
                silent=fresh.silent, is_animator=viewer.is_animator)
        ]
        view = BoardView(board=fresh, columns=columns, cards=visible, themes=themes,
                         viewer=viewer, syntheses=syntheses)
        for vote in votes:
            if vote.card_id is not None:
                view.card_votes[vote.card_id] += 1
            if vote.theme_id is not None:
                view.theme_votes[vote.theme_id] += 1
            if viewer.participant_id is not None and vote.participant_id == viewer.participant_id:
                view.my_votes[f"c{vote.card_id}" if vote.card_id else f"t{vote.theme_id}"] += 1
        return view

    # --- participants -----------------------------------------------------------------

    async def join(self, join_code: str, *, name: object = None) -> tuple[BoardRef, int, str]:
        """A new participant of the board with this code: (the board, their id, their token).

        One grouped write (Core, no ORM object): the joins of a wave share transactions and
        fsyncs, and the board is read in the same job (its code, whether it is anonymous)."""
        code = domain.normalize_join_code(join_code)
        clean = domain.clean_line(name, field="name", limit=self.settings.max_name_length)
        token = new_secret()
        token_hash = hash_secret(token)

        def add(session: Session) -> tuple[BoardRef, Actor]:
            db = session.connection()
            board = db.execute(_JOIN_BOARD, {"code": code}).first()
            if board is None:
                raise RuleViolation("unknown_board", code=code[:12])
            kept = None if board.anonymous else (clean or None)
            participant_id = db.execute(_INSERT_PARTICIPANT, {
                "board_id": board.id, "name": kept, "token_hash": token_hash,
                "created_at": utcnow()}).scalar_one()
            return (BoardRef(board.id, board.join_code),
                    Actor("participant", participant_id=participant_id, name=kept))

        ref, actor = await self.store.transact(add)
        # The new phone opens its socket next: its token need not be read back for it.
        self.callers.put(code, token, ref, actor)
        assert actor.participant_id is not None
        return ref, actor.participant_id, token

    # --- cards ------------------------------------------------------------------------

    async def post_card(
        self, board: Board | BoardRef, actor: Actor, *, column_id: object, text: object,
        client_id: object = None,
    ) -> PostResult:
        if actor.role == "public":
            raise RuleViolation("auth_required")
        clean = domain.clean_text(text, limit=self.settings.max_card_length)
        if client_id is None or client_id == "":
            client_id = uuid.uuid4().hex
        if (not isinstance(client_id, str | int) or len(str(client_id)) > 64
                or any(unicodedata.category(ch) == "Cc" for ch in str(client_id))):
            # An opaque key: no control characters (PostgreSQL cannot even store a NUL).
            raise RuleViolation("invalid_field", field="client_id")
        column_id = _as_id(column_id, "column_id")
        board_id = board.id
        assert board_id is not None

        def post(session: Session) -> PostResult:
            # Core statements, not ORM objects: this runs hundreds of times a second in a
            # plenary, and the ORM's bookkeeping cost more than SQLite's own work.
            db = session.connection()
            fresh = db.execute(_POST_BOARD, {"board_id": board_id,
                                             "column_id": column_id}).first()
            if fresh is None:
                raise RuleViolation("unknown_board", code="?")
            existing = db.execute(_POST_EXISTING, {
                "board_id": board_id, "author_key": actor.author_key,
                "client_id": str(client_id)}).scalar()
            if existing is not None:
                return PostResult(card=row_of_board(
                    session, Card, board_id, existing, "unknown_card"), created=False)
            if fresh.frozen:
                raise RuleViolation("board_frozen")
            domain.check_can_post(phase=fresh.phase, locked=fresh.locked,
                                  is_animator=actor.is_animator)
            if fresh.column_board != board_id:
                raise RuleViolation("unknown_column")
            row: dict[str, Any] = {
                "board_id": board_id, "column_id": column_id,
                "participant_id": actor.participant_id, "author_key": actor.author_key,
                "client_id": str(client_id), "text": clean,
                "author": None if fresh.anonymous else actor.name,
                "by_animator": actor.is_animator, "hidden": False, "deleted": False,
                "theme_id": None, "merged_into": None, "merged_texts": "[]",
                "seq": Store.take_seq(session, board_id), "created_at": utcnow()}
            row["id"] = db.execute(_INSERT_CARD, row).scalar_one()
            card = unvalidated(Card, row)
            event = Event(board_id, card.seq, "card.posted", _card_event(card, fresh.silent))
            Store.append_event(session, event)
            return PostResult(card=card, created=True, event=event)

        result = await self.store.transact(post)
        if result.event is not None:
            await self.hub.publish(result.event)
        return result

    async def update_card(self, board: Board, actor: Actor, *, card_id: int,
                          changes: dict[str, Any]) -> Card:
        """Animator: hide/restore, edit text, move to a column or theme (later move wins)."""
        self._require_animator(actor)
        unknown = sorted(set(changes) - {"hidden", "theme_id", "column_id", "text"})
        if unknown or not changes:
            raise RuleViolation("invalid_field", field=unknown[0] if unknown else "hidden")
        if "hidden" in changes and not isinstance(changes["hidden"], bool):
            raise RuleViolation("invalid_field", field="hidden")
        new_text = (domain.clean_text(changes["text"], limit=self.settings.max_card_length)
                    if "text" in changes else None)
        assert board.id is not None
        events: list[Event] = []
        async with self.store.write() as session:
            fresh = await self._open_board(session, board.id)
            card = await self._card(session, board.id, card_id)
            if card.deleted or card.merged_into is not None:
                raise RuleViolation("card_unavailable")
            moved = False
            if "column_id" in changes:
                column_id = _as_id(changes["column_id"], "column_id")
                await self._column(session, board.id, column_id)
                if card.column_id != column_id:
                    card.column_id, card.theme_id, moved = column_id, None, True
            if "theme_id" in changes:
                if changes["theme_id"] is None:
                    moved = moved or card.theme_id is not None
                    card.theme_id = None
                else:
                    theme = await self._theme(session, board.id,
                                              _as_id(changes["theme_id"], "theme_id"))
                    if card.theme_id != theme.id or card.column_id != theme.column_id:
                        card.theme_id, card.column_id, moved = theme.id, theme.column_id, True
            edited = new_text is not None and new_text != card.text
            if new_text is not None and edited:
                card.text = new_text  # the original stays in the event log
            visibility = "hidden" in changes and changes["hidden"] != card.hidden
            if visibility:
                card.hidden = changes["hidden"]
            session.add(card)
            await session.flush()
            if moved or edited:
                events.append(await self._emit(session, board.id, "card.updated",
                                               _card_event(card, fresh.silent)))
            if visibility:
                events.append(await self._emit(
                    session, board.id, "card.hidden" if card.hidden else "card.restored",
                    _card_event(card, fresh.silent)))
        await self._publish(*events)
        return card

    async def set_hidden(self, board: Board, actor: Actor, *, card_id: int,
                         hidden: object) -> Card:
        if not isinstance(hidden, bool):
            raise RuleViolation("invalid_field", field="hidden")
        return await self.update_card(board, actor, card_id=card_id,
                                      changes={"hidden": hidden})

    async def delete_card(self, board: Board, actor: Actor, *, card_id: int) -> None:
        self._require_animator(actor)
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            await self._open_board(session, board.id)
            card = await self._card(session, board.id, card_id)
            if not card.deleted:
                card.deleted = True
                session.add(card)
                await session.execute(sa.delete(Vote).where(col(Vote.card_id) == card_id))
                event = await self._emit(session, board.id, "card.deleted",
                                         {"id": card.id, "column_id": card.column_id})
        await self._publish(event)

    async def merge_cards(self, board: Board, actor: Actor, *, card_id: int,
                          into: object) -> Card:
        """Fold a duplicate into another card: its text and its dots go along."""
        self._require_animator(actor)
        target_id = _as_id(into, "into")
        if target_id == card_id:
            raise RuleViolation("merge_into_self")
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self._open_board(session, board.id)
            source = await self._card(session, board.id, card_id)
            target = await self._card(session, board.id, target_id)
            for card in (source, target):
                if card.deleted or card.merged_into is not None:
                    raise RuleViolation("card_unavailable")
            texts = json.loads(target.merged_texts or "[]")
            texts += [source.text, *json.loads(source.merged_texts or "[]")]
            target.merged_texts = json.dumps(texts, ensure_ascii=False)
            source.merged_into = target.id
            session.add_all([source, target])
            await session.execute(sa.update(Vote).where(col(Vote.card_id) == card_id)
                                  .values(card_id=target_id))
            await session.flush()
            votes = await self._count_votes(session, card_id=target_id)
            event = await self._emit(session, board.id, "card.merged", {
                "id": source.id, "column_id": source.column_id,
                "into": _card_event(target, fresh.silent), "votes": votes})
        await self.hub.publish(event)
        return target

    # --- columns and themes -----------------------------------------------------------

    async def rename_column(self, board: Board, actor: Actor, *, column_id: int,
                            title: object) -> BoardColumn:
        self._require_animator(actor)
        clean = domain.clean_line(title, field="title", limit=domain.MAX_COLUMN_TITLE,
                                  required=True)
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            await self._open_board(session, board.id)
            column = await self._column(session, board.id, column_id)
            if column.title != clean:
                column.title = clean
                session.add(column)
                event = await self._emit(session, board.id, "column.renamed",
                                         {"id": column.id, "title": clean})
        await self._publish(event)
        return column

    async def create_theme(self, board: Board, actor: Actor, *, column_id: object,
                           title: object) -> Theme:
        self._require_animator(actor)
        clean = domain.clean_line(title, field="title", limit=domain.MAX_THEME_TITLE,
                                  required=True)
        cid = _as_id(column_id, "column_id")
        assert board.id is not None
        async with self.store.write() as session:
            await self._open_board(session, board.id)
            await self._column(session, board.id, cid)
            theme = Theme(board_id=board.id, column_id=cid, title=clean)
            session.add(theme)
            await session.flush()
            event = await self._emit(session, board.id, "theme.created", theme_dict(theme))
        await self.hub.publish(event)
        return theme

    async def rename_theme(self, board: Board, actor: Actor, *, theme_id: int,
                           title: object) -> Theme:
        self._require_animator(actor)
        clean = domain.clean_line(title, field="title", limit=domain.MAX_THEME_TITLE,
                                  required=True)
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            await self._open_board(session, board.id)
            theme = await self._theme(session, board.id, theme_id)
            if theme.title != clean:
                theme.title = clean
                session.add(theme)
                event = await self._emit(session, board.id, "theme.updated", theme_dict(theme))
        await self._publish(event)
        return theme

    async def delete_theme(self, board: Board, actor: Actor, *, theme_id: int) -> None:
        """The theme goes; its cards stay in the column, unthemed; its dots go."""
        self._require_animator(actor)
        assert board.id is not None
        async with self.store.write() as session:
            await self._open_board(session, board.id)
            theme = await self._theme(session, board.id, theme_id)
            await session.execute(sa.update(Card).where(col(Card.theme_id) == theme_id)
                                  .values(theme_id=None))
            await session.execute(sa.delete(Vote).where(col(Vote.theme_id) == theme_id))
            await session.delete(theme)
            event = await self._emit(session, board.id, "theme.deleted",
                                     {"id": theme_id, "column_id": theme.column_id})
        await self.hub.publish(event)

    # --- settings and timer -----------------------------------------------------------

    async def update_settings(self, board: Board, actor: Actor,
                              changes: dict[str, Any]) -> dict[str, Any]:
        self._require_animator(actor)
        clean = domain.check_settings(changes)
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            fresh = await self._open_board(session, board.id)
            before = settings_dict(fresh)
            for key, value in clean.items():
                setattr(fresh, key, value)
            after = settings_dict(fresh)
            if after != before:
                session.add(fresh)
                await session.flush()
                data = dict(after)
                if before["silent"] and not after["silent"]:
                    data["revealed"] = True
                event = await self._emit(session, board.id, "board.updated", data)
        await self._publish(event)
        return after

    async def timer(self, board: Board, actor: Actor, *, action: object,
                    seconds: object = None) -> dict[str, Any]:
        self._require_animator(actor)
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self._open_board(session, board.id)
            now = time.time()
            current = timer_dict(fresh, now)
            running, remaining = domain.timer_state(
                action=action, seconds=seconds, running=current["running"],
                remaining=float(current["remaining"]))
            fresh.timer_running, fresh.timer_remaining = running, remaining
            fresh.timer_changed_at = datetime.fromtimestamp(now, UTC)
            session.add(fresh)
            await session.flush()
            state = timer_dict(fresh, now)
            event = await self._emit(session, board.id, "timer.updated", state)
        await self.hub.publish(event)
        return state

    # --- votes ------------------------------------------------------------------------

    async def vote(self, board: Board, actor: Actor, target: dict[str, Any], *,
                   remove: bool = False) -> int:
        """Put (or take back) one dot on a card or a theme; returns the dots left."""
        if actor.role == "public":
            raise RuleViolation("auth_required")
        if actor.participant_id is None:
            raise RuleViolation("invalid_token")  # the animator has no dots
        card_id, theme_id = _vote_target(target)
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self._open_board(session, board.id)
            if card_id is not None:
                card = await self._card(session, board.id, card_id)
                if card.hidden or card.deleted or card.merged_into is not None:
                    raise RuleViolation("card_unavailable")
            else:
                await self._theme(session, board.id, theme_id or 0)
            mine = (await session.exec(select(Vote).where(
                Vote.board_id == board.id, Vote.participant_id == actor.participant_id))).all()
            on_item = [v for v in mine if v.card_id == card_id and v.theme_id == theme_id]
            if remove:
                domain.check_unvote(phase=fresh.phase, my_votes_on_item=len(on_item))
                await session.delete(on_item[-1])
                left = fresh.vote_budget - len(mine) + 1
            else:
                left = domain.check_vote(
                    phase=fresh.phase, budget=fresh.vote_budget,
                    max_per_item=fresh.max_votes_per_item, my_votes=len(mine),
                    my_votes_on_item=len(on_item))
                session.add(Vote(board_id=board.id, participant_id=actor.participant_id,
                                 card_id=card_id, theme_id=theme_id))
            await session.flush()
            total = await self._count_votes(session, card_id=card_id, theme_id=theme_id)
            key = "card_id" if card_id is not None else "theme_id"
            event = await self._emit(session, board.id, "vote.changed", {
                key: card_id if card_id is not None else theme_id, "votes": total,
                "results_visible": fresh.results_visible})
        await self.hub.publish(event)
        return max(0, left)

    async def results(self, board: Board, actor: Actor) -> list[dict[str, Any]]:
        view = await self.view(board, actor)
        if not view.counts_visible:
            raise RuleViolation("results_hidden")
        return view.ranking()

    # --- events (a day of ateliers) ---------------------------------------------------

    async def create_event(self, *, title: object) -> tuple[OrgEvent, str]:
        clean = domain.clean_line(title, field="title", limit=domain.MAX_TITLE, required=True)
        token = new_secret()
        async with self.store.write() as session:
            org = OrgEvent(code=await self._free_code(session, OrgEvent), title=clean,
                           organiser_secret_hash=hash_secret(token))
            session.add(org)
            await session.flush()
        return org, token

    async def find_event(self, code: str) -> OrgEvent:
        clean = domain.normalize_join_code(code)
        async with self.store.read() as session:
            org = (await session.exec(select(OrgEvent).where(OrgEvent.code == clean))).first()
        if org is None:
            raise RuleViolation("unknown_event", code=clean[:12])
        return org

    @staticmethod
    def check_organiser(org: OrgEvent, token: str | None) -> None:
        if not token:
            raise RuleViolation("auth_required")
        if not secret_matches(token, org.organiser_secret_hash):
            raise RuleViolation("organiser_only")

    async def event_boards(self, org: OrgEvent) -> list[dict[str, Any]]:
        """Each atelier of the event with its phase and cards posted (presence added by web)."""
        async with self.store.read() as session:
            boards = list((await session.exec(
                select(Board).where(Board.event_id == org.id)
                .order_by(col(Board.slot), col(Board.id)))).all())
            counts: dict[int, int] = dict((await session.execute(
                sa.select(col(Card.board_id), sa.func.count()).where(
                    col(Card.board_id).in_([b.id for b in boards]),
                    col(Card.deleted).is_(False), col(Card.merged_into).is_(None))
                .group_by(col(Card.board_id)))).tuples().all())
        return [{"id": b.id, "join_code": b.join_code, "title": b.title, "slot": b.slot,
                 "room": b.room, "animator_name": b.animator_name, "phase": b.phase,
                 "cards": counts.get(b.id or 0, 0)} for b in boards]

    # --- helpers ----------------------------------------------------------------------

    @staticmethod
    def _require_animator(actor: Actor) -> None:
        if actor.role == "public":
            raise RuleViolation("auth_required")
        if not actor.is_animator:
            raise RuleViolation("animator_only")

    @staticmethod
    async def _board(session: AsyncSession, board_id: int) -> Board:
        return await in_session(session, lambda s: locked_board(s, board_id))

    async def _open_board(self, session: AsyncSession, board_id: int) -> Board:
        """The board row, locked, refusing any change once it is frozen into a synthesis."""
        board = await self._board(session, board_id)
        _check_open(board)
        return board

    @staticmethod
    async def _card(session: AsyncSession, board_id: int, card_id: int) -> Card:
        return await _of_board(session, Card, board_id, card_id, "unknown_card")

    @staticmethod
    async def _column(session: AsyncSession, board_id: int, column_id: int) -> BoardColumn:
        return await _of_board(session, BoardColumn, board_id, column_id, "unknown_column")

    @staticmethod
    async def _theme(session: AsyncSession, board_id: int, theme_id: int) -> Theme:
        return await _of_board(session, Theme, board_id, theme_id, "unknown_theme")

    @staticmethod
    async def _count_votes(session: AsyncSession, *, card_id: int | None = None,
                           theme_id: int | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(Vote)
        query = query.where(col(Vote.card_id) == card_id) if card_id is not None else (
            query.where(col(Vote.theme_id) == theme_id))
        return int((await session.execute(query)).scalar_one())


Owned = TypeVar("Owned", Card, BoardColumn, Theme)

# The post path's statements, built once: building a statement and its cache key each time
# cost as much as running it.
_POST_BOARD = (  # the board's rules of the moment, and which board the column is of
    sa.select(col(Board.phase), col(Board.locked), col(Board.frozen), col(Board.anonymous),
              col(Board.silent),
              sa.select(col(BoardColumn.board_id))
              .where(col(BoardColumn.id) == sa.bindparam("column_id"))
              .scalar_subquery().label("column_board"))
    .where(col(Board.id) == sa.bindparam("board_id"))
    .with_for_update(of=Board))
_POST_EXISTING = sa.select(col(Card.id)).where(
    col(Card.board_id) == sa.bindparam("board_id"),
    col(Card.author_key) == sa.bindparam("author_key"),
    col(Card.client_id) == sa.bindparam("client_id"))
_INSERT_CARD = sa.insert(Card).returning(col(Card.id))
_JOIN_BOARD = sa.select(col(Board.id), col(Board.join_code), col(Board.anonymous)).where(
    col(Board.join_code) == sa.bindparam("code"))
_INSERT_PARTICIPANT = sa.insert(Participant).returning(col(Participant.id))


async def _of_board(session: AsyncSession, table: type[Owned], board_id: int, row_id: int,
                    error: str) -> Owned:
    return await in_session(
        session, lambda s: row_of_board(s, table, board_id, row_id, error))


def row_of_board(session: Session, table: type[Owned], board_id: int, row_id: int,
                 error: str) -> Owned:
    """A row that belongs to this board; another board's row is as unknown as a missing one."""
    row = session.get(table, row_id)
    if row is None or row.board_id != board_id:
        raise RuleViolation(error)
    return row


def locked_board(session: Session, board_id: int) -> Board:
    """The board row, locked for this transaction (PostgreSQL: FOR UPDATE; SQLite's
    BEGIN IMMEDIATE already serialises writers), so rule checks see no concurrent write."""
    board = session.get(Board, board_id, with_for_update=True)
    if board is None:
        raise RuleViolation("unknown_board", code="?")
    return board


def _actor(session: Session, board: Board, board_id: int, token: str | None,
           required: bool) -> Actor:
    """Who holds this token on this board: animator, participant, or nobody."""
    if not token:
        if required:
            raise RuleViolation("auth_required")
        return PUBLIC
    if secret_matches(token, board.animator_secret_hash):
        return Actor("animator", name=None)
    participant = Store.participant_by_token(session, board_id=board_id,
                                             token_hash=hash_secret(token))
    if participant is None:
        raise RuleViolation("invalid_token")
    return Actor("participant", participant_id=participant.id, name=participant.name)


def _check_open(board: Board) -> None:
    if board.frozen:
        raise RuleViolation("board_frozen")


def _as_id(value: object, field_name: str) -> int:
    """A row id from JSON or a form: a plain non-negative integer that fits the database."""
    value = domain.parse_id(value)
    if value is None:
        raise RuleViolation("invalid_field", field=field_name)
    return value


def _card_event(card: Card, silent: bool) -> dict[str, Any]:
    """A card as a card event carries it: flagged while silent writing hides it from others."""
    data = card_dict(card)
    if silent:
        data["silent"] = True
    return data


def _vote_target(target: dict[str, Any]) -> tuple[int | None, int | None]:
    card, theme = target.get("card_id"), target.get("theme_id")
    if (card is None) == (theme is None) or set(target) - {"card_id", "theme_id"}:
        raise RuleViolation("invalid_field", field="card_id")
    return (_as_id(card, "card_id"), None) if card is not None else (
        None, _as_id(theme, "theme_id"))
