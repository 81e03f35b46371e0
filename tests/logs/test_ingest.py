from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.action import canonical_json
from gatekit.errors import LogFormatError
from gatekit.logs import IngestReport, Store, ingest
from gatekit.logs.contract import content_id as fast_content_id

from .conftest import Fetch

WriteLines = Callable[..., Path]


def jsonl(records: list[dict[str, Any]]) -> list[bytes]:
    # json.dumps, not orjson: the records hold NaN and Infinity, which JSON Lines in the wild do too.
    return [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]


def content_id(record: dict[str, Any]) -> str:
    """The documented id: sha256 of the canonical JSON of the record without action_id (and nulls)."""
    content = {k: v for k, v in record.items() if k != "action_id" and v is not None}
    return "a-" + hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()[:24]


def stored(fetch: Fetch, store: Store) -> list[dict[str, Any]]:
    return fetch(store, """
        SELECT seq, action_id, ts, agent, session, "user", tool, args::VARCHAR AS args,
               context::VARCHAR AS context, evidence_hash, executed_hash, outcome,
               approvals::VARCHAR AS approvals, label, extra::VARCHAR AS extra, source_line
        FROM actions ORDER BY seq""")


def same_json(text: str | None, value: Any) -> bool:
    """Equal as JSON values, NaN equal to NaN (json.loads reads the NaN the store keeps)."""
    if text is None or value is None:
        return text is None and value is None
    return json.dumps(json.loads(text), sort_keys=True) == json.dumps(value, sort_keys=True)


# ---- contract records --------------------------------------------------------------------------------


def test_contract_records_round_trip(store: Store, fetch: Fetch, write_lines: WriteLines,
                                     contract_records: list[dict[str, Any]], now: datetime) -> None:
    path = write_lines("log.jsonl", jsonl(contract_records))
    report = ingest(store, [path], now=now)
    assert report == IngestReport(files=1, read=4, stored=4, quarantined=0, duplicates=0)
    rows = stored(fetch, store)
    assert [r["action_id"] for r in rows] == ["a-1", "a-2", "a-3", "a-4"]  # seq follows the lines
    assert [r["source_line"] for r in rows] == [1, 2, 3, 4]
    for row, record in zip(rows, contract_records):
        for name in ("agent", "session", "user", "tool", "evidence_hash", "executed_hash", "outcome", "label"):
            assert row[name] == record.get(name), name
        assert same_json(row["args"], record.get("args") or {})
        assert same_json(row["context"], record.get("context") or {})
        assert same_json(row["approvals"], record.get("approvals"))
    assert rows[0]["ts"] == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    assert rows[1]["ts"] == datetime(2026, 11, 1, 10, 30, tzinfo=timezone.utc)  # +02:00 to UTC
    assert rows[2]["ts"] == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)  # naive is UTC
    assert rows[3]["ts"] == now  # no ts: the ingest time
    args = json.loads(rows[2]["args"])
    assert math.isnan(args["amount"]) and args["limit"] == math.inf and args["floor"] == -math.inf
    assert json.loads(rows[1]["args"])["subject"] == "Grüße 👋"
    assert json.loads(rows[3]["extra"]) == {"team": "ops", "cost": {"usd": 0.02}}
    assert rows[0]["extra"] is None
    # the JSON columns are real JSON to DuckDB, NaN included
    assert store.con.execute(
        "SELECT args->>'$.recipient', json_type(args, '$.amount') FROM actions WHERE seq = 1"
    ).fetchall() == [("ACME", "DOUBLE")]
    assert store.con.execute("SELECT isnan((args->>'$.amount')::DOUBLE) FROM actions WHERE action_id = 'a-3'"
                             ).fetchall() == [(True,)]
    assert fetch(store, "SELECT DISTINCT source, ingested_at FROM actions") == [
        {"source": str(path), "ingested_at": now}]


def test_epoch_timestamps_and_seq_continuing_across_ingests(store: Store, fetch: Fetch,
                                                             write_lines: WriteLines) -> None:
    first = write_lines("a.jsonl", [b'{"tool": "t", "ts": 1700000000}', b'{"tool": "t", "ts": 1700000000.25}'])
    second = write_lines("b.jsonl", [b'{"tool": "u", "ts": 0}'])
    ingest(store, [first])
    ingest(store, [second])
    rows = fetch(store, "SELECT seq, tool, ts FROM actions ORDER BY seq")
    assert [(r["seq"], r["tool"]) for r in rows] == [(1, "t"), (2, "t"), (3, "u")]
    assert rows[0]["ts"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert rows[1]["ts"] == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=timezone.utc)
    assert rows[2]["ts"] == datetime(1970, 1, 1, tzinfo=timezone.utc)


