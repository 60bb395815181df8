"""A board's live feed on a real database file (or PostgreSQL database) and the in-process hub:
when a newcomer may take the shared snapshot without reading the board."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from board.commands import Commands
from board.events import Event
from board.fanout import Client, Fanout, Feed
from board.render import Audience, Renderer

API = Audience("api")


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the feed never {what}")


async def _built(feed: Feed, seq: int) -> tuple[int, str]:
    async def build() -> tuple[int, str]:
        return seq, f"snapshot at {seq}"
    return await feed.shared_snapshot(API, seq, build, 2.0)


async def test_the_shared_snapshot_serves_newcomers_only_while_nothing_went_by(
        commands: Commands) -> None:
    created = await commands.create_board(title="Feed", columns=["Constats"])
    board = await commands.find_board(created.board.join_code)
    assert board.id is not None
    column = (await commands.columns(board))[0]
    ref, _pid, token = await commands.join(board.join_code, name="Awa")
    actor = await commands.authenticate(board, token)
    fanout = Fanout(hub=commands.hub, store=commands.store, renderer=Renderer())
    async with fanout.attach(board.id, Client(API, participant_id=None, queue_size=10)) as feed:
        assert feed.current_snapshot(API, 2.0) is None  # nothing built yet
        assert await _built(feed, feed.last_seq) == (0, "snapshot at 0")
        known = feed.current_snapshot(API, 2.0)
        assert known is not None and known.result() == (0, "snapshot at 0")
        assert feed.current_snapshot(API, 0.0) is None  # older than the reuse allows
        assert feed.current_snapshot(Audience("projector", "fr"), 2.0) is None

        await commands.post_card(ref, actor, column_id=column.id, text="Une carte")
        await _until(lambda: feed.last_seq == 1, "delivered the card")
        assert feed.current_snapshot(API, 2.0) is None  # a card went by: a read is due

        assert await _built(feed, feed.last_seq) == (1, "snapshot at 1")
        assert feed.current_snapshot(API, 2.0) is not None
        await commands.hub.publish(Event(board.id, None, "board.deleted", {}))
        await _until(lambda: feed.deleted, "saw the deletion")
        assert feed.current_snapshot(API, 2.0) is None  # never a snapshot of a deleted board
