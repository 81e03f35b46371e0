"""The action store: one DuckDB file holding every ingested action and every quarantined line.

DuckDB allows one writer process or many readers, and the dashboard reads while a replay writes, so
opening retries for a few seconds when the file is locked instead of failing at once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from gatekit.errors import InputError, StoreError
from gatekit.logs._interrupts import held_interrupts

if TYPE_CHECKING:
    import polars as pl

__all__ = ["ACTION_BATCH", "QUARANTINE_BATCH", "SCHEMA_VERSION", "Store", "check_memory_limit", "limit_memory"]

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
  seq BIGINT NOT NULL,
  action_id VARCHAR NOT NULL,
  ts TIMESTAMPTZ NOT NULL,
  agent VARCHAR, session VARCHAR, "user" VARCHAR,
  tool VARCHAR NOT NULL,
  args JSON NOT NULL,
  context JSON NOT NULL,
  evidence_hash VARCHAR, executed_hash VARCHAR, outcome VARCHAR,
  approvals JSON,
  label VARCHAR,
  extra JSON,
  source VARCHAR, source_line BIGINT, ingested_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS quarantine (
  source VARCHAR, source_line BIGINT, raw VARCHAR, raw_bytes BLOB, reason VARCHAR, ingested_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""

# Column order of `actions`; `seq` is assigned on insert.
ACTION_COLUMNS = (
    "seq", "action_id", "ts", "agent", "session", "user", "tool", "args", "context",
    "evidence_hash", "executed_hash", "outcome", "approvals", "label", "extra",
    "source", "source_line", "ingested_at",
)
QUARANTINE_COLUMNS = ("source", "source_line", "raw", "raw_bytes", "reason", "ingested_at")
_DEFAULTS = {"args": "'{}'", "context": "'{}'"}
_TEXT, _TS = pa.string(), pa.timestamp("us", tz="UTC")
# The Arrow batches ingest hands over, JSON columns as JSON text (`insert_actions` takes any subset).
ACTION_BATCH = pa.schema([
    ("action_id", _TEXT), ("ts", _TS), ("agent", _TEXT), ("session", _TEXT), ("user", _TEXT), ("tool", _TEXT),
    ("args", _TEXT), ("context", _TEXT), ("evidence_hash", _TEXT), ("executed_hash", _TEXT),
    ("outcome", _TEXT), ("approvals", _TEXT), ("label", _TEXT), ("extra", _TEXT), ("source", _TEXT),
    ("source_line", pa.int64()), ("ingested_at", _TS),
])
QUARANTINE_BATCH = pa.schema([
    ("source", _TEXT), ("source_line", pa.int64()), ("raw", _TEXT), ("raw_bytes", pa.binary()),
    ("reason", _TEXT), ("ingested_at", _TS),
])

_LOCK_TIMEOUT = 5.0


class Store:
    """The DuckDB file that holds actions and quarantined lines.

    Opening writable creates the schema if missing. While another process holds the file, opening
    retries for `timeout` seconds before it raises `StoreError`.

    >>> with Store("gatekit.duckdb", read_only=True) as store:
    ...     store.count_actions()
    """

    def __init__(self, path: str | Path, read_only: bool = False, *, timeout: float = _LOCK_TIMEOUT,
                 memory_limit: str | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if memory_limit is not None:
            check_memory_limit(memory_limit)
        if read_only and not self.path.exists():
            raise StoreError(f"no store at `{path}`: run `gatekit ingest` first")
        self.con = _connect(self.path, read_only, timeout)
        try:
            if memory_limit is not None:
                limit_memory(self.con, memory_limit)
            if read_only:
                self._check_schema()
            else:
                self._create_schema()
        except BaseException:
            self.con.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with held_interrupts():  # closing checkpoints: a Ctrl-C then must not turn a done job into a crash
            self.con.close()

    def _create_schema(self) -> None:
        self._check_version()
        self.con.execute(_SCHEMA)
        self.con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", [SCHEMA_VERSION]
        )

    def _check_schema(self) -> None:
        tables = {row[0] for row in self.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if not {"actions", "quarantine", "meta"} <= tables:
            raise StoreError(f"`{self.path}` is not a gatekit store: run `gatekit ingest` first")
        self._check_version()

    def _check_version(self) -> None:
        has_meta = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'meta'"
        ).fetchall()[0][0]
        if not has_meta:
            return
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        if rows and rows[0][0] != SCHEMA_VERSION:
            raise StoreError(
                f"store `{self.path}` has schema version `{rows[0][0]}`, this gatekit reads `{SCHEMA_VERSION}`"
            )

    def next_seq(self) -> int:
        """The `seq` the next inserted action gets: one past the largest, 1 in an empty store."""
        return int(self.con.execute("SELECT coalesce(max(seq), 0) + 1 FROM actions").fetchall()[0][0])

    def count_actions(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM actions").fetchall()[0][0])

    def count_quarantine(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0])

    def insert_actions(self, batch: pa.Table | pl.DataFrame) -> int:
        """Append actions whose `action_id` is new; returns how many rows were inserted.

        `batch` holds any of the `actions` columns except `seq` (missing ones are NULL, args and context
        `{}`), JSON columns as JSON text. Row order is log order: `seq` continues from `next_seq()` in
        that order. A row whose `action_id` is already stored, or repeats an earlier row of the batch, is
        skipped, so re-inserting the same batch adds nothing.
        """
        table = _as_arrow(batch)
        if table.num_rows == 0:
            return 0
        names = set(table.column_names)
        if "action_id" not in names:
            raise StoreError("cannot insert actions without an `action_id` column")
        table = self._new_actions(table)
        if table.num_rows == 0:
            return 0
        table = table.append_column("_pos", pa.array(range(table.num_rows), pa.int64()))
        select = ", ".join(_source_column(col, names) for col in ACTION_COLUMNS if col != "seq")
        cols = ", ".join(f'"{c}"' for c in ACTION_COLUMNS)
        sql = f"INSERT INTO actions ({cols}) SELECT ? + b._pos, {select} FROM gatekit_batch b"
        return self._insert(sql, table, [self.next_seq()])

    def _new_actions(self, table: pa.Table) -> pa.Table:
        """The rows of `table` whose action_id is neither stored nor repeated earlier in `table`.

        Deduping here (an anti-join, no unique index: an index slows every bulk load) leaves the insert
        itself a plain append with `seq` from row order, about twice as fast as windows in the insert.
        """
        ids = table.column("action_id")
        if ids.null_count:
            raise StoreError("cannot insert actions with a null `action_id`")
        pos = pa.array(range(table.num_rows), pa.int64())
        keep = pa.array([True] * table.num_rows)
        if pc.count_distinct(ids).as_py() != table.num_rows:
            firsts = (
                pa.table({"action_id": ids, "_pos": pos}).group_by("action_id", use_threads=False)
                .aggregate([("_pos", "min")]).column("_pos_min")
            )
            keep = pc.is_in(pos, value_set=firsts)
        self.con.register("gatekit_ids", pa.table({"action_id": ids, "_pos": pos}))
        try:
            stored = self.con.execute(
                "SELECT b._pos FROM gatekit_ids b SEMI JOIN actions a ON a.action_id = b.action_id"
            ).fetchall()
        finally:
            self.con.unregister("gatekit_ids")
        if stored:
            keep = pc.and_(keep, pc.invert(pc.is_in(pos, value_set=pa.array([p for p, in stored], pa.int64()))))
        return table if pc.all(keep).as_py() else table.filter(keep)

    def insert_quarantine(self, batch: pa.Table | pl.DataFrame) -> int:
        """Append quarantined lines not already kept (same source, line and raw text or bytes)."""
        table = _as_arrow(batch)
        if table.num_rows == 0:
            return 0
        names = set(table.column_names)
        select = ", ".join(_source_column(col, names) for col in QUARANTINE_COLUMNS)
        sql = f"""
            INSERT INTO quarantine ({", ".join(QUARANTINE_COLUMNS)})
            SELECT DISTINCT ON (source, source_line, raw, raw_bytes) {select} FROM gatekit_batch b
            WHERE NOT EXISTS (
                SELECT 1 FROM quarantine q
                WHERE q.source IS NOT DISTINCT FROM b.source AND q.source_line IS NOT DISTINCT FROM b.source_line
                  AND q.raw IS NOT DISTINCT FROM b.raw AND q.raw_bytes IS NOT DISTINCT FROM b.raw_bytes
            )
        """
        return self._insert(sql, table, [])

    def _insert(self, sql: str, table: pa.Table, params: list[Any]) -> int:
        self.con.register("gatekit_batch", table)
        try:
            return int(self.con.execute(sql, params).fetchall()[0][0])
        finally:
            self.con.unregister("gatekit_batch")


def _source_column(col: str, names: set[str]) -> str:
    if col in names:
        return f'b."{col}"'
    return _DEFAULTS.get(col, "NULL")


def _as_arrow(batch: pa.Table | pl.DataFrame) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    return batch.to_arrow()


# what `--memory-limit` takes: a number and a unit, as DuckDB's `memory_limit` reads it
_MEMORY_LIMIT = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def check_memory_limit(text: str) -> str:
    """`text` (stripped) when DuckDB reads it as a size (`4GB`, `512MiB`); InputError otherwise."""
    if not _MEMORY_LIMIT.match(text):
        raise InputError(f"bad memory limit `{text}`: use a number and a unit, such as `4GB` or `512MiB`")
    return text.strip()


def limit_memory(con: duckdb.DuckDBPyConnection, limit: str, temp_directory: str | Path | None = None) -> None:
    """Hold `con`'s queries under `limit` (DuckDB's buffer manager; what does not fit spills to
    `temp_directory`, by default `<store>.tmp` beside a file store), with the order of inserted rows not
    kept (what lets the big operators spill; no query here depends on it)."""
    con.execute(f"SET memory_limit = '{check_memory_limit(limit)}'")
    con.execute("SET preserve_insertion_order = false")
    if temp_directory is not None:
        con.execute("SET temp_directory = ?", [str(temp_directory)])


def _connect(path: Path, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            # no progress bar: DuckDB draws it on stdout, into the output of the command using the store
            try:
                con.execute("SET enable_progress_bar = false")
            except duckdb.InvalidInputException:  # in Jupyter DuckDB draws a widget, and refuses the
                pass  # setting without ipywidgets: nothing reaches stdout there, so leave it
            return con
        except duckdb.IOException as e:
            message = str(e)
            if "lock" not in message.lower():
                raise StoreError(f"cannot open store `{path}`: {message}") from e
            if time.monotonic() + delay > deadline:
                mode = "read" if read_only else "write"
                raise StoreError(
                    f"store `{path}` is locked by another process, cannot open it to {mode} "
                    f"(waited {timeout:g}s): {message}"
                ) from e
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except duckdb.Error as e:
            raise StoreError(f"cannot open store `{path}`: {e}") from e