# ---- stable ids and re-ingest ------------------------------------------------------------------------


def test_ids_are_stable_and_reingest_adds_nothing(tmp_path: Path, fetch: Fetch,
                                                  write_lines: WriteLines) -> None:
    records = [
        {"tool": "email.send", "agent": "a", "ts": "2026-11-01T10:00:00Z", "args": {"to": "x"}},
        {"tool": "email.send", "agent": "a", "ts": "2026-11-01T10:00:00Z", "args": {"to": "x"}},  # repeat
        {"args": {"to": "x"}, "ts": "2026-11-01T10:00:00Z", "agent": "a", "tool": "email.send"},  # reordered
        {"tool": "db.query", "args": {"tiny": 1e-05}, "session": None},  # stdlib float form in the hash
        {"tool": "db.query", "args": {"n": float("nan")}},  # parsed by the stdlib
        {"tool": "db.query", "action_id": "given-1"},
    ]
    path = write_lines("log.jsonl", jsonl(records))
    ids = []
    for name in ("one.duckdb", "two.duckdb"):
        with Store(tmp_path / name) as store:
            assert ingest(store, [path]).stored == 6
            ids.append([r["action_id"] for r in fetch(store, "SELECT action_id FROM actions ORDER BY seq")])
            again = ingest(store, [path])
            assert again == IngestReport(files=1, read=6, stored=0, quarantined=0, duplicates=6)
            assert store.count_actions() == 6
    assert ids[0] == ids[1]
    expected = content_id(records[0])
    assert ids[0][:3] == [expected, expected + "#2", expected + "#3"]
    assert ids[0][3] == content_id(records[3])
    assert ids[0][4] == content_id(records[4])
    assert ids[0][5] == "given-1"


def test_the_same_content_in_another_file_and_repeated_ids_are_duplicates(
        store: Store, write_lines: WriteLines) -> None:
    a = write_lines("a.jsonl", [b'{"tool": "t", "ts": 5}', b'{"tool": "x", "action_id": "id-1"}'])
    b = write_lines("b.jsonl", [b'{"ts": 5, "tool": "t"}', b'{"tool": "y", "action_id": "id-1"}',
                                b'{"tool": "z", "action_id": "id-2"}'])
    report = ingest(store, [a, b])
    assert report == IngestReport(files=2, read=5, stored=3, quarantined=0, duplicates=2)
    assert store.con.execute("SELECT tool FROM actions WHERE action_id = 'id-1'").fetchall() == [("x",)]


def test_reingest_does_not_duplicate_quarantine_rows(store: Store, write_lines: WriteLines) -> None:
    path = write_lines("log.jsonl", [b'{"tool": "ok"}', b"{broken", b"\xff\xfe"])
    assert ingest(store, [path]) == IngestReport(files=1, read=3, stored=1, quarantined=2, duplicates=0)
    assert ingest(store, [path]) == IngestReport(files=1, read=3, stored=0, quarantined=2, duplicates=1)
    assert store.count_quarantine() == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_fast_id_is_the_canonical_json_id(record: dict[str, Any]) -> None:
    parsed = orjson.loads(orjson.dumps(record))  # what the orjson fast path hands over
    assert fast_content_id(parsed, False, {}) == content_id(parsed)


# ---- hostile input -----------------------------------------------------------------------------------

