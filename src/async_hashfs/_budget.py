"""One memory budget for all the uploads in flight in an app, and the pump that spends it.

A streamed put holds bytes in two places: in the request body, between the
server's ``receive()`` and the view, and in the pipeline to the writer, from
the moment the pump takes them until a worker thread has written them. Both
are charged to one :class:`UploadBudget`, shared by every upload of the store
(and so of the app), so memory stays bounded however many clients send at
once. When it is used up, bodies stop calling ``receive()`` (the server stops
reading the socket and TCP pushes back on the clients) and other sources stop
being read.

No waiter can deadlock the budget, because nothing waits for budget while
holding budget that only its own progress would release:

- bytes in the pipeline are released by the writer task, which never waits
  for budget: one thread hop writes everything queued so far, so no partial
  batch is held back for more bytes;
- bytes in a body are charged only while its reader waits for them, so they
  are taken as soon as the reader runs; a reader that stops reading leaves
  nothing charged behind;
- a reservation taken before ``receive()`` expires on its own if the client
  sends nothing for a while;
- an empty budget admits the first waiter whatever its size, so a message
  larger than the whole budget still goes through, alone.

Waiters are served first come, first served. A budget serves one event loop
at a time (asyncio or trio); its counters are not shared between threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Protocol, runtime_checkable

import anyio

from ._exceptions import FileTooLarge
from ._sources import async_reader

__all__ = ["DEFAULT_UPLOAD_MEMORY", "PER_PUT", "ChargedSource", "Ticket", "UploadBudget", "pump"]

#: The default budget: enough for a few uploads to keep the disk busy.
DEFAULT_UPLOAD_MEMORY = 32 << 20
#: What one put may hold unwritten before it waits for its own writer: a fast
#: client must not take the whole budget from the others while the disk lags.
PER_PUT = 4 << 20
#: Bytes after which a writer hop returns to release them, if more keep coming.
HOP = 1 << 20


class Ticket:
    """A place in the budget's queue; ``granted`` once its bytes are charged."""

    __slots__ = ("granted", "notify", "size")

    def __init__(self, size: int, notify: Callable[[], object]) -> None:
        self.size = size
        self.notify = notify
        self.granted = False


