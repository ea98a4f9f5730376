"""``BoundedBody``: a Quart request body that reads only what its view asks for.

Quart's own ``Body`` reads the whole request as fast as the client sends it,
whatever the view does. This one calls ``receive()`` only while a reader is
waiting for bytes, while it holds less than its ``high_water`` and while the
app's :class:`~async_hashfs._budget.UploadBudget` has room; otherwise the
server stops reading the socket and TCP pushes back on the client.

The bytes it holds are charged to the budget only while its reader waits for
them: a view that stops reading, or never starts, holds no budget (at most one
message that arrived after it stopped, uncharged). Before each ``receive()``
the body reserves the size of its last message; a reservation the client
leaves unused for :data:`RESERVATION_TTL` seconds is given back, so slow
clients cannot hold the budget either. A message larger than its reservation
arrives uncharged, and its reader charges it before taking it.

Awaiting the whole body (``get_data``, ``form``) reads it as Quart does,
bounded by ``MAX_CONTENT_LENGTH``, outside the budget.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from werkzeug.exceptions import ClientDisconnected

from ._budget import Ticket, UploadBudget
from ._web import BodyTooLarge

__all__ = ["FIRST_ESTIMATE", "RESERVATION_TTL", "BoundedBody"]

#: Seconds a reservation waits for the client's next message before it is given back.
RESERVATION_TTL = 0.5
#: What a body reserves for its first message: Hypercorn's and Uvicorn's read size.
FIRST_ESTIMATE = 64 << 10


class BoundedBody:
    """A request body that reads on demand, within its app's upload budget.

    It replaces Quart's ``Body`` (same methods, for Quart 0.22 and 0.23).
    ``max_content_length`` is looked up when the body is read, so a view may
    raise ``request.max_content_length`` for its own route before reading.
    ``async for`` gives the messages as the server sent them, without joining
    them; awaiting the whole body buffers it as Quart does, up to that limit.
    """

    def __init__(
        self,
        expected_content_length: int | None,
        max_content_length: Callable[[], int | None],
        high_water: int,
        budget: UploadBudget | None = None,
    ) -> None:
        self._expected = expected_content_length
        self._limit = max_content_length
        self._high_water = high_water
        self._budget = budget
        #: Reading the whole body, or dropping it: receive freely, charge nothing.
        self._free = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._charged = 0  # bytes at the front of ``_chunks`` charged to the budget
        self._received = 0
        self._consumed = 0
        self._complete = False
        self._disconnected = False
        self._must_raise: Exception | None = None
        self._data: bytes | None = None
        self._readers = 0
        self._changed = asyncio.Event()  # readers: bytes arrived, or the body ended
        self._gate = asyncio.Event()  # the receiver: it may be allowed to receive now
        self._paused = False
        self._ticket: Ticket | None = None  # the reservation for the next message
        self._reserved_at: float | None = None  # when it was granted
        self._expiry: asyncio.TimerHandle | None = None
        self._estimate = FIRST_ESTIMATE

    # -- fed by the connection ---------------------------------------------

    def _ended(self) -> bool:
        return self._complete or self._disconnected

    def _wanted(self) -> bool:
        # A reader waits, there is room, and nothing uncharged waits before the
        # next message (its reader must charge that first).
        return (
            self._readers > 0
            and self._buffered < self._high_water
            and self._charged == self._buffered
        )

    async def wait_for_space(self) -> None:
        """Return once the next message may be received (and is reserved, if budgeted)."""
        while True:
            if self._free or self._ended():
                self._drop_reservation()
                return
            ticket = self._ticket
            if self._wanted():
                if self._budget is None:
                    return
                if ticket is None:
                    size = min(self._estimate, self._budget.limit)
                    self._ticket = ticket = self._budget.enqueue(size, self._gate.set)
                if ticket.granted:
                    loop = asyncio.get_running_loop()
                    self._reserved_at = loop.time()
                    if self._expiry is None:
                        self._expiry = loop.call_later(RESERVATION_TTL, self._expire)
                    return
            elif ticket is not None:
                self._drop_reservation()  # nobody waits for bytes any more
            self._gate.clear()
            self._paused = True
            try:
                await self._gate.wait()
            finally:
                self._paused = False

    def _drop_reservation(self) -> None:
        ticket, self._ticket = self._ticket, None
        self._reserved_at = None
        if ticket is not None and self._budget is not None:
            self._budget.withdraw(ticket)

    def _expire(self) -> None:
        # One timer per body, re-armed only while a reservation stays unused.
        self._expiry = None
        if self._reserved_at is None:
            return
        loop = asyncio.get_running_loop()
        due = self._reserved_at + RESERVATION_TTL
        if loop.time() >= due:
            self._drop_reservation()
        else:
            self._expiry = loop.call_later(due - loop.time(), self._expire)

    def append(self, data: bytes) -> None:
        """Take one ASGI message's bytes."""
        ticket, self._ticket = self._ticket, None
        self._reserved_at = None
        reserved = 0
        if ticket is not None:
            if ticket.granted:
                reserved = ticket.size
                ticket.granted = False  # its bytes are settled here
            elif self._budget is not None:
                self._budget.withdraw(ticket)
        size = len(data)
        charge = 0
        if (
            size
            and size <= reserved
            and not self._free
            and self._must_raise is None
            and self._readers > 0
            and self._charged == self._buffered
        ):
            charge = size
        if self._budget is not None:
            self._budget.release(reserved - charge)
        if not size or self._must_raise is not None:
            return
        self._received += size
        self._estimate = size
        if self._free:
            limit = self._limit()
            if limit is not None and self._received > limit:
                self._must_raise = BodyTooLarge(limit)
                self._clear()
                self.set_complete()
                return
        self._chunks.append(data)
        self._buffered += size
        self._charged += charge
        self._changed.set()

    async def put(self, data: bytes) -> None:
        """Take one message's bytes once there is room (Quart 0.23's interface)."""
        await self.wait_for_space()
        self.append(data)

    def set_complete(self) -> None:
        self._complete = True
        self._changed.set()
        self._gate.set()

    def set_result(self, data: bytes) -> None:
        self.append(data)
        self.set_complete()

    def disconnect(self) -> None:
        self._disconnected = True
        self._changed.set()
        self._gate.set()

    def _uncharge(self) -> None:
        if self._charged and self._budget is not None:
            self._budget.release(self._charged)
        self._charged = 0

    def _clear(self) -> None:
        self._uncharge()
        self._chunks.clear()
        self._buffered = 0

    def _unbound(self) -> None:
        """Receive freely from now on, charging nothing."""
        self._free = True
        self._uncharge()
        self._drop_reservation()
        self._gate.set()

    def clear(self) -> None:
        self._clear()
        self._data = b""

    def discard(self) -> None:
        """Drop what is buffered and take the rest of the body without keeping it."""
        if self._must_raise is None:
            self._must_raise = BodyTooLarge(0, "discarded request body")
        self._clear()
        self._unbound()

    def close(self) -> None:
        """Give back everything charged: the request is over."""
        self._clear()
        self._unbound()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return self._buffered

    @property
    def charged(self) -> int:
        """Bytes of the buffer charged to the budget."""
        return self._charged

    @property
    def paused(self) -> bool:
        """Whether the body is not asking the server for more bytes now."""
        return self._paused

    # -- read by the view ------------------------------------------------------

    def _check(self, size: int) -> None:
        limit = self._limit()
        if limit is not None and max(size, self._expected or 0) > limit:
            raise BodyTooLarge(limit)

    async def _wait_for_bytes(self) -> bool:
        """Wait until bytes are buffered; return ``False`` at the end of the body."""
        while not self._chunks:
            if self._must_raise is not None:
                raise self._must_raise
            if self._complete:
                return False
            if self._disconnected:
                raise ClientDisconnected()
            self._readers += 1
            self._gate.set()
            self._changed.clear()
            try:
                await self._changed.wait()
            except BaseException:
                self._readers -= 1
                if not self._readers:
                    self._uncharge()  # nobody will take them now
                    self._gate.set()
                raise
            self._readers -= 1
        return True

    def _taken(self, size: int) -> None:
        self._buffered -= size
        self._consumed += size
        self._gate.set()

    def __aiter__(self) -> BoundedBody:
        return self

    async def __anext__(self) -> bytes:
        self._check(self._consumed)
        if not await self._wait_for_bytes():
            raise StopAsyncIteration
        data = self._chunks.popleft()
        self._uncharge()  # the view holds what it reads; the rest waits uncharged
        self._taken(len(data))
        self._check(self._consumed)
        return data

    async def take_charged(self, budget: UploadBudget) -> list[Any]:
        """Return the buffered messages, their bytes charged to ``budget`` for the caller.

        Waits for bytes, then for room in ``budget`` for any that arrived
        uncharged; an empty list means the end of the body.

        Raises:
            BodyTooLarge: past ``max_content_length``.
            ClientDisconnected: the client went away.
        """
        self._check(self._consumed)
        while True:
            if not await self._wait_for_bytes():
                return []
            if budget is not self._budget:
                # Another store's budget: take everything, then wait for room there.
                everything = list(self._chunks)
                size = self._buffered
                self._chunks.clear()
                self._uncharge()
                self._taken(size)
                self._check(self._consumed)
                await budget.acquire(size)
                return everything
            if self._charged == 0:
                # Arrived uncharged: charge it now (holding nothing of this body's).
                size = self._buffered
                await budget.acquire(size)
                if self._buffered < size:  # dropped meanwhile
                    budget.release(size)
                    continue
                self._charged = size
            taken: list[Any] = []
            size = 0
            while size < self._charged:
                chunk = self._chunks.popleft()
                taken.append(chunk)
                size += len(chunk)
            self._charged = 0
            self._taken(size)
            try:
                self._check(self._consumed)
            except BaseException:
                budget.release(size)
                raise
            return taken

    def __await__(self) -> Generator[Any, None, bytes]:
        return self._whole().__await__()

    async def _whole(self) -> bytes:
        self._check(self._received)
        if self._data is not None:
            return self._data
        self._unbound()  # the whole body is wanted: read it as Quart does
        while not (self._ended() or self._must_raise):
            self._changed.clear()
            await self._changed.wait()
        if self._must_raise is not None:
            raise self._must_raise
        if not self._complete:
            raise ClientDisconnected()
        self._data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._check(len(self._data))
        return self._data
