"""SQLModel tables; Alembic reads SQLModel.metadata (migrations/env.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


Row = TypeVar("Row", bound=SQLModel)


def unvalidated(table: type[Row], values: dict[str, Any]) -> Row:
    """A row object from values already checked (every column given), built the way the ORM
    builds the rows it loads: without pydantic's validation, which cost 100 µs a card, as
    much as the rest of a post's Python. Not added to any session."""
    sa.orm.configure_mappers()  # a no-op once done (at the first query)
    row: Row = table._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    row.__dict__.update(values)
    return row


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), nullable=False)


class Board(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    join_code: str = Field(max_length=16, unique=True, index=True)
    title: str = Field(max_length=120)
    question: str = Field(default="", max_length=500)
    template: str = Field(max_length=40)
    phase: str = Field(default="collecte", max_length=20)
    locked: bool = False
    anonymous: bool = True  # no pseudonym stored or shown, not even to the animator
    silent: bool = False  # silent writing: participants see only their own cards
    vote_budget: int = 3
    max_votes_per_item: int | None = None
    results_visible: bool = False
    timer_running: bool = False
    timer_remaining: float = 0.0  # seconds left when last changed
    timer_changed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    event_id: int | None = Field(default=None, foreign_key="org_event.id", index=True,
                                 ondelete="SET NULL")
    slot: str = Field(default="", max_length=40)
    room: str = Field(default="", max_length=60)
    animator_name: str = Field(default="", max_length=60)
    animator_secret_hash: str = Field(max_length=64)
    seq: int = 0  # seq of the latest event in board_event
    frozen: bool = False  # frozen into a synthesis: no more posts, votes or moderation
    conclusion: str = Field(default="", max_length=10000)  # draft of the synthesis' conclusion
    created_at: datetime = _created()


class OrgEvent(SQLModel, table=True):
    """A day (or days) of ateliers: groups boards for the organiser and the plenary."""

    __tablename__ = "org_event"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True, index=True)
    title: str = Field(max_length=120)
    organiser_secret_hash: str = Field(max_length=64)
    created_at: datetime = _created()


class Theme(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True, ondelete="CASCADE")
    column_id: int = Field(foreign_key="board_column.id", ondelete="CASCADE")
    title: str = Field(max_length=80)


class BoardColumn(SQLModel, table=True):
    __tablename__ = "board_column"
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True, ondelete="CASCADE")
    position: int
    title: str = Field(max_length=60)
    notes: str = Field(default="", max_length=5000)  # draft of "ce que l'on retient"


class Participant(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True, ondelete="CASCADE")
    name: str | None = Field(default=None, max_length=40)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = _created()


class Card(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("board_id", "author_key", "client_id", name="uq_card_client"),
    )
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True, ondelete="CASCADE")
    column_id: int = Field(foreign_key="board_column.id", ondelete="CASCADE")
    participant_id: int | None = Field(
        default=None, foreign_key="participant.id", ondelete="SET NULL"
    )
    # "p<participant id>" or "a" (animator): scopes the idempotency key to its author.
    author_key: str = Field(max_length=24)
    client_id: str = Field(max_length=64)
    author: str | None = Field(default=None, max_length=40)  # pseudonym at posting time
    by_animator: bool = False
    text: str = Field(max_length=2000)
    hidden: bool = False
    deleted: bool = False
    theme_id: int | None = Field(default=None, foreign_key="theme.id", ondelete="SET NULL")
    merged_into: int | None = Field(default=None, foreign_key="card.id", ondelete="SET NULL")
    merged_texts: str = "[]"  # JSON list of the texts merged into this card
    seq: int  # seq of the event that created it
    created_at: datetime = _created()


class Vote(SQLModel, table=True):
    """One dot; card_id or theme_id. Who voted is never shown, only counted."""

    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True, ondelete="CASCADE")
    participant_id: int = Field(foreign_key="participant.id", index=True, ondelete="CASCADE")
    card_id: int | None = Field(default=None, foreign_key="card.id", ondelete="CASCADE")
    theme_id: int | None = Field(default=None, foreign_key="theme.id", ondelete="CASCADE")
    created_at: datetime = _created()


class BoardEvent(SQLModel, table=True):
    """Append-only log: one row per change, seq strictly increasing per board."""

    __tablename__ = "board_event"
    __table_args__ = (sa.UniqueConstraint("board_id", "seq", name="uq_event_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", ondelete="CASCADE")
    seq: int
    type: str = Field(max_length=40)
    data: str  # JSON text
    created_at: datetime = _created()


class Synthesis(SQLModel, table=True):
    """One frozen version of a board (board_id) or of an event's cross-atelier synthesis
    (event_id). ``content`` is canonical JSON; ``hash`` its SHA-256. Never updated, except
    by anonymisation or the deletion of an atelier, which the content itself records."""

    __table_args__ = (
        sa.UniqueConstraint("board_id", "version", name="uq_synthesis_board_version"),
        sa.UniqueConstraint("event_id", "version", name="uq_synthesis_event_version"),
    )
    id: int | None = Field(default=None, primary_key=True)
    board_id: int | None = Field(default=None, foreign_key="board.id", index=True,
                                 ondelete="CASCADE")
    event_id: int | None = Field(default=None, foreign_key="org_event.id", index=True,
                                 ondelete="CASCADE")
    version: int
    slug: str = Field(max_length=32, unique=True, index=True)  # the unguessable permalink
    hash: str = Field(max_length=64)
    content: str  # canonical JSON
    frozen_at: datetime = _created()
    anonymised_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class SearchDoc(SQLModel, table=True):
    """What full-text search finds: the cards, themes and notes of each board's latest
    synthesis. ``stems`` is the text folded for French (accents, plurals); SQLite indexes it
    with FTS5 (search_fts, kept in step by triggers), PostgreSQL with a tsvector index."""

    __tablename__ = "search_doc"
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True, ondelete="CASCADE")
    synthesis_id: int = Field(foreign_key="synthesis.id", ondelete="CASCADE")
    kind: str = Field(max_length=12)  # card | theme | note | conclusion
    anchor: str = Field(max_length=24)  # fragment of the synthesis page: card-12, col-3, …
    board_title: str = Field(max_length=120)
    column: str = Field(default="", max_length=60)
    text: str
    stems: str
