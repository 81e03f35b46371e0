"""docs/actions.md runs as written: every mapping in it parses, and each worked mapping ingests the file
named above it into the actions the text says (the example line it shows is that file's)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gatekit.logs import IngestReport, Store, ingest
from gatekit.logs.adapters.mapping import parse_mapping

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "actions.md"
BLOCK = re.compile(r"(?:<!-- mapping: (?P<data>\S+) -->\n)?```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def blocks(lang: str) -> list[tuple[str | None, str]]:
    return [(m["data"], m["body"]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8")) if m["lang"] == lang]


WORKED = {data: body for data, body in blocks("yaml") if data}


def stored(store: Store) -> list[dict[str, Any]]:
    cursor = store.con.execute('SELECT action_id, ts, agent, session, "user", tool, args, context, outcome, label '
                               "FROM actions ORDER BY seq")
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        record = dict(zip(names, row))
        record["args"], record["context"] = json.loads(record["args"]), json.loads(record["context"])
        record["ts"] = record["ts"].isoformat()
        out.append(record)
    return out


def reasons(store: Store) -> list[tuple[int, str]]:
    return store.con.execute("SELECT source_line, reason FROM quarantine ORDER BY source_line").fetchall()


def run(tmp_path: Path, data: str) -> tuple[IngestReport, Store]:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(WORKED[data], encoding="utf-8")
    store = Store(tmp_path / "store.duckdb")
    return ingest(store, [ROOT / data], mapping=mapping), store


def test_the_doc_has_three_worked_mappings_and_every_mapping_in_it_parses() -> None:
    assert sorted(WORKED) == ["tests/adapters/data/mappings/audit-log.jsonl",
                              "tests/adapters/data/mappings/langchain-callbacks.jsonl",
                              "tests/adapters/data/mappings/openai-tool-calls.jsonl"]
    mappings = [body for _, body in blocks("yaml")]
    assert len(mappings) == 4  # the reference block too
    for body in mappings:
        parse_mapping(body, "docs/actions.md")


def test_each_example_line_shown_is_a_line_of_its_file() -> None:
    lines = {line for data in WORKED for line in (ROOT / data).read_text(encoding="utf-8").splitlines()}
    examples = [body.strip() for _, body in blocks("json")][1:]  # the first is the action record itself
    assert len(examples) == 3 and all(e in lines for e in examples)


def test_the_action_record_shown_is_stored_as_is(tmp_path: Path) -> None:
    record = json.loads(blocks("json")[0][1])
    (tmp_path / "a.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    with Store(tmp_path / "s.duckdb") as store:
        assert ingest(store, [tmp_path / "a.jsonl"]).stored == 1
        (row,) = stored(store)
    assert {k: row[k] for k in ("action_id", "tool", "args", "context", "outcome", "label")} == {
        k: record[k] for k in ("action_id", "tool", "args", "context", "outcome", "label")}


def test_openai_tool_calls(tmp_path: Path) -> None:
    report, store = run(tmp_path, "tests/adapters/data/mappings/openai-tool-calls.jsonl")
    with store:
        assert (report.read, report.stored, report.quarantined, report.skipped) == (4, 3, 1, 0)
        rows = stored(store)
        assert rows[0] == {"action_id": "call_9f2a", "ts": "2026-11-01T10:00:00+00:00", "agent": "billing-bot",
                           "session": "conv-17", "user": "u-3", "tool": "payment.send",
                           "args": {"amount": 250.0, "recipient": "ACME"}, "context": {"model": "gpt-4o"},
                           "outcome": None, "label": None}
        assert [r["tool"] for r in rows] == ["payment.send", "crm.lookup", "email.send"]
        assert rows[2]["user"] == "1042" and rows[2]["args"] == {}
        assert reasons(store) == [(3, "`args` (mapped from `function.arguments`) is text that is not JSON")]


def test_langchain_callbacks_keep_only_tool_starts(tmp_path: Path) -> None:
    report, store = run(tmp_path, "tests/adapters/data/mappings/langchain-callbacks.jsonl")
    with store:
        assert report == IngestReport(files=1, read=7, stored=2, quarantined=1, duplicates=0, skipped=4)
        rows = stored(store)
        assert [(r["tool"], r["args"]) for r in rows] == [("refund_issue", {"order": 991, "amount": 40}),
                                                          ("email_send", {"to": "c-88"})]
        assert rows[0]["action_id"] == "0b7e6a52-1a0e-4f1c-9d1e-000000000003"
        assert (rows[0]["session"], rows[0]["user"], rows[0]["agent"]) == ("t-1", "u-3", "support-bot")
        assert rows[0]["context"] == {"parent_run": "0b7e6a52-1a0e-4f1c-9d1e-000000000001", "tags": ["prod"]}
        # the other events are skipped, not quarantined: only the nameless tool start is
        assert reasons(store) == [(6, "missing `tool` (mapped from `serialized.name`)")]
        again = ingest(store, [ROOT / "tests/adapters/data/mappings/langchain-callbacks.jsonl"],
                       mapping=tmp_path / "mapping.yaml")
        assert (again.stored, again.duplicates, again.skipped) == (0, 2, 4)


def test_a_generic_audit_log(tmp_path: Path) -> None:
    report, store = run(tmp_path, "tests/adapters/data/mappings/audit-log.jsonl")
    with store:
        assert (report.read, report.stored, report.quarantined) == (3, 2, 1)
        first, second = stored(store)
        assert first == {"action_id": "req-77", "ts": "2026-11-01T10:00:00.123000+00:00", "agent": "support-bot",
                         "session": "sess-4", "user": "1042", "tool": "refund.issue",
                         "args": {"order": 991, "amount": 40}, "context": {"env": "prod", "region": "eu-west-1"},
                         "outcome": "executed", "label": "benign"}
        assert (second["tool"], second["outcome"], second["label"]) == ("db.drop_table", "blocked", "harmful")
        assert reasons(store) == [(3, "missing `tool` (mapped from `event.action`)")]


@pytest.mark.parametrize(("where", "line", "kept"), [
    ("{event: on_tool_start}", {"event": "on_tool_start"}, True),
    ("{event: on_tool_start}", {"event": "on_tool_end"}, False),
    ("{event: on_tool_start}", {}, False),
    ("{event: [a, b]}", {"event": "b"}, True),
    ("{n: 1}", {"n": 1.0}, True),
    ("{n: 1}", {"n": True}, False),
    ("{flag: true}", {"flag": 1}, False),
    ("{a.b: x, c: 2}", {"a": {"b": "x"}, "c": 2}, True),
    ("{a.b: x, c: 2}", {"a": {"b": "x"}, "c": 3}, False),
])
def test_where_keeps_only_matching_lines(where: str, line: dict[str, Any], kept: bool) -> None:
    mapping = parse_mapping(f"tool: {{value: t}}\nwhere: {where}\n")
    assert (mapping(line) is not None) is kept


def test_a_bad_where_is_a_problem_at_its_line() -> None:
    from gatekit.errors import LogFormatError

    with pytest.raises(LogFormatError) as e:
        parse_mapping("tool: t\nwhere:\n  a: {b: 1}\n", "m.yaml")
    assert "m.yaml:2: `where.a`: expected a value" in str(e.value)
    with pytest.raises(LogFormatError, match="m.yaml:2: `where` is an object of paths"):
        parse_mapping("tool: t\nwhere: on_tool_start\n", "m.yaml")
