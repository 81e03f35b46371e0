from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from gatekit.errors import StoreError
from gatekit.logs import Store

ACTION_COLUMNS = [
    "seq", "action_id", "ts", "agent", "session", "user", "tool", "args", "context", "evidence_hash",
    "executed_hash", "outcome", "approvals", "label", "extra", "source", "source_line", "ingested_at",
]
TS = datetime(2026, 11, 1, 10, tzinfo=timezone.utc)


def columns(store: Store, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in store.con.execute(f"DESCRIBE {table}").fetchall()]


def test_a_new_store_has_the_schema_and_reopening_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        assert [name for name, _ in columns(store, "actions")] == ACTION_COLUMNS
        assert dict(columns(store, "actions"))["args"] == "JSON"
        assert dict(columns(store, "actions"))["ts"] == "TIMESTAMP WITH TIME ZONE"
        assert [name for name, _ in columns(store, "quarantine")] == [
            "source", "source_line", "raw", "raw_bytes", "reason", "ingested_at"]
        store.insert_actions(pa.table({"action_id": ["x"], "ts": [TS], "tool": ["t"]}))
    with Store(path) as store:  # idempotent: nothing is dropped or duplicated
        assert store.count_actions() == 1
        assert store.con.execute("SELECT key, value FROM meta").fetchall() == [("schema_version", "1")]
    with Store(path, read_only=True) as store:
        assert store.count_actions() == 1 and store.read_only


def test_read_only_open_of_a_missing_store_says_to_ingest(tmp_path: Path) -> None:
    path = tmp_path / "nope.duckdb"
    with pytest.raises(StoreError, match=r"no store at `.*nope\.duckdb`: run `gatekit ingest` first"):
        Store(path, read_only=True)
    assert not path.exists()


def test_a_file_that_is_not_a_gatekit_store_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database" * 1000)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(junk)
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(StoreError, match="not a gatekit store"):
        Store(other, read_only=True)


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version `99`"):
        Store(path)


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(path)!r})\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_store_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    proc = _hold_lock(path, 30)
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            Store(path, read_only=True, timeout=0.3)
        with pytest.raises(StoreError, match="locked by another process"):
            Store(path, timeout=0)
    finally:
        proc.kill()
        proc.wait()


def test_a_read_only_open_waits_for_a_writer_to_finish(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    proc = _hold_lock(path, 0.8)
    try:
        start = time.monotonic()
        with Store(path, read_only=True) as store:  # default: retry for up to ~5 s
            assert store.count_actions() == 0
        assert time.monotonic() - start >= 0.3
    finally:
        proc.kill()
        proc.wait()


def test_insert_actions_skips_known_and_repeated_ids_and_numbers_seq_in_row_order(store: Store) -> None:
    assert store.next_seq() == 1
    first = pa.table({"action_id": ["a", "b", "a", "c"], "ts": [TS] * 4, "tool": ["t1", "t2", "t3", "t4"]})
    assert store.insert_actions(first) == 3
    rows = store.con.execute("SELECT seq, action_id, tool, args::VARCHAR FROM actions ORDER BY seq").fetchall()
    assert rows == [(1, "a", "t1", "{}"), (2, "b", "t2", "{}"), (3, "c", "t4", "{}")]
    second = pl.DataFrame({"action_id": ["c", "d"], "ts": [TS, TS], "tool": ["t5", "t6"]})
    assert store.insert_actions(second) == 1
    assert store.con.execute("SELECT seq, tool FROM actions WHERE action_id = 'd'").fetchall() == [(4, "t6")]
    assert store.next_seq() == 5 and store.count_actions() == 4
    assert store.insert_actions(first) == 0


def test_insert_quarantine_skips_rows_already_kept(store: Store) -> None:
    batch = pa.table({
        "source": ["f.jsonl", "f.jsonl", "f.jsonl"], "source_line": [1, 2, 2],
        "raw": ["{", None, "x"], "raw_bytes": [None, b"\xff", None], "reason": ["r1", "r2", "r3"],
    })
    assert store.insert_quarantine(batch) == 3
    assert store.insert_quarantine(batch) == 0
    assert store.count_quarantine() == 3
