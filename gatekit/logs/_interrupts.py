"""Ctrl-C held back while the store finishes a step that must not be cut in two (a commit, a rollback).

DuckDB checks for Ctrl-C while a statement runs and, when it sees one, raises `InterruptException` after
the statement: a commit interrupted so has committed all the same, and the rollback that follows fails
(`cannot rollback - no transaction is active`). Holding the signal until the step is done makes its outcome
the one the caller sees; the held Ctrl-C is then delivered as it would have been.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["held_interrupts"]


class _Held:
    def __init__(self) -> None:
        self.frame: FrameType | None = None
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received, self.frame = True, frame


@contextmanager
def held_interrupts() -> Iterator[_Held]:
    """Hold SIGINT for the block; on leaving it, a SIGINT that came meanwhile goes to the previous handler
    (Python's raises `KeyboardInterrupt`). Outside the main thread signals never arrive: nothing to hold.

    >>> with held_interrupts():
    ...     store.con.commit()
    """
    held = _Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = signal.signal(signal.SIGINT, held)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
    if held.received and callable(previous):
        previous(signal.SIGINT, held.frame)