class UploadBudget:
    """A byte count shared by every upload in flight, with a queue of waiters.

    ``used`` is what is charged now; ``peak`` the most ever charged at once
    (for tests and benchmarks). A charge of ``size`` is granted when
    ``used + size <= limit``, or when nothing at all is charged.

    Raises:
        ValueError: ``limit`` is not a positive integer.
    """

    __slots__ = ("_waiters", "limit", "peak", "used")

    def __init__(self, limit: int = DEFAULT_UPLOAD_MEMORY) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"upload_memory must be a positive byte count, not {limit!r}")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._waiters: deque[Ticket] = deque()

    def __repr__(self) -> str:
        return f"UploadBudget(limit={self.limit}, used={self.used}, waiting={len(self._waiters)})"

    @property
    def waiting(self) -> int:
        """How many charges wait for room."""
        return len(self._waiters)

    def _fits(self, size: int) -> bool:
        return self.used + size <= self.limit or self.used == 0

    def _charge(self, size: int) -> None:
        self.used += size
        if self.used > self.peak:
            self.peak = self.used

    def try_acquire(self, size: int) -> bool:
        """Charge ``size`` bytes if that needs no wait (nobody queued, and room)."""
        if self._waiters or not self._fits(size):
            return False
        self._charge(size)
        return True

    def enqueue(self, size: int, notify: Callable[[], object]) -> Ticket:
        """Ask for ``size`` bytes; ``notify()`` is called once they are granted.

        The ticket may be granted at once. Give it back with :meth:`withdraw`
        if it is no longer wanted, granted or not.
        """
        ticket = Ticket(size, notify)
        if self.try_acquire(size):
            ticket.granted = True
        else:
            self._waiters.append(ticket)
        return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """Give up ``ticket``: release its bytes if granted, else leave the queue."""
        if ticket.granted:
            ticket.granted = False
            self.release(ticket.size)
            return
        try:
            self._waiters.remove(ticket)
        except ValueError:
            return
        self._grant()  # the head may have been the one too large to fit

    async def acquire(self, size: int) -> None:
        """Wait until ``size`` bytes can be charged, and charge them."""
        if self.try_acquire(size):
            return
        granted = anyio.Event()
        ticket = self.enqueue(size, granted.set)
        try:
            await granted.wait()
        except BaseException:
            self.withdraw(ticket)
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` charged bytes and admit the waiters that now fit."""
        if size:
            self.used -= size
            assert self.used >= 0, "released more than was charged"
            self._grant()

    def _grant(self) -> None:
        while self._waiters and self._fits(self._waiters[0].size):
            ticket = self._waiters.popleft()
            self._charge(ticket.size)
            ticket.granted = True
            ticket.notify()


@runtime_checkable
class ChargedSource(Protocol):
    """A source that hands over its bytes already charged to a budget (a request body)."""

    async def take_charged(self, budget: UploadBudget) -> list[Any]:
        """Return the next chunks, their bytes charged to ``budget`` and now the caller's.

        An empty list means the end of the source.
        """
        ...


async def _charged_chunks(src: object, budget: UploadBudget) -> AsyncGenerator[list[Any], None]:
    if isinstance(src, ChargedSource):
        while chunks := await src.take_charged(budget):
            yield chunks
        return
    async with aclosing(async_reader(src)) as reader:
        async for chunk in reader:
            size = memoryview(chunk).nbytes
            if size:
                await budget.acquire(size)
                yield [chunk]


async def pump(
    src: object,
    consume: Callable[[list[Any]], object],
    run: Callable[[Callable[[], None]], Awaitable[object]],
    budget: UploadBudget,
    limit: int | None = None,
) -> None:
    """Feed the bytes of the async source ``src`` to ``consume`` in worker threads.

    Each chunk is charged to ``budget`` before it is taken from the source and
    queued at once; a writer task hands everything queued so far to
    ``consume`` in one ``run(func)`` thread hop, then releases those bytes.
    So the source is read while the previous chunks are written, and it stops
    being read while the budget is used up, or while this put alone holds
    :data:`PER_PUT` bytes unwritten. ``limit`` bounds the total size, checked
    as bytes arrive.

    Raises:
        FileTooLarge: past ``limit``.
        Exception: what the source or ``consume`` raised; the first failure wins.
    """
    # Appended on the loop, emptied by the worker thread of each hop (deque
    # appends and pops are atomic), so a hop takes all that came in while it
    # waited for a thread, not only what was there when it was asked for.
    queue: deque[tuple[Any, int]] = deque()
    unwritten = 0  # charged bytes queued or in a hop
    in_hop = 0
    finished = False
    wake = anyio.Event()
    written = anyio.Event()
    failures: list[Exception] = []

    def write_queued_now() -> None:
        # Chunks queued while this thread writes ride along too, up to HOP
        # bytes, so that a put as fast as the disk is not one hop per message.
        nonlocal in_hop
        while queue and in_hop < HOP:
            chunks = []
            while queue:
                chunk, size = queue.popleft()
                chunks.append(chunk)
                in_hop += size
            consume(chunks)

    async def write_queued() -> None:
        nonlocal wake, written, unwritten, in_hop
        while True:
            if not queue:
                if finished:
                    return
                await wake.wait()
                wake = anyio.Event()
                continue
            try:
                await run(write_queued_now)
            except Exception as exc:
                failures.append(exc)
                group.cancel_scope.cancel()
                return
            finally:
                budget.release(in_hop)
                unwritten -= in_hop
                in_hop = 0
                written.set()
                written = anyio.Event()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(write_queued)
            try:
                received = 0
                async with aclosing(_charged_chunks(src, budget)) as batches:
                    async for chunks in batches:
                        for chunk in chunks:
                            size = memoryview(chunk).nbytes
                            queue.append((chunk, size))
                            unwritten += size
                            received += size
                        wake.set()
                        if limit is not None and received > limit:
                            raise FileTooLarge(limit)
                        while unwritten >= PER_PUT:  # this put's own writer frees it
                            await written.wait()
            except Exception as exc:
                failures.append(exc)
                group.cancel_scope.cancel()
            finished = True
            wake.set()
    finally:
        budget.release(unwritten)  # taken from the source, never written
        unwritten = 0
    if failures:
        raise failures[0]
