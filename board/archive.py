"""Freeze, reopen, archive, search, import, the event's synthesis, and data protection.

Each command is load → rule → store (one transaction) → publish, like board.commands, whose
locking and event helpers it uses.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from board import domain, search
from board import synthesis as syn
from board.commands import Actor, Commands, as_utc, settings_dict
from board.errors import RuleViolation
from board.events import Event
from board.presets import BY_ID, FREE
from board.security import hash_secret, new_secret
from board.tables import (
    Board,
    BoardColumn,
    BoardEvent,
    Card,
    OrgEvent,
    Participant,
    SearchDoc,
    Synthesis,
    Theme,
    Vote,
)

MAX_SEARCH_RESULTS = 50
MAX_QUERY = 200
MAX_IMPORTED_PARTICIPANTS = 10_000


SLUG = re.compile(r"[A-Za-z0-9_-]+")


def new_slug() -> str:
    """A synthesis permalink: 128 random bits, so the archive cannot be walked by guessing."""
    return secrets.token_urlsafe(16)


def synthesis_path(slug: str) -> str:
    return f"/s/{slug}"


@dataclass
class Found:
    doc: SearchDoc
    slug: str


class Archive:
    def __init__(self, commands: Commands, *, pdf: bool) -> None:
        self.commands = commands
        self.store = commands.store
        self.pdf = pdf  # WeasyPrint importable: PDF exports offered

    def exports(self, event: bool = False) -> tuple[str, ...]:
        formats = ("html", "md", "json") if event else ("html", "md", "csv", "json")
        return (*formats, "pdf") if self.pdf else formats

    # --- freeze and reopen ----------------------------------------------------------------

    async def save_draft(self, board: Board, actor: Actor, *, notes: object,
                         conclusion: object) -> None:
        """Keep what the animator wrote so far (the form on the animator page)."""
        self.commands._require_animator(actor)
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self.commands._open_board(session, board.id)
            await self._write_notes(session, fresh, notes, conclusion)

    async def _write_notes(self, session: AsyncSession, board: Board, notes: object,
                           conclusion: object) -> list[BoardColumn]:
        assert board.id is not None
        columns = await self.store.columns(session, board.id)
        clean = syn.clean_notes(notes, [c.id for c in columns if c.id is not None])
        for column in columns:
            if column.id in clean:
                column.notes = clean[column.id]
                session.add(column)
        if conclusion is not None:
            board.conclusion = syn.clean_markdown(conclusion, field="conclusion",
                                                  limit=syn.MAX_CONCLUSION)
            session.add(board)
        await session.flush()
        return columns

    async def freeze(self, board: Board, actor: Actor, *, notes: object, conclusion: object,
                     lang: str) -> Synthesis:
        """A new immutable version; columns missing from ``notes`` (and a missing conclusion)
        keep the draft saved from the animator page."""
        self.commands._require_animator(actor)
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self.commands._open_board(session, board.id)
            columns = await self._write_notes(session, fresh, notes, conclusion)
            # Writers wait on the board lock we hold, so this read sees the final board.
            view = await self.commands.view(fresh, Actor("animator"), session)
            participants = (await session.execute(
                sa.select(sa.func.count()).select_from(Participant)
                .where(col(Participant.board_id) == board.id))).scalar_one()
            number = await self._next_version(session, col(Synthesis.board_id) == board.id)
            event_title = None
            if fresh.event_id is not None:
                org = await session.get(OrgEvent, fresh.event_id)
                event_title = org.title if org else None
            now = datetime.now(UTC)
            content = syn.board_content(
                view=view, version=number, frozen_at=now, lang=lang,
                participants=int(participants),
                notes={c.id: c.notes for c in columns if c.id is not None},
                conclusion=fresh.conclusion, event_title=event_title)
            version = await self._store_synthesis(session, content, board_id=board.id)
            fresh.frozen = True
            session.add(fresh)
            event = await self.commands._emit(session, board.id, "board.frozen", {
                "version": version.version, "hash": version.hash,
                "url": synthesis_path(version.slug), **settings_dict(fresh)})
        await self.commands.hub.publish(event)
        return version

    async def _store_synthesis(self, session: AsyncSession, content: dict[str, Any], *,
                               board_id: int | None = None, event_id: int | None = None,
                               ) -> Synthesis:
        frozen_at = datetime.fromisoformat(content.get("frozen_at") or content["at"])
        version = Synthesis(board_id=board_id, event_id=event_id, version=content["version"],
                            slug=new_slug(), hash=syn.content_hash(content),
                            content=syn.canonical(content), frozen_at=frozen_at)
        anonymised = content.get("anonymised")
        if anonymised:
            version.anonymised_at = datetime.fromisoformat(anonymised["at"])
        session.add(version)
        await session.flush()
        if board_id is not None:
            await self._index(session, board_id, version, content)
        return version

    async def _index(self, session: AsyncSession, board_id: int, version: Synthesis,
                     content: dict[str, Any]) -> None:
        """Search finds each board's latest synthesis (earlier versions are superseded)."""
        assert version.id is not None
        await session.execute(sa.delete(SearchDoc).where(col(SearchDoc.board_id) == board_id))
        session.add_all([SearchDoc(board_id=board_id, synthesis_id=version.id, **doc)
                         for doc in syn.search_docs(content)])
        await session.flush()

    async def reopen(self, board: Board, actor: Actor) -> dict[str, Any]:
        self.commands._require_animator(actor)
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self.commands._board(session, board.id)
            if not fresh.frozen:
                raise RuleViolation("not_frozen")
            fresh.frozen = False
            session.add(fresh)
            await session.flush()
            event = await self.commands._emit(session, board.id, "board.reopened",
                                              settings_dict(fresh))
        await self.commands.hub.publish(event)
        return settings_dict(fresh)

    # --- reading ----------------------------------------------------------------------------

    async def versions(self, board: Board) -> list[Synthesis]:
        """A board's frozen versions, oldest first (without their content)."""
        return await self._versions(col(Synthesis.board_id) == board.id)

    async def event_versions(self, org: OrgEvent) -> list[Synthesis]:
        """An event's frozen syntheses of the day, oldest first (without their content)."""
        return await self._versions(col(Synthesis.event_id) == org.id)

    async def _versions(self, owner: Any) -> list[Synthesis]:
        async with self.store.read() as session:
            return list((await session.exec(
                select(Synthesis).where(owner)
                .options(defer(Synthesis.content))  # type: ignore[arg-type]
                .order_by(col(Synthesis.version)))).all())

    @staticmethod
    async def _next_version(session: AsyncSession, owner: Any) -> int:
        last = (await session.execute(
            sa.select(sa.func.max(Synthesis.version)).where(owner))).scalar_one()
        return int(last or 0) + 1

    async def by_slug(self, slug: str) -> tuple[Synthesis, dict[str, Any]]:
        # Slugs are URL-safe base64 (new_slug); anything else is unknown without a query
        # (PostgreSQL refuses a NUL character in a string outright).
        if not slug or len(slug) > 32 or not SLUG.fullmatch(slug):
            raise RuleViolation("unknown_synthesis")
        async with self.store.read() as session:
            version = (await session.exec(
                select(Synthesis).where(Synthesis.slug == slug))).first()
        if version is None:
            raise RuleViolation("unknown_synthesis")
        return version, json.loads(version.content)

    async def listing(self) -> list[dict[str, Any]]:
        """The archive: every board's versions (latest first) and every event synthesis,
        newest first, with what the archive page groups and shows."""
        async with self.store.read() as session:
            rows = list((await session.exec(
                select(Synthesis).options(defer(Synthesis.content))  # type: ignore[arg-type]
                .order_by(col(Synthesis.frozen_at).desc(), col(Synthesis.id).desc()))).all())
            groups: dict[tuple[str, int], list[Synthesis]] = {}
            for row in rows:
                key = ("board", row.board_id) if row.board_id is not None else (
                    "event", row.event_id or 0)
                groups.setdefault(key, []).append(row)
            # What the page shows of each comes from its latest version's content only.
            latest = [versions[0].id for versions in groups.values()]
            contents = dict((await session.execute(
                sa.select(col(Synthesis.id), col(Synthesis.content))
                .where(col(Synthesis.id).in_(latest)))).tuples().all())
        entries = []
        for versions in groups.values():
            entry = _archive_entry(versions[0], json.loads(contents[versions[0].id]))
            entry["versions"] = [{"version": v.version, "slug": v.slug,
                                  "frozen_at": v.frozen_at, "hash": v.hash} for v in versions]
            entries.append(entry)
        return entries

    async def search(self, query: str) -> list[Found]:
        terms = search.query_terms(query[:MAX_QUERY])
        if not terms:
            return []
        async with self.store.read() as session:
            if self.store.engine.dialect.name == "sqlite":
                ids = (await session.execute(sa.text(
                    "SELECT rowid FROM search_fts WHERE search_fts MATCH :match "
                    "ORDER BY bm25(search_fts) LIMIT :limit"),
                    {"match": search.fts5_match(terms), "limit": MAX_SEARCH_RESULTS},
                )).scalars().all()
                condition: Any = col(SearchDoc.id).in_(list(ids))
                order: list[Any] = [col(SearchDoc.id)]
            else:
                # The expression of the GIN index (migrations/versions/0003), best first as
                # bm25 does on SQLite; ties in id order, so the page is the same every time.
                vector = sa.func.to_tsvector(sa.literal_column("'simple'"),
                                             col(SearchDoc.stems))
                tsq = sa.func.to_tsquery(sa.literal_column("'simple'"),
                                         sa.bindparam("tsq", search.tsquery(terms)))
                condition = vector.op("@@")(tsq)
                order = [sa.func.ts_rank(vector, tsq).desc(), col(SearchDoc.id)]
            rows = (await session.execute(
                sa.select(SearchDoc, col(Synthesis.slug))
                .join(Synthesis, col(Synthesis.id) == col(SearchDoc.synthesis_id))
                .where(condition).order_by(*order).limit(MAX_SEARCH_RESULTS))).tuples().all()
        found = [Found(doc=doc, slug=slug) for doc, slug in rows]
        if self.store.engine.dialect.name == "sqlite":
            rank = {doc_id: i for i, doc_id in enumerate(ids)}
            found.sort(key=lambda f: rank.get(f.doc.id or 0, 0))
        return found

    # --- import -----------------------------------------------------------------------------

    async def import_synthesis(self, data: dict[str, Any]) -> tuple[Board, Synthesis, str]:
        """Recreate an archived (frozen) board from a synthesis JSON export; the synthesis
        itself is kept byte for byte (same version, hash and content)."""
        content, _ = syn.parse_import(data)
        info = content["board"]
        try:
            title = domain.clean_line(info["title"], field="title", limit=domain.MAX_TITLE,
                                      required=True)
            fields: dict[str, Any] = {
                k: domain.clean_line(info[k], field=k, limit=limit) for k, limit in (
                    ("question", domain.MAX_QUESTION), ("slot", 40), ("room", 60),
                    ("animator_name", 60))}
        except RuleViolation as exc:
            raise RuleViolation("bad_import", reason=exc.code) from exc
        token = new_secret()
        async with self.store.write() as session:
            board = Board(
                join_code=await self.commands._free_code(session, Board), title=title,
                template=info["template"] if info["template"] in BY_ID else FREE,
                anonymous=bool(info.get("anonymous", True)), frozen=True,
                conclusion=content["conclusion"][:syn.MAX_CONCLUSION],
                animator_secret_hash=hash_secret(token), phase="restitution", **fields)
            session.add(board)
            await session.flush()
            assert board.id is not None
            await self._recreate(session, board, content)
            version = await self._store_synthesis(session, content, board_id=board.id)
        return board, version, token

    async def _recreate(self, session: AsyncSession, board: Board,
                        content: dict[str, Any]) -> None:
        """Columns, themes, cards and dots as the synthesis shows them. Dots are spread over
        stand-in participants (who cannot sign in): only their counts were ever kept."""
        assert board.id is not None
        count = min(max(int(content.get("participants") or 0), 1), MAX_IMPORTED_PARTICIPANTS)
        people = [Participant(board_id=board.id, token_hash=hash_secret(new_secret()))
                  for _ in range(count)]
        session.add_all(people)
        await session.flush()
        dots: list[Vote] = []

        board_id = board.id

        def spread(votes: int, *, card_id: int | None = None, theme_id: int | None = None
                   ) -> None:
            for _ in range(max(0, min(votes, 10_000))):
                voter = people[len(dots) % len(people)]
                assert voter.id is not None
                dots.append(Vote(board_id=board_id, participant_id=voter.id, card_id=card_id,
                                 theme_id=theme_id))

        for position, column_data in enumerate(content["columns"]):
            column = BoardColumn(board_id=board.id, position=position,
                                 title=str(column_data["title"])[:domain.MAX_COLUMN_TITLE],
                                 notes=column_data["notes"][:syn.MAX_NOTES])
            session.add(column)
            await session.flush()
            assert column.id is not None
            groups: list[tuple[int | None, list[dict[str, Any]]]] = []
            for theme_data in column_data["themes"]:
                theme = Theme(board_id=board.id, column_id=column.id,
                              title=str(theme_data["title"])[:domain.MAX_THEME_TITLE])
                session.add(theme)
                await session.flush()
                spread(theme_data["votes"], theme_id=theme.id)
                groups.append((theme.id, theme_data["cards"]))
            groups.append((None, column_data["cards"]))
            for theme_id, cards in groups:
                for card_data in cards:
                    created = card_data.get("created_at")
                    card = Card(board_id=board.id, column_id=column.id, theme_id=theme_id,
                                author_key="import", client_id=f"import-{card_data.get('id')}",
                                author=card_data.get("author"),
                                by_animator=bool(card_data.get("by_animator")),
                                text=card_data["text"][:2000],
                                merged_texts=json.dumps(card_data["merged_texts"],
                                                        ensure_ascii=False), seq=0,
                                # A time without its zone was written in UTC (as SQLite
                                # gives them back); PostgreSQL would take it as local time.
                                created_at=as_utc(datetime.fromisoformat(created)) if created
                                else datetime.now(UTC))
                    session.add(card)
                    await session.flush()
                    spread(card_data["votes"], card_id=card.id)
        session.add_all(dots)
        await session.flush()

    # --- the event's cross-atelier synthesis ------------------------------------------------

    async def event_synthesis(self, org: OrgEvent, *, lang: str, version: int | None = None,
                              session: AsyncSession | None = None) -> dict[str, Any]:
        """Live: every frozen atelier of the event as it stands now (inside a write, pass its
        session: Store.read)."""
        async with self.store.read(session) as reading:
            return await self._event_synthesis(reading, org, lang=lang, version=version)

    async def _event_synthesis(self, session: AsyncSession, org: OrgEvent, *, lang: str,
                               version: int | None) -> dict[str, Any]:
        boards = list((await session.exec(
            select(Board).where(Board.event_id == org.id)
            .order_by(col(Board.slot), col(Board.id)))).all())
        frozen_ids = [b.id for b in boards if b.frozen]
        latest: dict[int, Synthesis] = {}
        if frozen_ids:  # each frozen board's latest version, and only that one
            newest = (sa.select(col(Synthesis.board_id),
                                sa.func.max(Synthesis.version).label("version"))
                      .where(col(Synthesis.board_id).in_(frozen_ids))
                      .group_by(col(Synthesis.board_id)).subquery())
            for row in (await session.exec(select(Synthesis).join(newest, sa.and_(
                    col(Synthesis.board_id) == newest.c.board_id,
                    col(Synthesis.version) == newest.c.version)))).all():
                assert row.board_id is not None
                latest[row.board_id] = row
        ateliers = [(json.loads(latest[b.id].content), synthesis_path(latest[b.id].slug))
                    for b in boards if b.id in latest]
        pending = [{"title": b.title, "phase": b.phase, "slot": b.slot, "room": b.room}
                   for b in boards if b.id not in latest]
        return syn.event_content(title=org.title, code=org.code, lang=lang,
                                 at=datetime.now(UTC), version=version, ateliers=ateliers,
                                 pending=pending)

    async def freeze_event(self, org: OrgEvent, *, lang: str) -> Synthesis:
        async with self.store.write() as session:
            # One freeze of an event at a time, or two would take the same version number
            # (PostgreSQL: this row lock; SQLite's BEGIN IMMEDIATE serialises writers anyway).
            await session.get(OrgEvent, org.id, with_for_update=True)
            number = await self._next_version(session, col(Synthesis.event_id) == org.id)
            content = await self.event_synthesis(org, lang=lang, version=number,
                                                 session=session)
            return await self._store_synthesis(session, content, event_id=org.id)

    # --- data protection --------------------------------------------------------------------

    async def delete_board(self, board: Board, actor: Actor) -> None:
        """The board and everything of it: cards, votes, participants, log, syntheses, search
        entries. Frozen event syntheses that showed it lose its section (recorded in them)."""
        self.commands._require_animator(actor)
        assert board.id is not None
        async with self.store.write() as session:
            fresh = await self.commands._board(session, board.id)
            paths = {synthesis_path(slug) for slug in (await session.exec(
                select(Synthesis.slug).where(Synthesis.board_id == board.id))).all()}
            if fresh.event_id is not None and paths:
                await self._redact_event(session, fresh.event_id, paths)
            await session.execute(sa.delete(Board).where(col(Board.id) == board.id))
        self.commands.callers.forget_board(board.id)
        await self.commands.hub.publish(Event(board.id, None, "board.deleted", {}))

    async def _redact_event(self, session: AsyncSession, event_id: int,
                            paths: set[str]) -> None:
        now = datetime.now(UTC)
        for row in (await session.exec(
                select(Synthesis).where(Synthesis.event_id == event_id))).all():
            content = json.loads(row.content)
            if not any(a["url"] in paths for a in content["ateliers"]):
                continue
            content = syn.without_atelier(content, paths, at=now, previous_hash=row.hash)
            row.content, row.hash = syn.canonical(content), syn.content_hash(content)
            session.add(row)

    async def anonymise(self, board: Board, actor: Actor) -> list[Synthesis]:
        self.commands._require_animator(actor)
        return await self._anonymise(board)

    async def _anonymise(self, board: Board) -> list[Synthesis]:
        """Strip pseudonyms from the board, its log and its syntheses (each changed version
        records the date and the hash it replaced, and gets its new hash)."""
        assert board.id is not None
        now = datetime.now(UTC)
        async with self.store.write() as session:
            fresh = await self.commands._board(session, board.id)
            await session.execute(sa.update(Card).where(col(Card.board_id) == board.id)
                                  .values(author=None))
            await session.execute(sa.update(Participant)
                                  .where(col(Participant.board_id) == board.id)
                                  .values(name=None))
            for logged in (await session.exec(select(BoardEvent).where(
                    BoardEvent.board_id == board.id,
                    col(BoardEvent.data).contains('"author":"')))).all():
                logged.data = json.dumps(_strip_authors(json.loads(logged.data)),
                                         ensure_ascii=False, separators=(",", ":"))
                session.add(logged)
            versions = list((await session.exec(select(Synthesis).where(
                Synthesis.board_id == board.id).order_by(col(Synthesis.version)))).all())
            for row in versions:
                content = json.loads(row.content)
                if not syn.has_pseudonyms(content):
                    continue
                content = syn.anonymised(content, at=now, previous_hash=row.hash)
                row.content, row.hash = syn.canonical(content), syn.content_hash(content)
                row.anonymised_at = now
                session.add(row)
            event = None
            if not fresh.anonymous:
                fresh.anonymous = True
                session.add(fresh)
                await session.flush()
                event = await self.commands._emit(session, board.id, "board.updated",
                                                  settings_dict(fresh))
        if event is not None:
            await self.commands.hub.publish(event)
        return versions

    async def apply_retention(self, days: int, now: datetime | None = None) -> list[str]:
        """Anonymise boards frozen more than ``days`` days ago that still hold pseudonyms;
        returns their join codes."""
        limit = (now or datetime.now(UTC)) - timedelta(days=days)
        async with self.store.read() as session:
            named = sa.or_(
                sa.exists().where(col(Card.board_id) == col(Board.id),
                                  col(Card.author).is_not(None)),
                sa.exists().where(col(Participant.board_id) == col(Board.id),
                                  col(Participant.name).is_not(None)))
            boards = list((await session.exec(
                select(Board).where(col(Board.frozen).is_(True), named))).all())
            due = []
            for board in boards:
                frozen_at = (await session.execute(
                    sa.select(sa.func.max(Synthesis.frozen_at))
                    .where(col(Synthesis.board_id) == board.id))).scalar_one()
                if frozen_at is not None and as_utc(frozen_at) <= limit:
                    due.append(board)
        for board in due:
            await self._anonymise(board)
        return [b.join_code for b in due]


def _strip_authors(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (None if k == "author" else _strip_authors(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_authors(v) for v in value]
    return value


def _archive_entry(row: Synthesis, content: dict[str, Any]) -> dict[str, Any]:
    if row.event_id is not None:
        return {"kind": "event", "title": content["event"]["title"],
                "event": content["event"]["title"], "template": "", "question": "",
                "ateliers": len(content["ateliers"]), "versions": []}
    board = content["board"]
    return {"kind": "board", "title": board["title"], "event": board["event"] or "",
            "template": board["template_title"] or board["template"],
            "question": board["question"], "cards": content["cards_count"],
            "slot": board["slot"], "room": board["room"], "versions": []}
