"""The socket protocol's light receive queue and writable flag keep asyncio's semantics."""

from __future__ import annotations

import asyncio
import contextlib

from board.socket_protocol import Flag, Inbox


async def test_inbox_hands_messages_over_in_order_to_a_waiting_reader() -> None:
    inbox = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()  # nothing yet: the reader waits
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.receive", "text": "a"})
    assert await reader == {"type": "websocket.connect"}
    assert not inbox.empty() and inbox.qsize() == 1
    assert await inbox.get() == {"type": "websocket.receive", "text": "a"}
    assert inbox.empty()


async def test_a_cancelled_read_loses_nothing_and_the_next_one_gets_it() -> None:
    inbox = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    inbox.put_nowait("disconnect")
    assert await asyncio.wait_for(inbox.get(), 1) == "disconnect"


async def test_two_readers_each_get_one_message() -> None:
    inbox = Inbox()
    readers = [asyncio.create_task(inbox.get()) for _ in range(2)]
    await asyncio.sleep(0)
    inbox.put_nowait(1)
    await asyncio.sleep(0)
    inbox.put_nowait(2)
    got = await asyncio.wait_for(asyncio.gather(*readers), 1)
    assert sorted(got) == [1, 2]


async def test_flag_blocks_writers_while_cleared_and_frees_them_all_when_set() -> None:
    flag = Flag(True)
    assert await asyncio.wait_for(flag.wait(), 1) is True  # set: no wait at all
    flag.clear()
    assert not flag.is_set()
    writers = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in writers)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*writers), 1) == [True, True, True]
    assert flag.is_set()
