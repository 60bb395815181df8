"""Store.transact and Store.query on a real database file (or PostgreSQL database): jobs that
arrive together share one transaction on SQLite, each in its own savepoint, so one job's
refusal never undoes or blocks the others, and every caller learns its own outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from board.commands import Actor, BoardRef, Callers, Commands
from board.errors import RuleViolation
from board.tables import Board, BoardColumn, Card


async def _board(commands: Commands) -> tuple[Board, int, Actor]:
    created = await commands.create_board(title="Jobs", columns=["Constats", "Enjeux"])
    board = await commands.find_board(created.board.join_code)
    column = (await commands.columns(board))[0]
    _ref, _participant_id, token = await commands.join(board.join_code, name="Awa")
    actor = await commands.authenticate(board, token)
    assert column.id is not None
    return board, column.id, actor


async def _count_cards(commands: Commands, board_id: int) -> int:
    return await commands.store.query(lambda session: session.exec(
        select(func.count()).select_from(Card).where(Card.board_id == board_id)).one())


async def test_a_refused_job_is_undone_alone_and_the_others_commit(commands: Commands) -> None:
    board, column_id, _actor = await _board(commands)
    assert board.id is not None
    board_id = board.id

    def rename(title: str, fail: bool) -> Callable[[Session], str]:
        def job(session: Session) -> str:
            column = session.get(BoardColumn, column_id)
            assert column is not None
            column.title = title
            session.flush()  # written inside the savepoint before the refusal
            if fail:
                raise RuleViolation("invalid_field", field="title")
            return title
        return job

    outcomes = await asyncio.gather(
        commands.store.transact(rename("Un", False)),
        commands.store.transact(rename("Deux", False)),
        commands.store.transact(rename("Refusé", True)),
        return_exceptions=True)

    assert outcomes[:2] == ["Un", "Deux"]
    assert isinstance(outcomes[2], RuleViolation) and outcomes[2].code == "invalid_field"
    titles = await commands.store.query(lambda session: [c.title for c in session.exec(
        select(BoardColumn).where(BoardColumn.board_id == board_id)
        .order_by(BoardColumn.position))])
    # One of the jobs that passed (on PostgreSQL they are concurrent transactions, in no set
    # order); the refused rename left no trace.
    assert titles[0] in ("Un", "Deux")


async def test_a_job_after_a_refused_one_reads_the_database_not_the_undone_change(
        commands: Commands) -> None:
    """In one group, the refused job's change is undone in the database; the next job must
    not be handed the session's copy of it either."""
    board, column_id, _actor = await _board(commands)

    def rename_then_refuse(session: Session) -> None:
        column = session.get(BoardColumn, column_id)
        assert column is not None
        column.title = "Jamais"
        session.flush()
        raise RuleViolation("invalid_field", field="title")

    def read_title(session: Session) -> str:
        column = session.get(BoardColumn, column_id)
        assert column is not None
        return column.title

    outcomes = await asyncio.gather(
        commands.store.transact(read_title),  # runs alone; the two below share a group
        commands.store.transact(rename_then_refuse),
        commands.store.transact(read_title),
        return_exceptions=True)
    assert isinstance(outcomes[1], RuleViolation)
    assert outcomes[0] == outcomes[2] == "Constats"


async def test_many_posts_at_once_each_get_their_own_card_and_seq(commands: Commands) -> None:
    board, column_id, actor = await _board(commands)
    assert board.id is not None
    results = await asyncio.gather(*(
        commands.post_card(board, actor, column_id=column_id, text=f"Idée {i}",
                           client_id=f"c{i}") for i in range(60)))

    assert all(r.created for r in results)
    assert len({r.card.id for r in results}) == 60
    seqs = sorted(r.event.seq for r in results if r.event is not None and r.event.seq)
    assert len(set(seqs)) == 60 and seqs == list(range(seqs[0], seqs[0] + 60))
    assert await _count_cards(commands, board.id) == 60


async def test_a_retry_in_the_same_group_gets_the_same_card(commands: Commands) -> None:
    """A flaky network sends the same card twice at once: one card, the same id twice."""
    board, column_id, actor = await _board(commands)
    assert board.id is not None
    first, again = await asyncio.gather(
        commands.post_card(board, actor, column_id=column_id, text="Un seul bus",
                           client_id="same-key"),
        commands.post_card(board, actor, column_id=column_id, text="Un seul bus",
                           client_id="same-key"))

    assert first.card.id == again.card.id
    assert sorted([first.created, again.created]) == [False, True]
    assert await _count_cards(commands, board.id) == 1


