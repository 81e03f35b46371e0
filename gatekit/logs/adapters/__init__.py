"""Adapters: agent traces in other formats, read as the action contract and ingested the one way.

Every adapter turns a file into records (or reasons it cannot) and hands them to `ingest_sources`, so
they get the contract's checks, stable ids, quarantine and batched inserts like a JSONL line does.

| format | what | one action per |
|---|---|---|
| `agentdojo` | AgentDojo run files (`<model>/<suite>/<user_task>/<attack>/<injection_task>.json`) | tool call |
| `otel` | OTLP JSON as the OpenTelemetry file exporters write it (JSON Lines of TracesData) | `execute_tool` span |
| `openai-agents` | OpenAI Agents SDK trace exports (JSON Lines of exported traces and spans) | function span |
| `jsonl` | the action contract, one object a line (with `mapping`: any JSON Lines) | line |
| `parquet` | the action contract, one row an action (with `mapping`: any columns) | row |

>>> with Store("gatekit.duckdb") as store:
...     ingest(store, ["runs/"]).stored                        # detected: AgentDojo runs
...     ingest(store, ["spans.jsonl"], format="otel").stored
...     ingest(store, ["events.jsonl"], mapping="mapping.yaml").stored
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gatekit.errors import LogFormatError
from gatekit.logs.adapters import agentdojo, openai_agents, otel
from gatekit.logs.adapters._files import first_value
from gatekit.logs.adapters.mapping import FieldMapping, load_mapping, parse_mapping
from gatekit.logs.ingest import (
    PARQUET_SUFFIXES, IngestReport, Progress, Record, Source, ingest_sources, inspect, readable,
)
from gatekit.logs.store import Store

__all__ = [
    "ADAPTERS", "FORMATS", "Adapter", "FieldMapping", "detect", "ingest", "load_mapping", "parse_mapping", "register",
    "sources",
]

Reader = Callable[[Path, str], Iterable[Record]]

_LINES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")   # what a directory holds of the contract, as before
_JSON = (".json", ".json.gz", *_LINES)


@dataclass(frozen=True)
class Adapter:
    """A trace format: which files of a directory it reads, how it recognises one, and its reader.

    `claims(value)` says whether the first JSON value of a file (its first line, or the whole file when
    that is one document) is of this format. `reader(**options)` makes one reader per ingest (so caches
    are shared by its files); `reader(...)(path, name)` yields the file's records.
    """

    name: str
    suffixes: tuple[str, ...]
    claims: Callable[[Any], bool]
    reader: Callable[..., Reader]
    description: str = ""


ADAPTERS: dict[str, Adapter] = {}


def register(adapter: Adapter) -> None:
    """Add (or replace) a format; detection tries formats in registration order."""
    ADAPTERS[adapter.name] = adapter


register(Adapter("agentdojo", (".json",), agentdojo.claims, agentdojo.Reader,
                 "AgentDojo run files: one action per tool call"))
register(Adapter("otel", _JSON, otel.claims, otel.Reader,
                 "OTLP JSON (OpenTelemetry file exporter): one action per execute_tool span"))
register(Adapter("openai-agents", _JSON, openai_agents.claims, openai_agents.Reader,
                 "OpenAI Agents SDK trace export: one action per function span"))

# The contract's own formats, read by ingest itself; FORMATS are the built-in ones (the CLI's `--format`).
CONTRACT = ("jsonl", "parquet")
FORMATS = (*ADAPTERS, *CONTRACT)


def ingest(
    store: Store,
    paths: Sequence[Path | str],
    *,
    format: str | None = None,
    mapping: FieldMapping | Path | str | None = None,
    labels: bool | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """Read log files and directories of any known format into `store`, all or nothing.

    `format` applies to every path; without it each file's format is detected (see `detect`). A
    `mapping` (file or `FieldMapping`) reads any JSON Lines or Parquet as the contract. `labels` (AgentDojo):
    derive ground-truth labels, default when the `agentdojo` package is installed.

    >>> ingest(store, ["../shared/data/agentdojo-runs"]).stored
    """
    return ingest_sources(store, sources(paths, format=format, mapping=mapping, labels=labels),
                          progress=progress, now=now)


def sources(
    paths: Sequence[Path | str],
    *,
    format: str | None = None,
    mapping: FieldMapping | Path | str | None = None,
    labels: bool | None = None,
) -> list[Source]:
    """The files `ingest` would read and how, in order; directories are walked in name order.

    In a directory: with `format`, the files with that format's suffixes; without, `.jsonl`/`.ndjson`/
    `.parquet` files (optionally `.gz`) as ever, plus `.json` files that an adapter recognises. Every file
    is checked before anything is stored: `LogFormatError` if one cannot be read.
    """
    known = (*ADAPTERS, *CONTRACT)
    if format is not None and format not in known:
        raise LogFormatError(f"unknown format `{format}`, expected one of {', '.join(known)}")
    if mapping is not None and format not in (None, *CONTRACT):
        raise LogFormatError(f"a mapping reads jsonl or parquet input, not `{format}`")
    transform = mapping if isinstance(mapping, FieldMapping) or mapping is None else load_mapping(mapping)
    options = {"agentdojo": {"labels": labels}}
    readers: dict[str, Reader] = {}
    out: list[Source] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = [(f, _format(f, format, transform, in_directory=True)) for f in _walk(path, format, transform)]
            files = [(f, kind) for f, kind in files if kind != _SKIP]
        else:
            files = [(path, _format(path, format, transform, in_directory=False))]
        for file, kind in files:
            name = str(given) if file is path else str(file)
            if kind in CONTRACT or kind is None:
                source = inspect(name, kind)
                out.append(Source(source.name, source.path, source.size, source.kind, transform=transform))
                continue
            reader = readers.get(kind)
            if reader is None:
                reader = readers[kind] = ADAPTERS[kind].reader(**options.get(kind, {}))
            out.append(Source(name, file, readable(file), "records", read=_bind(reader, file, name)))
    return out


def _bind(reader: Reader, path: Path, name: str) -> Callable[[], Iterable[Record]]:
    return lambda: reader(path, name)


def _walk(directory: Path, format: str | None, transform: FieldMapping | None) -> list[Path]:
    if format in ADAPTERS:
        suffixes: tuple[str, ...] = ADAPTERS[format].suffixes
    elif format == "parquet":
        suffixes = PARQUET_SUFFIXES
    elif format == "jsonl" or transform is not None:
        suffixes = _LINES if format == "jsonl" else (*_LINES, *PARQUET_SUFFIXES)
    else:
        suffixes = (*_JSON, *PARQUET_SUFFIXES)
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))


_SKIP = "skip"


def _format(path: Path, format: str | None, transform: FieldMapping | None, *, in_directory: bool) -> str | None:
    """The format a file is read as: `format` when given; else detected. A file nothing recognises is read
    by its name (None), as ingest always has, its bad lines quarantined; but in a directory a `.json` file
    nothing recognises is not taken for a log (`_SKIP`)."""
    if format is not None:
        return format
    name = path.name.lower()
    parquet = name.endswith(PARQUET_SUFFIXES)
    if transform is not None:
        return "parquet" if parquet else "jsonl"
    if parquet:
        return "parquet"
    readable(path)
    found = detect(path)
    if found is None and in_directory and not name.endswith(_LINES):
        return _SKIP
    return found


def detect(path: Path | str) -> str | None:
    """The format of a file from its name and first JSON value, or None when nothing recognises it.

    `.parquet`/`.pq`: `parquet`. Otherwise the first line (or the whole file, when it is one JSON
    document) is an action when it is an object with a string `tool` (`jsonl`), else it is offered to each adapter in
    turn (`agentdojo`: `suite_name`, `user_task_id` and a `messages` list; `otel`: `resourceSpans`;
    `openai-agents`: `object` `trace` or `trace.span`, or a `data` list of those).

    >>> detect("runs/gpt-4o/banking/user_task_0/none/none.json")
    'agentdojo'
    """
    path = Path(path)
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return "parquet"
    value = first_value(path)
    if isinstance(value, dict) and isinstance(value.get("tool"), str):
        return "jsonl"  # the contract first: a record with a `tool` is an action, whatever else it holds
    for adapter in ADAPTERS.values():
        if adapter.claims(value):
            return adapter.name
    return None
