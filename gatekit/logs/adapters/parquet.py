"""The action contract as Parquet: one row an action; with `mapping`, any columns.

Each row is turned by DuckDB into the JSON object its JSON Lines line would hold, and goes through the
same checks, so a bad row gets the same reason as the equivalent line. String columns `args`, `context`
and `approvals` hold JSON text; a null cell is an absent field; timestamps of any precision are kept to
the microsecond.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gatekit.errors import LogFormatError
from gatekit.logs.adapters.format import Format, Head, Reader
from gatekit.logs.adapters.jsonl import mapped
from gatekit.logs.contract import TOO_DEEP, Lines, Rejected, as_object, loads_slow

if TYPE_CHECKING:
    from gatekit.logs.adapters.mapping import FieldMapping

__all__ = ["FORMAT", "SUFFIXES", "parse_row", "rows"]

SUFFIXES = (".parquet", ".pq")
BATCH_ROWS = 50_000
_JSON_TEXT_COLUMNS = ("args", "context", "approvals")  # string columns that hold JSON text


def detect(head: Head) -> bool:
    """By name: `.parquet` or `.pq`."""
    return head.name.endswith(SUFFIXES)


def reader(mapping: FieldMapping | Path | str | None = None) -> Reader:
    transform = mapped(mapping)
    return lambda path: (Lines(first, batch, done, parse_row, transform) for first, batch, done in rows(path))


def rows(path: Path) -> Iterator[tuple[int, list[bytes], int]]:
    """(first row number, each row as JSON text, bytes of the file read so far, estimated)."""
    import duckdb  # here: the registry is read by the CLI, which must start without DuckDB

    con = duckdb.connect()  # its own connection: the store's is busy inside the ingest transaction
    try:
        con.execute("SET TimeZone = 'UTC'")
        columns = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchall()[0][0]
        fields = ", ".join(f"{_quote(name)} := {_expr(name, kind)}" for name, kind, *_ in columns)
        reader = con.sql(
            f"SELECT to_json(struct_pack({fields}))::VARCHAR "
            "FROM read_parquet($path, file_row_number = true) ORDER BY file_row_number",
            params={"path": str(path)},
        ).to_arrow_reader(BATCH_ROWS)
        size, first = path.stat().st_size, 1
        for batch in reader:
            lines = [text.encode("utf-8") for text in batch.column(0).to_pylist()]
            yield first, lines, size * (first + len(lines) - 1) // max(count, 1)
            first += len(lines)
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None  # Ctrl-C while DuckDB reads the file: an interrupt, not a bad file
    except duckdb.Error as e:
        raise LogFormatError(f"cannot read `{path}`: {e}") from e
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _expr(name: str, kind: str) -> str:
    if kind == "JSON" and name in _JSON_TEXT_COLUMNS:
        return f"{_quote(name)}::VARCHAR"  # parsed in Python like a JSONL line, NaN and all
    if kind.startswith("TIMESTAMP_"):
        return f"{_quote(name)}::TIMESTAMP"  # ns/ms/s precision: the store keeps microseconds
    return _quote(name)


def parse_row(line: bytes) -> tuple[dict[str, Any], bool]:
    """A row's JSON text as the object its JSON Lines line would hold (JSON text cells parsed, null cells
    dropped), checked; and whether it needed the stdlib."""
    try:
        record, slow = orjson.loads(line), False
    except orjson.JSONDecodeError:
        record, slow = loads_slow(line)  # DOUBLE NaN/Infinity come out of to_json as bare NaN
    if type(record) is dict:
        for name in _JSON_TEXT_COLUMNS:
            text = record.get(name)
            if type(text) is str:
                try:
                    record[name] = orjson.loads(text)
                except orjson.JSONDecodeError:
                    try:
                        record[name], slow = loads_slow(text.encode("utf-8"))[0], True
                    except Rejected as e:  # name the cell that did not parse; too deep reads as for a line
                        raise Rejected(e.reason if e.reason == TOO_DEEP else f"`{name}`: {e.reason}") from None
        # A Parquet column cannot be absent, only null: drop nulls so a row matches its JSONL line.
        record = {k: v for k, v in record.items() if v is not None}
    return as_object(record, slow), slow


FORMAT = Format(
    "parquet", "the action contract, one row an action (with `mapping`: any columns)", "row",
    SUFFIXES, detect, reader,
    {"mapping": "a mapping file (or `FieldMapping`): which column holds each action field"},
)
