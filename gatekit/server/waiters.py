"""Long polls that wake when their request changes, instead of re-reading the store every few milliseconds.

The store tells `Waiters.wake(request_id)` what each committed transaction changed: in-process for SQLite,
through PostgreSQL's LISTEN/NOTIFY for every replica on a shared database. A long poll registers before it
reads, so a change committed between its read and its wait still wakes it; `wake(None)` (the listener lost
its connection and may have missed some) wakes every waiter to read again.

>>> waiters = Waiters()
>>> stop = store.listen(waiters.wake)
>>> with waiters.watch(rid) as woken:
...     view = read(rid)              # then, if still pending:
...     await woken.wait(timeout=2.0)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Waiter:
    """One long poll's wake-up: set from any thread, awaited on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    def set(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the loop is closing: nobody waits any more
            pass

    async def wait(self, timeout: float) -> bool:
        """True if woken, False after `timeout` seconds; either way, ready for the next wait."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.event.clear()


class Waiters:
    """The long polls waiting on each request, woken from the store's listener thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_request: dict[str, set[Waiter]] = {}

    @contextmanager
    def watch(self, request_id: str) -> Iterator[Waiter]:
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            self._by_request.setdefault(request_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                found = self._by_request.get(request_id)
                if found is not None:
                    found.discard(waiter)
                    if not found:
                        del self._by_request[request_id]

    def wake(self, request_id: str | None) -> None:
        """The request changed (None: any may have); callable from any thread."""
        with self._lock:
            if request_id is None:
                woken = [w for ws in self._by_request.values() for w in ws]
            else:
                woken = list(self._by_request.get(request_id, ()))
        for waiter in woken:
            waiter.set()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(ws) for ws in self._by_request.values())
