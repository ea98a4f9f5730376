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

- bytes in the pipeline are released by the writer, which never waits for
  budget: a thread hop writes everything queued so far and has it released
  as it goes, so no partial batch is held back for more bytes;
- bytes in a body are charged only while its reader waits for them, so they
  are taken as soon as the reader runs; a reader that stops reading leaves
  nothing charged behind;
- a reservation taken before ``receive()`` expires on its own if the client
  sends nothing for a while;
- an empty budget admits the first waiter whatever its size, so a message
  larger than the whole budget still goes through, alone.

Waiters are served first come, first served. A budget serves one event loop
at a time (asyncio or trio); its counters are not shared between threads (a
writer thread asks the loop to release what it wrote, it never touches them).
"""

from __future__ import annotations

import asyncio
import importlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import anyio

from ._exceptions import FileTooLarge
from ._sources import async_chunks, close_async_source, settle_chunk

__all__ = ["DEFAULT_UPLOAD_MEMORY", "PER_PUT", "ChargedSource", "Ticket", "UploadBudget", "pump"]

#: The default budget: enough for a few uploads to keep the disk busy.
DEFAULT_UPLOAD_MEMORY = 32 << 20
#: What one put may hold unwritten before it waits for its own writer: a fast
#: client must not take the whole budget from the others while the disk lags.
PER_PUT = 4 << 20
#: Bytes a writer hop hands to ``consume`` at once.
BATCH = 1 << 20
#: Bytes a hop writes before it has the loop release them while it goes on
#: (each release wakes the loop); at once when another upload waits for budget.
RELEASE_EVERY = PER_PUT // 2
#: Bytes after which a hop ends even if more keep coming, so that the uploads
#: of a store take turns at its threads.
HOP = 16 << 20


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
        # Called once per chunk of every streamed put: written out, not via
        # ``_fits`` and ``_charge``, to keep it one call.
        used = self.used + size
        if self._waiters or (used > self.limit and self.used):
            return False
        self.used = used
        if used > self.peak:
            self.peak = used
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


def _loop_caller() -> Callable[[Callable[[], object]], object]:
    """Return how a worker thread asks this event loop to run a function soon, without waiting."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # not asyncio: anyio's other backend
        # Imported by name: trio is optional, and not installed where types are checked.
        trio = importlib.import_module("trio")
        caller: Callable[[Callable[[], object]], object]
        caller = trio.lowlevel.current_trio_token().run_sync_soon
        return caller


