"""Writing an ingest: checked rows into the store in batches, in log order, all or nothing.

`write` reads each source in turn, has the contract check what it yields (`gatekit.logs.contract`) and
inserts the rows and the quarantined records in one transaction, which Ctrl-C never leaves half done. The store skips an `action_id` it
holds already, so re-ingesting a file adds nothing, and numbers rows (`seq`) in the order they came.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from gatekit.errors import StoreError
from gatekit.logs.contract import Lines, Record, check_lines, check_record
from gatekit.logs._interrupts import held_interrupts
from gatekit.logs.ingest import IngestReport, Interrupted, Progress, Source
from gatekit.logs.store import ACTION_BATCH, QUARANTINE_BATCH, Store

__all__ = ["BATCH_ROWS", "write"]

BATCH_ROWS = 50_000
_UTC_US = ACTION_BATCH.field("ts").type


def write(store: Store, sources: Sequence[Source], *, progress: Progress | None = None,
          now: datetime | None = None) -> IngestReport:
    """Check and store every record of `sources`, in order, in one transaction (see `gatekit.logs.ingest`).

    Ctrl-C raises `Interrupted`: before the commit, with the transaction rolled back and nothing stored;
    during it, once the commit is done, with the report of what it stored.

    >>> write(store, sources(["agents.jsonl"])).stored
    """
    now = _utc(now or datetime.now(timezone.utc))
    total = sum(source.size for source in sources)
    writer, done = _Writer(store, now), 0
    try:
        with held_interrupts():  # DuckDB may take a Ctrl-C that comes during BEGIN for its own: held, it is ours
            store.con.begin()
        for source in sources:
            seen: dict[str, int] = {}  # content hash -> occurrences in this file
            for item in source.read():
                if type(item) is Lines:
                    writer.add_lines(source.name, item, seen)
                    if progress is not None:
                        progress(done + min(item.done, source.size), total)
                else:
                    writer.add_record(source.name, item, seen)  # type: ignore[arg-type]
            done += source.size
            if progress is not None:
                progress(done, total)
        writer.flush()
        writer.close()
    except BaseException as e:
        with held_interrupts():  # a second Ctrl-C must not cut the rollback short
            writer.close(failed=True)
            _rollback(store)
        if isinstance(e, (KeyboardInterrupt, duckdb.InterruptException)):
            raise Interrupted(None) from None
        if isinstance(e, duckdb.Error):
            raise StoreError(f"cannot write to store `{store.path}`: {e}") from e
        raise
    report = IngestReport(len(sources), writer.read, writer.stored, writer.quarantined, writer.duplicates,
                          writer.skipped)
    try:
        with held_interrupts():  # committed or not, never both: a Ctrl-C now waits for the commit to end
            _commit(store)
    except KeyboardInterrupt:
        raise Interrupted(report) from None  # it came during the commit, which went through
    if progress is not None:
        progress(total, total)
    return report


def _commit(store: Store) -> None:
    try:
        store.con.commit()
    except duckdb.Error as e:
        _rollback(store)
        raise StoreError(f"cannot write to store `{store.path}`: {e}") from e


def _rollback(store: Store) -> None:
    """Roll the ingest's transaction back; a statement that failed may have ended it already."""
    try:
        store.con.rollback()
    except duckdb.TransactionException:
        pass


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


class _Writer:
    """Collects checked rows and has a background thread write them to the store in batches.

    DuckDB releases the GIL while it inserts, so the next batch is checked meanwhile (about 10% faster
    on two cores); one batch in flight keeps memory bounded and the inserts in order.
    """

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        self.rows: list[tuple[Any, ...]] = []
        self.bad: list[tuple[Any, ...]] = []
        self.read = self.stored = self.quarantined = self.duplicates = self.skipped = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatekit-ingest")
        self._pending: Future[None] | None = None

    def add_lines(self, source: str, batch: Lines, seen: dict[str, int]) -> None:
        bad = len(self.bad)
        read, skipped = check_lines(batch, source, self.now, seen, self.rows, self.bad)
        self.read += read
        self.skipped += skipped
        self.quarantined += len(self.bad) - bad
        if len(self.rows) >= BATCH_ROWS or len(self.bad) >= BATCH_ROWS:
            self.flush()

    def add_record(self, source: str, record: Record, seen: dict[str, int]) -> None:
        bad = len(self.bad)
        check_record(record, source, self.now, seen, self.rows, self.bad)
        self.read += 1
        self.quarantined += len(self.bad) - bad
        if len(self.rows) >= BATCH_ROWS or len(self.bad) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        actions = _table(self.rows, ACTION_BATCH, self.now) if self.rows else None
        bad = _table(self.bad, QUARANTINE_BATCH, self.now) if self.bad else None
        self.rows, self.bad = [], []
        self._wait()
        if actions is not None or bad is not None:
            self._pending = self._writer.submit(self._write, actions, bad)

    def _write(self, actions: pa.Table | None, bad: pa.Table | None) -> None:
        if actions is not None:
            inserted = self.store.insert_actions(actions)
            self.stored += inserted
            self.duplicates += actions.num_rows - inserted
        if bad is not None:
            self.store.insert_quarantine(bad)

    def _wait(self, failed: bool = False) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if failed:
                wait([pending])  # only so that the rollback does not race the insert
            else:
                pending.result()

    def close(self, failed: bool = False) -> None:
        try:
            self._wait(failed)
        finally:
            self._writer.shutdown(wait=True)


def _table(rows: list[tuple[Any, ...]], schema: pa.Schema, now: datetime) -> pa.Table:
    """Rows (tuples in `schema` order, `ingested_at` last and left out) as an Arrow table."""
    columns = [pa.array(values, field.type) for field, values in zip(schema, zip(*rows))]
    return pa.Table.from_arrays([*columns, pa.repeat(pa.scalar(now, _UTC_US), len(rows))], schema=schema)
