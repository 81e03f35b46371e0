"""The action contract as JSON Lines: one object a line, optionally gzip; with `mapping`, any JSON Lines.

Lines are handed to the contract's checks a few MB at a time, on its fast path (orjson, the stdlib only
for what orjson refuses). A UTF-8 byte order mark at the start is dropped, `\\r\\n` endings are read as
`\\n`, blank lines are skipped; a line's number is its place in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gatekit.logs.adapters._files import LINES_SUFFIXES, read_lines
from gatekit.logs.adapters.format import Format, Head, Reader
from gatekit.logs.contract import Lines

if TYPE_CHECKING:
    from gatekit.logs.adapters.mapping import FieldMapping

__all__ = ["FORMAT", "NAMES", "SUFFIXES", "mapped"]

SUFFIXES = LINES_SUFFIXES  # what a directory holds of it
NAMES = (".jsonl", ".json", ".ndjson")  # a file given by name that no format recognises (optionally .gz)


def detect(head: Head) -> bool:
    """An action: the first line is an object with a string `tool` (whatever else it holds)."""
    value = head.value
    return isinstance(value, dict) and isinstance(value.get("tool"), str)


def mapped(mapping: FieldMapping | Path | str | None) -> FieldMapping | None:
    """The `mapping` option as a `FieldMapping` (a file is read once per ingest)."""
    from gatekit.logs.adapters.mapping import FieldMapping, load_mapping  # YAML only when a mapping is used

    return mapping if isinstance(mapping, FieldMapping) or mapping is None else load_mapping(mapping)


def reader(mapping: FieldMapping | Path | str | None = None) -> Reader:
    transform = mapped(mapping)
    return lambda path: (Lines(first, batch, done, None, transform) for first, batch, done in read_lines(path))


FORMAT = Format(
    "jsonl", "the action contract, one object a line (with `mapping`: any JSON Lines)", "line",
    SUFFIXES, detect, reader,
    {"mapping": "a mapping file (or `FieldMapping`): which field of each line holds each action field"},
)