async def pump(
    src: object,
    consume: Callable[[list[Any]], object],
    run: Callable[[Callable[[], None]], Awaitable[object]],
    budget: UploadBudget,
    limit: int | None = None,
) -> None:
    """Feed the bytes of the async source ``src`` to ``consume`` in worker threads.

    Each chunk is charged to ``budget`` as it is taken from the source and
    queued at once. A writer task hands the queue to ``consume`` in a
    ``run(func)`` thread hop, :data:`BATCH` bytes at a time, for as long as
    chunks keep coming (up to :data:`HOP` bytes a hop), and has the loop
    release what it wrote every :data:`RELEASE_EVERY` bytes (at once if
    another upload waits for budget) without ending the hop. So the source is
    read while the previous chunks are written, and it stops being read while
    the budget is used up, or while this put alone holds :data:`PER_PUT` bytes
    unwritten. ``limit`` bounds the total size, checked as bytes arrive.

    The loop does as little per chunk as it can, because for small chunks it
    is the loop, not the writer, that sets the pace: the source's own
    ``__anext__`` (or ``read``) is awaited directly, with no generator around
    it; a charge that needs no wait is taken without a coroutine; and the
    writer task is woken only when it waits for chunks (while it is in a hop,
    what arrives is written by that hop or the next).

    Raises:
        FileTooLarge: past ``limit``.
        Exception: what the source or ``consume`` raised; the first failure wins.
    """
    # Appended on the loop, emptied by the worker thread of each hop (deque
    # appends and pops are atomic), so a hop takes all that came in while it
    # waited for a thread, not only what was there when it was asked for.
    queue: deque[tuple[Any, int]] = deque()
    unwritten = 0  # charged bytes queued or in a hop, not yet released
    done = 0  # bytes the hops have written: counted by the worker thread only
    settled = 0  # how many of those the loop has released
    settle_due = False  # a settle() call is on its way to the loop
    finished = False
    # True only while the writer task waits on ``wake`` with nothing queued;
    # both are read and changed on the loop only, so no wake can be lost.
    idle = False
    wake = anyio.Event()
    written = anyio.Event()
    failures: list[BaseException] = []
    call_soon = _loop_caller()

    def settle() -> None:
        # On the loop, maybe outside any task (a callback the thread asked
        # for), so it makes no Event: the pump makes ``written`` before it waits.
        nonlocal settle_due, settled, unwritten
        settle_due = False
        now = done  # read once: the hop's thread may add to it meanwhile
        size = now - settled
        if size:
            settled = now
            unwritten -= size
            budget.release(size)
            written.set()

    def write_queued_now() -> None:
        # One hop writes for as long as chunks keep coming, in batches of up
        # to BATCH bytes, and has what it wrote released from here (settle()
        # asked for on the loop, without waiting), so the source refills the
        # queue while this thread writes on and the hop need not end for it.
        nonlocal done, settle_due
        start = done
        while queue and done - start < HOP:
            chunks = []
            size = 0
            while queue and size < BATCH:
                chunk, nbytes = queue.popleft()
                chunks.append(chunk)
                size += nbytes
            consume(chunks)
            done += size
            # Each settle() wakes the loop, so ask for one per RELEASE_EVERY
            # (the source refills that much while the rest of PER_PUT is
            # written), or at once if another upload waits for budget.
            # ``settled`` and ``budget.waiting`` are the loop's: read as hints.
            if (
                queue and not settle_due and (done - settled >= RELEASE_EVERY or budget.waiting)
            ):  # else the hop ends and settles at once
                settle_due = True
                call_soon(settle)

    async def write_queued() -> None:
        nonlocal idle, wake
        while True:
            if not queue:
                if finished:
                    return
                idle = True
                await wake.wait()  # whoever cleared ``idle`` set it
                wake = anyio.Event()
                continue
            try:
                await run(write_queued_now)
            except Exception as exc:
                failures.append(exc)
                group.cancel_scope.cancel()
                return
            finally:
                settle()  # the hop is over: whatever it wrote, now

    charged = src if isinstance(src, ChargedSource) else None
    if charged is None:
        take, reads = async_chunks(src)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(write_queued)
            try:
                received = 0
                while True:
                    if charged is not None:
                        chunks = await charged.take_charged(budget)
                        if not chunks:
                            break
                        for chunk in chunks:
                            size = memoryview(chunk).nbytes
                            queue.append((chunk, size))
                            unwritten += size
                            received += size
                    else:
                        try:
                            chunk = await take()
                        except StopAsyncIteration:
                            break
                        if chunk.__class__ is bytes:
                            size = len(chunk)
                        else:
                            chunk = settle_chunk(chunk, reads)
                            size = memoryview(chunk).nbytes
                        if not size:
                            if reads:
                                break
                            continue
                        if not budget.try_acquire(size):
                            await budget.acquire(size)
                        queue.append((chunk, size))
                        unwritten += size
                        received += size
                    if idle:
                        idle = False
                        wake.set()
                    if limit is not None and received > limit:
                        raise FileTooLarge(limit)
                    while unwritten >= PER_PUT:  # this put's own writer frees it
                        written = anyio.Event()
                        await written.wait()
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # KeyboardInterrupt too: raised as itself below
                failures.append(exc)
                group.cancel_scope.cancel()
            finally:
                if charged is None:
                    # Shielded when this pump cancelled its own task group: the
                    # source's cleanup (closing a response, a cursor) must run
                    # to its end, not be cut short by our cancel.
                    with anyio.CancelScope(shield=bool(failures)):
                        await close_async_source(src)
            finished = True
            if idle:
                idle = False
                wake.set()
    finally:
        budget.release(unwritten)  # taken from the source, never written
        unwritten = 0
    if failures:
        raise failures[0]
