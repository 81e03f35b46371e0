"""The `jsonl` format's own rules: what it detects, what a directory offers it, what its name lets in.

The contract's checks on every kind of line are tested in tests/logs/test_ingest.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gatekit.errors import LogFormatError
from gatekit.logs import Store, detect, ingest, sources


def _lines(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_detected_by_a_string_tool_through_gzip_bom_and_crlf(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + _lines({"tool": "a"}, {"tool": "b"}).replace(b"\n", b"\r\n")))
    assert detect(path) == "jsonl"
    assert (tmp_path / "other.jsonl").write_bytes(_lines({"tool": 3})) and detect(tmp_path / "other.jsonl") is None
    report = ingest(store, [path])
    assert (report.read, report.stored, report.quarantined) == (2, 2, 0)
    assert store.con.execute("SELECT tool, source_line FROM actions ORDER BY seq").fetchall() == [("a", 1), ("b", 2)]


def test_a_json_file_nothing_recognises_is_read_by_name_but_not_taken_from_a_directory(tmp_path: Path,
                                                                                       store: Store) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes.json").write_bytes(_lines({"note": 1}))     # not an action, not a trace
    (logs / "odd.ndjson").write_bytes(_lines({"note": 2}))     # a lines file: read, its line quarantined
    assert [Path(s.name).name for s in sources([logs])] == ["odd.ndjson"]
    report = ingest(store, [logs / "notes.json"])               # named: read as JSON Lines
    assert (report.stored, report.quarantined) == (0, 1)
    assert store.con.execute("SELECT reason FROM quarantine").fetchall() == [("missing `tool`",)]
    (logs / "notes.txt").write_text("hello")
    with pytest.raises(LogFormatError, match=r"cannot read `.*notes\.txt`: unknown log format, expected one of jsonl"):
        sources([logs / "notes.txt"])