async def test_refused_posts_among_good_ones_lose_nothing(commands: Commands) -> None:
    board, column_id, actor = await _board(commands)
    assert board.id is not None
    attempts = []
    for i in range(30):
        bad_column = i % 3 == 0
        attempts.append(commands.post_card(
            board, actor, column_id=999_999 if bad_column else column_id,
            text=f"Carte {i}", client_id=f"k{i}"))
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)

    refused = [o for o in outcomes if isinstance(o, RuleViolation)]
    assert len(refused) == 10 and {o.code for o in refused} == {"unknown_column"}
    assert await _count_cards(commands, board.id) == 20


async def test_a_remembered_token_still_meets_the_boards_rules(commands: Commands) -> None:
    """Callers spares posts the look-up, not the rules: a board frozen, or deleted, after its
    token was remembered refuses the next post with the same error as without the memory."""
    board, column_id, _actor = await _board(commands)
    _ref, _pid, token = await commands.join(board.join_code, name="Ben")
    ref, actor = await commands.caller(board.join_code.lower(), token, required=True)
    assert (ref.id, ref.join_code, actor.role) == (board.id, board.join_code, "participant")
    assert commands.callers.get(board.join_code, token) == (ref, actor)  # from the join

    await commands.post_card(ref, actor, column_id=column_id, text="Avant le gel")

    def freeze(session: Session) -> None:
        row = session.get(Board, ref.id)
        assert row is not None
        row.frozen = True
        session.add(row)

    await commands.store.transact(freeze)
    ref, actor = await commands.caller(board.join_code, token, required=True)  # remembered
    with pytest.raises(RuleViolation) as refused:
        await commands.post_card(ref, actor, column_id=column_id, text="Après le gel")
    assert refused.value.code == "board_frozen"

    def delete(session: Session) -> None:
        row = session.get(Board, ref.id)
        session.delete(row)

    await commands.store.transact(delete)
    ref, actor = await commands.caller(board.join_code, token, required=True)  # still there
    with pytest.raises(RuleViolation) as refused:
        await commands.post_card(ref, actor, column_id=column_id, text="Après l'effacement")
    assert refused.value.code == "unknown_board"
    commands.callers.forget_board(ref.id)  # what Archive.delete_board does in its worker
    with pytest.raises(RuleViolation) as refused:
        await commands.caller(board.join_code, token, required=True)
    assert refused.value.code == "unknown_board"


async def test_a_wrong_token_is_never_remembered(commands: Commands) -> None:
    board, _column_id, _actor = await _board(commands)
    for _ in range(2):
        with pytest.raises(RuleViolation) as refused:
            await commands.caller(board.join_code, "not-a-token", required=True)
        assert refused.value.code == "invalid_token"
    assert commands.callers.get(board.join_code, "not-a-token") is None


def test_remembered_tokens_expire_and_the_oldest_go_first() -> None:
    callers = Callers(ttl=0.05, size=10)
    ref = BoardRef(1, "ABC123")
    for n in range(10):
        callers.put("ABC123", f"token-{n}", ref, Actor("participant", participant_id=n))
    callers.put("ABC123", "token-10", ref, Actor("participant", participant_id=10))
    assert callers.get("ABC123", "token-0") is None  # evicted to make room
    assert callers.get("ABC123", "token-10") is not None
    assert callers.get("OTHER1", "token-10") is None  # a token is good on its own board only
    time.sleep(0.06)
    assert callers.get("ABC123", "token-10") is None  # expired: read again next time


async def test_a_read_is_one_snapshot_and_a_write_reads_what_is_committed(
        commands: Commands) -> None:
    """On PostgreSQL a read (a view, a catch-up) sees the database at one moment, so a board
    and its cards agree; a write stays at READ COMMITTED, behind the board's row lock. SQLite's
    read transaction is one snapshot by nature."""
    if commands.store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no isolation levels to choose from")
    show = sa.text("SHOW transaction_isolation")
    assert await commands.store.query(
        lambda session: session.connection().execute(show).scalar()) == "repeatable read"
    assert await commands.store.transact(
        lambda session: session.connection().execute(show).scalar()) == "read committed"
