"""Ingest: log files and directories of any registered format into the action store, all or nothing.

Three steps, one module each: reading (the formats, `gatekit.logs.adapters`), checking the contract
(`gatekit.logs.contract`: a reason for every record that cannot be an action, stable ids) and writing
(`gatekit.logs._writer`: batched inserts in log order, in one transaction). This module finds the files
and the format of each.

A file that cannot be read at all raises `LogFormatError` before anything is stored; anything bad *inside*
a readable file is quarantined with a reason, never raised, so one hostile line cannot stop an ingest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekit.errors import LogFormatError
from gatekit.logs.adapters import FORMATS, Format, Head, Reader
from gatekit.logs.adapters.jsonl import NAMES as JSONL_NAMES
from gatekit.logs.contract import Lines, Record

if TYPE_CHECKING:
    from gatekit.logs.store import Store

__all__ = ["IngestReport", "Interrupted", "Progress", "Source", "ingest", "readable", "sources"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Source:
    """One input of an ingest: its name (kept as `source`), the file, its size in bytes (for progress),
    the format that reads it, and `read()`: the `Lines` batches or the `Record`s of the file."""

    name: str
    path: Path
    size: int
    format: str
    read: Callable[[], Iterable[Lines | Record]]


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did; `stored + quarantined + duplicates + skipped == read` always. `skipped` are the
    lines a mapping's `where` left out (docs/actions.md)."""

    files: int
    read: int
    stored: int
    quarantined: int
    duplicates: int
    skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped an ingest. `report` says what it stored: None when the interrupt came before the
    commit (rolled back, nothing stored), else the report of the commit it waited for (all of it stored).

    >>> try:
    ...     ingest(store, ["big.jsonl"])
    ... except Interrupted as e:
    ...     print("nothing stored" if e.report is None else f"stored {e.report.stored}")
    """

    def __init__(self, report: IngestReport | None) -> None:
        super().__init__("nothing was stored" if report is None else f"stored {report.stored}")
        self.report = report


def ingest(
    store: Store,
    paths: Sequence[Path | str] | Sequence[Source],
    *,
    format: str | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    **options: Any,
) -> IngestReport:
    """Read log files and directories into `store` in the order given, all or nothing (one transaction).

    `paths` may also be the `Source`s that `sources` found (to check the inputs before a store is made);
    `format` and `options` then have been applied already. `format` applies to every path; without it each file's format is detected (see `sources`). `options`
    go to the formats that declare them (`mapping=` a mapping file: any JSON Lines or Parquet as the
    contract; `labels=` for AgentDojo runs). `progress(done_bytes, total_bytes)` is called now and then; it
    must not use `store`, which a background thread is writing to. `now` is the ingest time (default: the
    clock), also the `ts` of records without one. Ctrl-C raises `Interrupted`, which says whether anything
    was stored; a directory with no log file in it is a `LogFormatError`.

    >>> with Store("gatekit.duckdb") as store:
    ...     ingest(store, ["agents.jsonl"]).stored
    ...     ingest(store, ["runs/"]).stored                        # detected: AgentDojo runs
    ...     ingest(store, ["events.jsonl"], mapping="mapping.yaml").stored
    """
    from gatekit.logs._writer import (
        write,  # DuckDB and pyarrow: only when something is written
    )

    found = paths if paths and all(isinstance(p, Source) for p in paths) else sources(
        paths, format=format, **options)  # type: ignore[arg-type]
    return write(store, found, progress=progress, now=now)  # type: ignore[arg-type]


def sources(paths: Sequence[Path | str], *, format: str | None = None, **options: Any) -> list[Source]:
    """The files `ingest` would read and the format of each, in order; directories are walked in name order.

    With `format`, every file is read as that format (in a directory: the files with its suffixes). Without,
    each file is read by the first format that detects it; options given (not None) leave only the formats
    that declare one of them. A file no format recognises is read as JSON Lines when its name says so
    (`.jsonl`, `.ndjson`, and when given by name `.json`; optionally `.gz`), its bad lines quarantined; in a
    directory any other file is left out, and given by name it is an error. Every file is checked before
    anything is stored: `LogFormatError` if one cannot be read, or a directory holds no log file.
    """
    given = {name: value for name, value in options.items() if value is not None}
    candidates = _candidates(format, given)
    readers: dict[str, Reader] = {}
    out: list[Source] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            suffixes = tuple(s for f in candidates for s in f.suffixes)
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
            found = [(str(f), f, _format(f, candidates, format, in_directory=True)) for f in files]
            if not any(fmt is not None for *_, fmt in found):
                raise LogFormatError(f"no log files in `{entry}`: expected {_expected(candidates)}")
        else:
            found = [(str(entry), path, _format(path, candidates, format, in_directory=False))]
        for name, file, fmt in found:
            if fmt is None:
                continue
            reader = readers.get(fmt.name)
            if reader is None:
                reader = readers[fmt.name] = fmt.reader(**{k: v for k, v in given.items() if k in fmt.options})
            out.append(Source(name, file, readable(file), fmt.name, _bind(reader, file)))
    return out


def _candidates(format: str | None, options: dict[str, Any]) -> list[Format]:
    if format is not None:
        if format not in FORMATS:
            raise LogFormatError(f"unknown format `{format}`, expected one of {', '.join(FORMATS)}")
        fmt = FORMATS[format]
        for option in options:
            if option not in fmt.options:
                raise LogFormatError(f"`{option}` is an option of {_owners(option)} input, not of `{format}`")
        return [fmt]
    for option in options:
        if not any(option in f.options for f in FORMATS.values()):
            known = sorted({o for f in FORMATS.values() for o in f.options})
            raise LogFormatError(f"unknown ingest option `{option}`, expected one of {', '.join(known)}")
    return [f for f in FORMATS.values() if not options or any(o in f.options for o in options)]


def _expected(candidates: list[Format]) -> str:
    """What a directory must hold to be read, for the error that it holds none."""
    suffixes = sorted({s for f in candidates for s in f.suffixes})
    return f"files of {', '.join(f.name for f in candidates)} ({' '.join(suffixes)})"


def _owners(option: str) -> str:
    owners = [f.name for f in FORMATS.values() if option in f.options]
    return " or ".join(owners) if owners else "no"


def _bind(reader: Reader, path: Path) -> Callable[[], Iterable[Lines | Record]]:
    return lambda: reader(path)


def _format(path: Path, candidates: list[Format], format: str | None, *, in_directory: bool) -> Format | None:
    """The format a file is read as (None: a file of a directory that is not a log)."""
    if format is not None:
        return candidates[0]
    readable(path)
    head = Head(path)
    for fmt in candidates:
        if fmt.detect(head):
            return fmt
    # Nothing recognises it: JSON Lines by the name, as ingest always has (its bad lines are quarantined).
    jsonl = FORMATS["jsonl"]
    if jsonl in candidates:
        stem = head.name if in_directory else head.name.removesuffix(".gz")
        if stem.endswith(jsonl.suffixes if in_directory else JSONL_NAMES):
            return jsonl
    if in_directory:
        return None
    names = ", ".join(f.name for f in candidates)
    raise LogFormatError(f"cannot read `{path}`: unknown log format, expected one of {names} "
                         "(JSON Lines as .jsonl, .json or .ndjson, optionally .gz)")


def readable(given: Path | str) -> int:
    """The size of a file that can be opened and read, else `LogFormatError`."""
    path = Path(given)
    try:
        if not path.is_file():
            raise LogFormatError(f"cannot read `{given}`: {'a directory' if path.is_dir() else 'no such file'}")
        with path.open("rb") as f:
            f.read(1)
        size = path.stat().st_size
    except OSError as e:
        raise LogFormatError(f"cannot read `{given}`: {e.strerror or e}") from e
    return size
