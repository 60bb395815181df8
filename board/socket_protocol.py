"""The live socket's server side: uvicorn's websockets-sansio protocol, lighter per socket.

A plenary keeps thousands of phones connected for hours, mostly idle, so what each socket
holds counts (tracemalloc, per idle socket, before this class):
- an ``asyncio.Queue`` for incoming messages: three deques and an ``Event`` (a fourth deque),
  about 3 KB while it holds nothing, when a socket receives a handful of messages in its life;
- an ``asyncio.Event`` for "the transport can take more", another deque;
- the handshake's request and response, headers parsed twice, about 3 KB, kept after the
  handshake for nothing.
:class:`BoardSocketProtocol` replaces the first two with slot classes that create a future
only while somebody waits, and lets the handshake go once it is answered.

It also offers the fan-out a way to write already-encoded frames straight to the transport
(:data:`DIRECT_WRITE` in the scope's extensions): one encoding of a frame serves a whole
audience, and no coroutine runs per socket and per frame.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

# Scope extension: a callable taking encoded frames, True when they were written, False when
# they must go through the ASGI ``send`` instead (transport full or closing).
DIRECT_WRITE = "board.direct_write"
# Each socket's opening is logged at INFO by uvicorn, and again ("connection open") by
# websockets: thousands of lines for a plenary's arrival (and a sixth of its cost).
# ``board serve`` shows this logger's warnings and errors, and everything at --log-level debug.
SOCKET_LOG = logging.getLogger("board.sockets")


class _Wakeup:
    """The one future a waiter sleeps on, created only while somebody waits."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def sleep(self) -> None:
        future = self._future
        if future is None or future.done():
            future = self._future = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            if self._future is future and future.done():
                self._future = None


class Inbox(_Wakeup):
    """What uvicorn's protocol needs of its receive queue: ``put_nowait``, ``get``, ``empty``.

    Unbounded like the queue it replaces (uvicorn pauses reading while a message waits)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Any] = []

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self.wake()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            await self.sleep()
        return self._items.pop(0)


class Flag(_Wakeup):
    """What uvicorn's protocol needs of its ``writable`` event: set, clear, is_set, wait."""

    __slots__ = ("_set",)

    def __init__(self, value: bool = True) -> None:
        super().__init__()
        self._set = value

    def set(self) -> None:
        self._set = True
        self.wake()

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> bool:
        while not self._set:
            await self.sleep()
        return True


class BoardSocketProtocol(WebSocketsSansIOProtocol):
    """``ws=`` for uvicorn (``board serve``): websockets-sansio, lighter, with direct writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = self.conn.logger = SOCKET_LOG  # uvicorn's lines and websockets' own
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: dict[str, Any] | None = getattr(self, "scope", None)
        if scope is not None and not self.config.ws_per_message_deflate:
            scope["extensions"][DIRECT_WRITE] = self.write_frames

    def start_keepalive(self) -> None:
        # Called once the handshake's 101 is written: its request and response (and their
        # headers, parsed twice) are never read again. The request's headers are emptied, not
        # just let go: websockets' parser keeps the request in its frame for the socket's life.
        request = self.__dict__.get("request")
        if request is not None:
            request.headers.clear()
        self.request = self.response = None  # type: ignore[assignment]
        super().start_keepalive()

    def write_frames(self, data: bytes) -> bool:
        """Encoded data frames, straight to the transport. They change nothing in the
        protocol's state, so its later sends and its close are unaffected."""
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or not self.writable.is_set() or self.transport.is_closing()):
            return False
        self.transport.write(data)
        return True
