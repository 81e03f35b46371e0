"""Browsing the quarantine: `gatekit quarantine` and the library reads behind it and the dashboard page;
ingest's own edges (an empty directory, no store left behind by a failed command, the hint it prints)."""

from __future__ import annotations

import json
from pathlib import Path

from gatekit.logs import Store, ingest
from gatekit.logs.quarantine import quarantine_reasons, quarantined

BAD = b'{"tool": "ok"}\nnot json\n[1]\n\xff\xfe\n{"tool": 3}\n{"tool": "x", "args": "' + b"a" * 300 + b'\x1b[31m"}\n'


def _logs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_bytes(BAD)
    (tmp_path / "logs" / "b.jsonl").write_bytes(b"nope\n")
    db = tmp_path / "store.duckdb"
    with Store(db) as store:
        ingest(store, [tmp_path / "logs"])
    return tmp_path / "logs", db


def test_quarantined_lines_in_order_with_their_reasons(tmp_path: Path) -> None:
    logs, db = _logs(tmp_path)
    with Store(db, read_only=True) as store:
        lines = quarantined(store)
        assert [(Path(q.source).name, q.line) for q in lines] == [("a.jsonl", 2), ("a.jsonl", 3), ("a.jsonl", 4),
                                                                 ("a.jsonl", 5), ("a.jsonl", 6), ("b.jsonl", 1)]
        assert lines[2].undecodable and lines[2].raw == "\\xff\\xfe"
        assert lines[1].raw == "[1]" and lines[1].reason == "not a json object (got array)"
        assert [q.line for q in quarantined(store, source="b.jsonl")] == [1]  # by how the name ends
        assert quarantined(store, source=str(logs / "b.jsonl"))[0].raw == "nope"
        assert quarantined(store, source="a.jsonl", limit=2) == lines[:2]
        assert quarantined(store, source="c.jsonl") == []
        reasons = quarantine_reasons(store)
        assert reasons[0] == ("invalid json: expecting value at column 1", 2)  # most first
        assert sum(n for _, n in reasons) == store.count_quarantine() == 6


def test_the_quarantine_command_lists_lines_truncated_and_escaped(tmp_path: Path, gatekit_cli) -> None:
    _, db = _logs(tmp_path)
    code, out, err = gatekit_cli("quarantine", "--db", db, "--source", "a.jsonl")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("a.jsonl:2: invalid json: expecting value at column 1") and lines[1] == "    not json"
    long = next(line for line in lines if line.startswith('    {"tool": "x"'))
    assert len(long) == 4 + 120 and long.endswith("…")
    assert "\x1b" not in out  # a hostile line cannot drive the terminal
    code, out, err = gatekit_cli("quarantine", "--db", db, "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 4
    assert "2 of 6 quarantined lines shown" in err
    code, out, _ = gatekit_cli("quarantine", "--db", db, "--json", "--limit", "0")
    data = json.loads(out)
    assert (data["total"], data["shown"]) == (6, 6)
    assert data["reasons"][0] == {"reason": "invalid json: expecting value at column 1", "count": 2}
    assert data["lines"][-1]["raw"] == "nope" and set(data["lines"][0]) == {
        "source", "line", "reason", "raw", "undecodable", "ingested_at"}
    code, out, _ = gatekit_cli("quarantine", "--db", db, "--source", "c.jsonl")
    assert (code, out) == (0, f"nothing quarantined in `{db}` from `c.jsonl`\n")


def test_ingest_hints_at_the_quarantine_command(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "a.jsonl").write_bytes(BAD)
    code, out, err = gatekit_cli("ingest", tmp_path / "a.jsonl", "--db", tmp_path / "s.duckdb")
    assert code == 0 and out.startswith("read 6, stored 1, quarantined 5, duplicates 0 (1 file)")
    assert f"see why: gatekit quarantine --db {tmp_path / 's.duckdb'}" in err and "duckdb " not in err.replace(
        "s.duckdb", "")


def test_ingest_prints_the_lines_a_mapping_skipped(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "e.jsonl").write_text('{"k": "call", "n": "t"}\n{"k": "result", "n": "t"}\n', encoding="utf-8")
    (tmp_path / "m.yaml").write_text("tool: n\nwhere: {k: call}\n", encoding="utf-8")
    code, out, _ = gatekit_cli("ingest", tmp_path / "e.jsonl", "--db", tmp_path / "s.duckdb", "--mapping",
                               tmp_path / "m.yaml")
    assert (code, out) == (0, "read 2, stored 1, quarantined 0, duplicates 0, skipped 1 (1 file)\n")


def test_an_empty_directory_is_an_error_and_leaves_no_store(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("not a log")
    for given in ("empty", "notes"):
        code, out, err = gatekit_cli("ingest", tmp_path / given, "--db", tmp_path / "x.duckdb")
        assert code == 5 and out == ""
        assert err == f"error: no log files in `{tmp_path / given}`: expected files of jsonl, parquet, agentdojo, " \
                      "otel, openai-agents (.json .json.gz .jsonl .jsonl.gz .ndjson .ndjson.gz .parquet .pq)\n"
        assert not (tmp_path / "x.duckdb").exists()


def test_a_failed_ingest_leaves_no_store_behind(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "bad.txt").write_text("hello")
    for args in (["nope.jsonl"], [tmp_path / "bad.txt"], [tmp_path / "bad.txt", "--format", "nope"]):
        code, _, err = gatekit_cli("ingest", *args, "--db", tmp_path / "x.duckdb")
        assert code in (2, 5) and err.startswith("error: "), err
        assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "x.duckdb.wal").exists()
