"""``SmallPuts``: concurrent small puts of a local store share thread hops.

A put of a few KiB costs less on disk than its thread hop, and sixteen of them
in sixteen worker threads spend their time handing the GIL to each other. So
the small puts of one store go into one queue, and whoever finds nobody
draining it drains it: one thread hop runs the queued puts one after the
other, taking those that arrive while it runs, up to :data:`PER_HOP` of them,
and each caller gets its own result or exception back. Up to :data:`DRAINERS`
hops drain the queue at once.

A caller cancelled before its put was taken withdraws it (nothing is
written); one cancelled while its put runs waits for it, as a cancelled
thread hop does, so its bytes are never half written. A drainer cancelled
before its hop started hands the queue to the next waiter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

__all__ = ["DRAINERS", "PER_HOP", "SmallPuts"]

T = TypeVar("T")

#: The most puts one thread hop runs before it returns their results.
PER_HOP = 64
#: Hops that drain the queue at once: the disk work of two puts overlaps (a
#: two-core machine runs one in the kernel while the other hashes).
DRAINERS = 2


class _Put(Generic[T]):
    __slots__ = ("error", "finished", "func", "result")

    def __init__(self, func: Callable[[], T]) -> None:
        self.func = func
        self.finished = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.func()
        except BaseException as exc:  # handed to its own caller
            self.error = exc
        finally:
            self.finished = True

    def outcome(self) -> T:
        if self.error is not None:
            try:
                raise self.error
            finally:
                self.error = None  # no reference cycle through the traceback
        return self.result  # type: ignore[return-value]


class SmallPuts(Generic[T]):
    """A queue of blocking puts, drained a batch per ``run(func)`` thread hop.

    ``run`` runs a function in a worker thread (the store's ``_run``). The
    queue serves one event loop; a deque's appends and pops are atomic, so the
    worker thread and the loop share it without a lock.
    """

    __slots__ = ("_changed", "_draining", "_queue", "_run")

    def __init__(self, run: Callable[[Callable[[], None]], Awaitable[object]]) -> None:
        self._run = run
        self._queue: deque[_Put[T]] = deque()
        self._draining = 0  # hops under way
        #: Set when a hop ends; made by the first waiter (a store may be made outside a loop).
        self._changed: anyio.Event | None = None

    async def _wait_for_hop(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _drain(self) -> None:
        # In a worker thread: a put still in the queue is not taken; popping takes it.
        for _ in range(PER_HOP):
            try:
                put = self._queue.popleft()
            except IndexError:
                return
            put.run()

    async def put(self, func: Callable[[], T]) -> T:
        """Run ``func()`` in a worker thread, in a hop shared with other puts; return its result.

        Raises:
            Exception: what ``func`` raised.
        """
        put = _Put(func)
        self._queue.append(put)
        try:
            while not put.finished:
                # A put taken by a hop under way waits for it, and so does
                # everyone while enough hops run.
                if self._draining >= DRAINERS or not self._queue:
                    await self._wait_for_hop()
                    continue
                self._draining += 1
                try:
                    await self._run(self._drain)
                finally:
                    self._draining -= 1
                    changed, self._changed = self._changed, None
                    if changed is not None:
                        changed.set()
        except BaseException:
            try:
                self._queue.remove(put)  # not taken: withdrawn, nothing written
            except ValueError:
                # Taken by a hop under way, which always runs to its end: wait for it.
                with anyio.CancelScope(shield=True):
                    while not put.finished and self._draining:
                        await self._wait_for_hop()
            raise
        return put.outcome()