DEEP = b"[" * 5000 + b"]" * 5000
HOSTILE: list[tuple[bytes, str | None]] = [  # (line, expected reason fragment or None when stored)
    (b'{"tool": "ok.first"}', None),
    (b"{not json", "invalid json"),
    (b'{"tool": "t"} trailing', "invalid json"),
    (b"[1, 2, 3]", "not a json object (got array)"),
    (b'"just a string"', "not a json object (got string)"),
    (b"42", "not a json object (got number)"),
    (b"null", "not a json object (got null)"),
    (b'{"args": {}}', "missing `tool`"),
    (b'{"tool": null}', "missing `tool`"),
    (b'{"tool": 5}', "`tool` is not a string (got number)"),
    (b'{"tool": ["a"]}', "`tool` is not a string (got array)"),
    (b'{"tool": ""}', "`tool` is empty"),
    (b'{"tool": "t", "ts": "yesterday"}', "bad timestamp `yesterday`"),
    (b'{"tool": "t", "ts": true}', "bad timestamp (got boolean)"),
    (b'{"tool": "t", "ts": NaN}', "bad timestamp `NaN`"),
    (b'{"tool": "t", "ts": -1}', "bad timestamp `-1`"),
    (b'{"tool": "t", "ts": 1e20}', "bad timestamp"),
    (b'{"tool": "t", "ts": "0001-01-01T00:00:00+01:00"}', "bad timestamp"),
    (b'{"tool": "t", "args": [1, 2]}', "`args` is not an object (got array)"),
    (b'{"tool": "t", "context": "prod"}', "`context` is not an object (got string)"),
    (b'{"tool": "t", "agent": 7}', "`agent` is not a string or null (got number)"),
    (b'{"tool": "t", "action_id": {"a": 1}}', "`action_id` is not a string or null (got object)"),
    (b'{"tool": "t", "label": "evil"}', "`label` must be `harmful`, `benign` or null, not `evil`"),
    (b'{"tool": "t", "approvals": {"reviewer": "a"}}', "`approvals` is not a list of objects (got object)"),
    (b'{"tool": "t", "approvals": ["alice"]}', "`approvals` is not a list of objects (got string at index 0)"),
    (b'{"tool": "t.nan", "args": {"x": NaN, "y": Infinity, "z": -Infinity}}', None),
    (b'{"tool": "t.big", "args": {"blob": "' + b"x" * 200_000 + b'"}}', None),
    (b'{"tool": "t", "args": {"d": ' + DEEP + b"}}", "nesting too deep"),
    (DEEP, "nesting too deep"),
    (b'{"tool": "t", "args": {"d": ' + b"[" * 63 + b"]" * 63 + b"}}", "nesting too deep"),  # 65 levels
    (b'{"tool": "t.ok63", "args": {"d": ' + b"[" * 62 + b"]" * 62 + b"}}", None),  # 64 levels: fine
    (b'{"tool": "t", "args": {"s": "\\ud800"}}', "lone surrogate in string"),
    (b'{"tool": "t", "\\udc00": 1}', "lone surrogate in string"),
    (b'{"tool": "t.pair", "args": {"s": "\\ud83d\\ude00"}}', None),  # a proper pair is fine
    (b'{"tool": "t\xff\xfe"}', "invalid utf-8 at byte offset 11"),
    (b'{"tool": "t", "args": {"s": "\xed\xa0\x80"}}', "invalid utf-8 at byte offset 29"),  # UTF-8 surrogate
    (b'{"tool": "nul \x00 inside"', "invalid json"),
    (b'{"tool": "crlf"}\r', None),
    (b"", None),
    (b"   \t", None),
    (b'{"tool": "t.extra", "weird key \xc3\xa9": [1], "ts": null}', None),
    (b'{"tool": "ok.last"}', None),
]


def test_hostile_jsonl_is_quarantined_line_by_line(store: Store, fetch: Fetch, write_lines: WriteLines) -> None:
    lines = [line for line, _ in HOSTILE]
    path = write_lines("hostile.jsonl", lines)
    report = ingest(store, [path])
    non_empty = [line for line in lines if line.strip()]
    assert report.read == len(non_empty)
    assert report.stored + report.quarantined == report.read and report.duplicates == 0
    expected_bad = {n: reason for n, (line, reason) in enumerate(HOSTILE, 1) if reason}
    assert report.quarantined == len(expected_bad)
    bad = {r["source_line"]: r for r in fetch(store, "SELECT * FROM quarantine")}
    assert set(bad) == set(expected_bad)
    for number, fragment in expected_bad.items():
        row = bad[number]
        assert fragment in row["reason"], (number, row["reason"])
        assert row["reason"] == row["reason"].lower() or "`" in row["reason"], row["reason"]
        line = HOSTILE[number - 1][0]
        try:
            assert row["raw"] == line.decode("utf-8") and row["raw_bytes"] is None
        except UnicodeDecodeError:
            assert row["raw"] is None and row["raw_bytes"] == line  # the bytes are kept as they were
        assert row["source"] == str(path)
    tools = [r["tool"] for r in fetch(store, "SELECT tool FROM actions ORDER BY seq")]
    assert tools == ["ok.first", "t.nan", "t.big", "t.ok63", "t.pair", "crlf", "t.extra", "ok.last"]
    big = store.con.execute("SELECT length(args->>'$.blob') FROM actions WHERE tool = 't.big'").fetchall()
    assert big == [(200_000,)]
    pair = store.con.execute("SELECT args->>'$.s' FROM actions WHERE tool = 't.pair'").fetchall()
    assert pair == [("😀",)]
    extra = store.con.execute("SELECT extra::VARCHAR FROM actions WHERE tool = 't.extra'").fetchall()
    assert json.loads(extra[0][0]) == {"weird key é": [1]}


