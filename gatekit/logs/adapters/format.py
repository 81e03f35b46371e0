"""What a format is: a name, how it recognises a file, how it reads one, and the options it takes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gatekit.logs.adapters._files import first_value
from gatekit.logs.contract import Lines, Record

__all__ = ["Format", "Head", "Reader"]

# One file's `Lines` batches (checked as the contract, the fast path) or `Record`s (an adapter's own).
Reader = Callable[[Path], Iterable["Lines | Record"]]


class Head:
    """What detection looks at: a file's path, its lowercase name and (read on first use, once for every
    format asked) its first JSON value: the first line, or the whole file when that is one document."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name.lower()

    @cached_property
    def value(self) -> Any:
        return first_value(self.path)


@dataclass(frozen=True)
class Format:
    """A log format ingest reads.

    `suffixes` are the file names it takes in a directory; `detect(head)` says whether a file is of this
    format; `reader(**options)` makes one reader per ingest (so caches are shared by its files), and
    `reader(...)(path)` yields the file's batches of lines or records. `options` names the options it
    takes (name -> what it does); ingest hands a reader only its own.

    >>> register(Format("toy", "one action a line of `tool args...`", "line", (".toy",),
    ...                 lambda head: head.name.endswith(".toy"), lambda: read_toy))
    """

    name: str
    description: str
    unit: str  # one action per ...
    suffixes: tuple[str, ...]
    detect: Callable[[Head], bool]
    reader: Callable[..., Reader]
    options: Mapping[str, str] = field(default_factory=dict)
