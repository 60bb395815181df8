"""The one place that coordinates: load → rule → store (one transaction) → publish.

HTTP pages, the JSON API, websockets and the CLI all call these functions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from board import domain
from board.errors import RuleViolation
from board.events import Event
from board.hub import Hub
from board.security import hash_secret, new_secret, secret_matches
from board.settings import Settings
from board.store import Store
from board.tables import Board, BoardColumn, Card, Participant

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


@dataclass
class BoardView:
    """A board as one caller may see it (hidden cards only for the animator)."""

    board: Board
    columns: list[BoardColumn]
    cards: list[Card]
    viewer: Actor

    @property
    def id(self) -> int:
        assert self.board.id is not None
        return self.board.id

    def cards_of(self, column_id: int | None) -> list[Card]:
        return [c for c in self.cards if c.column_id == column_id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.board.id,
            "join_code": self.board.join_code,
            "title": self.board.title,
            "question": self.board.question,
            "template": self.board.template,
            "phase": self.board.phase,
            "locked": self.board.locked,
            "seq": self.board.seq,
            "columns": [
                {
                    "id": column.id,
                    "title": column.title,
                    "cards": [card_dict(c) for c in self.cards_of(column.id)],
                }
                for column in self.columns
            ],
        }


@dataclass
class CreatedBoard:
    board: Board
    columns: list[BoardColumn]
    animator_token: str


@dataclass
class PostResult:
    card: Card
    created: bool
    event: Event | None = field(default=None)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def card_dict(card: Card) -> dict[str, Any]:
    return {
        "id": card.id,
        "column_id": card.column_id,
        "text": card.text,
        "author": card.author,
        "by_animator": card.by_animator,
        "hidden": card.hidden,
        "seq": card.seq,
        "created_at": as_utc(card.created_at).isoformat() if card.created_at else None,
    }


class Commands:
    def __init__(self, store: Store, hub: Hub, settings: Settings) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings

    # --- boards -----------------------------------------------------------------------

    async def create_board(
        self,
        *,
        title: object,
        question: object = "",
        template: object = None,
        columns: object = None,
    ) -> CreatedBoard:
        clean_title = domain.clean_line(title, field="title", limit=domain.MAX_TITLE,
                                        required=True)
        clean_question = domain.clean_line(question, field="question",
                                           limit=domain.MAX_QUESTION)
        template_id, titles = domain.board_columns(template, columns)
        token = new_secret()
        async with self.store.write() as session:
            board = Board(
                join_code=await self._free_join_code(session),
                title=clean_title,
                question=clean_question,
                template=template_id,
                animator_secret_hash=hash_secret(token),
            )
            session.add(board)
            await session.flush()
            assert board.id is not None
            cols = [BoardColumn(board_id=board.id, position=i, title=t)
                    for i, t in enumerate(titles)]
            session.add_all(cols)
            await session.flush()
        return CreatedBoard(board=board, columns=cols, animator_token=token)

    async def _free_join_code(self, session: AsyncSession) -> str:
        for _ in range(20):
            code = domain.new_join_code()
            if await self.store.board_by_code(session, code) is None:
                return code
        raise RuntimeError("could not find a free join code in 20 tries")

    async def find_board(self, join_code: str) -> Board:
        code = domain.normalize_join_code(join_code)
        async with self.store.read() as session:
            board = await self.store.board_by_code(session, code)
        if board is None:
            raise RuleViolation("unknown_board", code=code[:12])
        return board

    async def authenticate(self, board: Board, token: str | None, *,
                           required: bool = False) -> Actor:
        """Who holds this token on this board: animator, participant, or nobody."""
        if not token:
            if required:
                raise RuleViolation("auth_required")
            return PUBLIC
        if secret_matches(token, board.animator_secret_hash):
            return Actor("animator", name=None)
        assert board.id is not None
        async with self.store.read() as session:
            participant = await self.store.participant_by_token(
                session, board_id=board.id, token_hash=hash_secret(token)
            )
        if participant is None:
            raise RuleViolation("invalid_token")
        return Actor("participant", participant_id=participant.id, name=participant.name)

    async def view(self, board: Board, viewer: Actor) -> BoardView:
        assert board.id is not None
        async with self.store.read() as session:
            fresh = await session.get(Board, board.id)
            if fresh is None:
                raise RuleViolation("unknown_board", code=board.join_code)
            columns = await self.store.columns(session, board.id)
            cards = await self.store.cards(session, board.id)
        if not viewer.is_animator:
            cards = [c for c in cards if not c.hidden]
        return BoardView(board=fresh, columns=columns, cards=cards, viewer=viewer)

    # --- participants -----------------------------------------------------------------

    async def join(self, board: Board, *, name: object = None) -> tuple[Participant, str]:
        clean = domain.clean_line(name, field="name", limit=self.settings.max_name_length)
        token = new_secret()
        assert board.id is not None
        async with self.store.write() as session:
            participant = Participant(board_id=board.id, name=clean or None,
                                      token_hash=hash_secret(token))
            session.add(participant)
        return participant, token

    # --- cards ------------------------------------------------------------------------

    async def post_card(
        self, board: Board, actor: Actor, *, column_id: object, text: object,
        client_id: object = None,
    ) -> PostResult:
        if actor.role == "public":
            raise RuleViolation("auth_required")
        clean = domain.clean_text(text, limit=self.settings.max_card_length)
        if client_id is None or client_id == "":
            client_id = uuid.uuid4().hex
        if not isinstance(client_id, str | int) or len(str(client_id)) > 64:
            raise RuleViolation("invalid_field", field="client_id")
        if isinstance(column_id, str) and column_id.isdigit():
            column_id = int(column_id)
        if not isinstance(column_id, int) or isinstance(column_id, bool):
            raise RuleViolation("invalid_field", field="column_id")
        assert board.id is not None
        async with self.store.write() as session:
            existing = await self._card_by_client_id(session, board.id, actor, str(client_id))
            if existing is not None:
                return PostResult(card=existing, created=False)
            fresh = await session.get(Board, board.id)
            assert fresh is not None
            domain.check_can_post(phase=fresh.phase, locked=fresh.locked,
                                  is_animator=actor.is_animator)
            column = await session.get(BoardColumn, column_id)
            if column is None or column.board_id != board.id:
                raise RuleViolation("unknown_column")
            seq = await self.store.take_seq(session, board.id)
            card = Card(
                board_id=board.id, column_id=column_id, participant_id=actor.participant_id,
                author_key=actor.author_key, client_id=str(client_id), text=clean,
                author=actor.name, by_animator=actor.is_animator, seq=seq,
            )
            session.add(card)
            await session.flush()
            event = Event(board.id, seq, "card.posted", card_dict(card))
            self.store.log_event(session, event)
        await self.hub.publish(event)
        return PostResult(card=card, created=True, event=event)

    async def _card_by_client_id(
        self, session: AsyncSession, board_id: int, actor: Actor, client_id: str
    ) -> Card | None:
        result = await session.exec(
            select(Card).where(
                Card.board_id == board_id,
                Card.author_key == actor.author_key,
                Card.client_id == client_id,
            )
        )
        return result.first()

    async def set_hidden(self, board: Board, actor: Actor, *, card_id: int,
                         hidden: object) -> Card:
        self._require_animator(actor)
        if not isinstance(hidden, bool):
            raise RuleViolation("invalid_field", field="hidden")
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            card = await session.get(Card, card_id)
            if card is None or card.board_id != board.id:
                raise RuleViolation("unknown_card")
            if card.hidden != hidden:
                card.hidden = hidden
                seq = await self.store.take_seq(session, board.id)
                session.add(card)
                event = Event(board.id, seq, "card.hidden" if hidden else "card.restored",
                              card_dict(card))
                self.store.log_event(session, event)
        if event is not None:
            await self.hub.publish(event)
        return card

    # --- columns and settings ---------------------------------------------------------

    async def rename_column(self, board: Board, actor: Actor, *, column_id: int,
                            title: object) -> BoardColumn:
        self._require_animator(actor)
        clean = domain.clean_line(title, field="title", limit=domain.MAX_COLUMN_TITLE,
                                  required=True)
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            column = await session.get(BoardColumn, column_id)
            if column is None or column.board_id != board.id:
                raise RuleViolation("unknown_column")
            if column.title != clean:
                column.title = clean
                session.add(column)
                seq = await self.store.take_seq(session, board.id)
                event = Event(board.id, seq, "column.renamed", {"id": column.id, "title": clean})
                self.store.log_event(session, event)
        if event is not None:
            await self.hub.publish(event)
        return column

    async def update_settings(self, board: Board, actor: Actor,
                              changes: dict[str, Any]) -> dict[str, Any]:
        self._require_animator(actor)
        unknown = set(changes) - {"phase", "locked"}
        if unknown:
            raise RuleViolation("invalid_field", field=sorted(unknown)[0])
        if "phase" in changes:
            domain.check_phase(changes["phase"])
        if "locked" in changes and not isinstance(changes["locked"], bool):
            raise RuleViolation("invalid_field", field="locked")
        assert board.id is not None
        event: Event | None = None
        async with self.store.write() as session:
            fresh = await session.get(Board, board.id)
            assert fresh is not None
            before = settings_dict(fresh)
            for key, value in changes.items():
                setattr(fresh, key, value)
            after = settings_dict(fresh)
            if after != before:
                session.add(fresh)
                await session.flush()
                seq = await self.store.take_seq(session, board.id)
                event = Event(board.id, seq, "board.updated", after)
                self.store.log_event(session, event)
        if event is not None:
            await self.hub.publish(event)
        return after

    @staticmethod
    def _require_animator(actor: Actor) -> None:
        if actor.role == "public":
            raise RuleViolation("auth_required")
        if not actor.is_animator:
            raise RuleViolation("animator_only")


def settings_dict(board: Board) -> dict[str, Any]:
    return {"phase": board.phase, "locked": board.locked}