def test_a_byte_order_mark_and_a_last_line_without_newline(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"tool": "first"}\r\n{"tool": "second"}')
    assert ingest(store, [path]) == IngestReport(files=1, read=2, stored=2, quarantined=0, duplicates=0)


def test_gzip_gives_the_same_rows_as_plain(tmp_path: Path, fetch: Fetch, now: datetime,
                                           contract_records: list[dict[str, Any]]) -> None:
    text = b"\n".join(jsonl(contract_records)) + b"\n"
    (tmp_path / "log.jsonl").write_bytes(text)
    (tmp_path / "log.ndjson.gz").write_bytes(gzip.compress(text))
    results = []
    for name in ("log.jsonl", "log.ndjson.gz"):
        with Store(tmp_path / f"{name}.duckdb") as store:
            assert ingest(store, [tmp_path / name], now=now).stored == 4
            results.append(stored(fetch, store))
    assert results[0] == results[1]


# ---- parquet -----------------------------------------------------------------------------------------

PARQUET_RECORDS: list[dict[str, Any]] = [
    {"ts": "2026-11-01T10:00:00Z", "agent": "billing-bot", "tool": "payment.send",
     "args": {"amount": 250.0, "recipient": "ACME"}, "context": {"env": "prod"},
     "approvals": [{"reviewer": "alice", "decision": "approve"}], "label": "harmful", "team": "ops"},
    {"ts": "2026-11-01T10:05:00Z", "agent": "støttebot", "tool": "email.send",
     "args": {"to": ["zoë@example.com"], "n": float("nan")}, "context": {"env": "staging"}},
    {"ts": "2026-11-01T11:00:00+01:00", "tool": "db.query", "session": "s-1", "args": {"q": "select 1"}},
    {"tool": "db.query", "session": "s-1", "args": {"q": "select 1"}, "ts": "2026-11-01T11:00:00+01:00"},
]


def _parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    """A Parquet twin of JSONL records: string columns, args/context/approvals as JSON text."""
    columns = {}
    for name in ("ts", "agent", "session", "tool", "args", "context", "approvals", "label", "team"):
        values = [r.get(name) for r in records]
        if name in ("args", "context", "approvals"):
            values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
        columns[name] = pa.array(values, pa.string())
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_gives_the_same_rows_as_jsonl(tmp_path: Path, fetch: Fetch, write_lines: WriteLines,
                                              now: datetime) -> None:
    lines = write_lines("log.jsonl", jsonl(PARQUET_RECORDS))
    table = _parquet(tmp_path / "log.parquet", PARQUET_RECORDS)
    results = []
    for path in (lines, table):
        with Store(tmp_path / f"{path.name}.duckdb") as store:
            report = ingest(store, [path], now=now)
            assert report == IngestReport(files=1, read=4, stored=4, quarantined=0, duplicates=0)
            results.append(stored(fetch, store))
    assert results[0] == results[1]
    assert results[1][3]["action_id"] == results[1][2]["action_id"] + "#2"  # repeated content, both formats
    assert json.loads(results[1][0]["extra"]) == {"team": "ops"}


