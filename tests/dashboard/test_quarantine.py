"""The Quarantine page: reasons counted, lines shown, one source picked; a store of nothing but bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekit.logs import ingest
from gatekit.logs.store import Store

from .conftest import ok, texts

GOOD = b'{"tool": "payment.send", "args": {"amount": 1}}\n'


@pytest.fixture(scope="module")
def quarantined_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dash-quarantine")
    (root / "logs").mkdir()
    (root / "logs" / "a.jsonl").write_bytes(GOOD + b"not json\nnot json either\n[1]\n\xff\n")
    (root / "logs" / "b.jsonl").write_bytes(GOOD * 2 + b'{"tool": 7}\n')
    with Store(root / "q.duckdb") as store:
        ingest(store, [root / "logs"])
    return root / "q.duckdb"


def _frame(at, i: int) -> list[dict]:
    return at.dataframe[i].value.to_dict("records")


def test_reasons_are_counted_and_lines_shown(open_page, quarantined_store) -> None:
    at = ok(open_page("quarantine", quarantined_store))
    assert at.title[0].value == "Quarantine"
    assert {m.label: m.value for m in at.metric} == {"Quarantined lines": "5", "Sources": "2", "Reasons": "4"}
    reasons = _frame(at, 0)
    assert reasons[0] == {"reason": "invalid json: expecting value at column 1", "count": 2}
    assert sum(r["count"] for r in reasons) == 5
    assert [(Path(r["source"]).name, r["count"]) for r in _frame(at, 1)] == [("a.jsonl", 4), ("b.jsonl", 1)]
    lines = _frame(at, 2)
    assert [(Path(r["source"]).name, r["line"]) for r in lines] == [("a.jsonl", 2), ("a.jsonl", 3), ("a.jsonl", 4),
                                                                    ("a.jsonl", 5), ("b.jsonl", 3)]
    assert lines[3]["raw"] == "\\xff" and lines[3]["undecodable"]
    assert lines[4]["reason"] == "`tool` is not a string (got number)"


def test_one_source_can_be_picked(open_page, quarantined_store) -> None:
    at = open_page("quarantine", quarantined_store)
    b = next(o for o in at.selectbox(key="quarantine_source").options if "b.jsonl" in o)
    at.selectbox(key="quarantine_source").set_value(next(n for n in at.selectbox(key="quarantine_source").options
                                                         if n == b)).run()
    ok(at)
    assert [r["line"] for r in _frame(at, 2)] == [3]
    assert _frame(at, 0) == [{"reason": "`tool` is not a string (got number)", "count": 1}]
    assert "of `" in texts(at.caption) and "1 of 1 quarantined lines" in texts(at.caption)


def test_a_store_of_only_bad_lines_is_shown(open_page, tmp_path) -> None:
    (tmp_path / "bad.jsonl").write_text("nope\n")
    with Store(tmp_path / "bad.duckdb") as store:
        ingest(store, [tmp_path / "bad.jsonl"])
    at = ok(open_page("quarantine", tmp_path / "bad.duckdb"))
    assert {m.label: m.value for m in at.metric}["Quarantined lines"] == "1"
    assert _frame(at, 2)[0]["raw"] == "nope"


def test_nothing_quarantined(open_page, bare_store) -> None:
    at = ok(open_page("quarantine", bare_store))
    assert "Nothing quarantined" in texts(at.success)