def test_parquet_nested_columns_are_read_as_json(tmp_path: Path, fetch: Fetch, store: Store) -> None:
    args_type = pa.struct([("amount", pa.float64()), ("to", pa.list_(pa.string()))])
    context_type = pa.map_(pa.string(), pa.string())
    table = pa.table({
        "tool": ["pay", "pay"],
        "ts": pa.array([datetime(2026, 11, 1, 10, tzinfo=timezone.utc)] * 2, pa.timestamp("ns", tz="UTC")),
        "args": pa.array([{"amount": 1.5, "to": ["a", "b"]}, {"amount": float("nan"), "to": []}], args_type),
        "context": pa.array([[("env", "prod")], [("env", "dev"), ("region", "eu")]], context_type),
    })
    pq.write_table(table, tmp_path / "nested.parquet")
    assert ingest(store, [tmp_path / "nested.parquet"]).stored == 2
    rows = stored(fetch, store)
    assert json.loads(rows[0]["args"]) == {"amount": 1.5, "to": ["a", "b"]}
    assert math.isnan(json.loads(rows[1]["args"])["amount"])
    assert json.loads(rows[1]["context"]) == {"env": "dev", "region": "eu"}
    assert rows[0]["ts"] == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    assert [r["source_line"] for r in rows] == [1, 2]


def test_a_bad_parquet_row_gets_the_same_reason_as_its_jsonl_line(tmp_path: Path, fetch: Fetch,
                                                                  write_lines: WriteLines) -> None:
    records: list[dict[str, Any]] = [
        {"tool": "ok", "ts": "2026-11-01T10:00:00Z"},
        {"tool": "t", "ts": "yesterday"},
        {"ts": "2026-11-01T10:00:00Z", "agent": "no tool"},
        {"tool": "t", "args": [1, 2]},
        {"tool": "t", "label": "evil"},
        {"tool": "t", "approvals": ["alice"]},
        {"tool": "", "context": {"env": "prod"}},
        {"tool": "t", "args": {"d": json.loads(b"[" * 70 + b"]" * 70)}},
    ]
    lines = write_lines("bad.jsonl", jsonl(records))
    table = _parquet(tmp_path / "bad.parquet", records)
    reasons = []
    for path in (lines, table):
        with Store(tmp_path / f"{path.name}.duckdb") as store:
            report = ingest(store, [path])
            assert (report.stored, report.quarantined) == (1, 7)
            reasons.append([(r["source_line"], r["reason"]) for r in
                            fetch(store, "SELECT source_line, reason FROM quarantine ORDER BY source_line")])
    assert reasons[0] == reasons[1]
    assert reasons[0][0] == (2, "bad timestamp `yesterday`")


def test_a_parquet_cell_that_is_not_json_is_quarantined(tmp_path: Path, fetch: Fetch, store: Store) -> None:
    pq.write_table(pa.table({"tool": ["a", "b", "c"], "args": ['{"x": 1}', "{oops", '{"s": "\\ud800"}']}),
                   tmp_path / "cells.parquet")
    assert ingest(store, [tmp_path / "cells.parquet"]).quarantined == 2
    rows = fetch(store, "SELECT source_line, raw, reason FROM quarantine ORDER BY source_line")
    assert rows[0]["source_line"] == 2 and rows[0]["reason"].startswith("`args`: invalid json")
    assert "{oops" in rows[0]["raw"]
    assert rows[1]["reason"] == "lone surrogate in string"


# ---- files that cannot be read -----------------------------------------------------------------------


def test_a_missing_file_raises_and_stores_nothing(store: Store, write_lines: WriteLines, tmp_path: Path) -> None:
    good = write_lines("good.jsonl", [b'{"tool": "t"}'])
    with pytest.raises(LogFormatError, match=r"cannot read `.*missing\.jsonl`: no such file"):
        ingest(store, [good, tmp_path / "missing.jsonl"])
    assert store.count_actions() == 0


@pytest.mark.parametrize("name, content, message", [
    ("log.csv", b"tool\nx\n", "unknown log format"),
    ("log.jsonl.gz", gzip.compress(b'{"tool": "t"}\n' * 1000)[:-20], "cannot read"),
    ("log.parquet", b"PAR1 this is not parquet", "cannot read"),
])
def test_an_unreadable_file_raises_and_stores_nothing(store: Store, tmp_path: Path, name: str,
                                                      content: bytes, message: str) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"tool": "t"}\n')
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(LogFormatError, match=message) as info:
        ingest(store, [good, bad])
    assert name in str(info.value)
    assert store.count_actions() == 0 and store.count_quarantine() == 0
    assert ingest(store, [good]).stored == 1  # the store is still usable


def test_progress_reaches_the_total(store: Store, write_lines: WriteLines) -> None:
    path = write_lines("log.jsonl", [b'{"tool": "t%d"}' % i for i in range(1000)])
    calls: list[tuple[int, int]] = []
    ingest(store, [path], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (path.stat().st_size, path.stat().st_size)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
