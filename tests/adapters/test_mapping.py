"""Any JSON Lines through a mapping file: the same checks and quarantine as the contract's lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekit.errors import LogFormatError
from gatekit.logs import Rejected, Store, ingest
from gatekit.logs.adapters.mapping import load_mapping, parse_mapping

MAPPING = """\
# where each action field is in our gateway's events
tool: event.name
args: event.arguments
ts: time
ts_unit: ms
agent: agent.name
session: [trace, "id.v2"]
user: user_id
context:
  env: deploy.env
  team: {value: payments}
"""


def test_mapped_lines_become_actions_and_bad_ones_are_quarantined(tmp_path: Path, store: Store) -> None:
    (tmp_path / "events.mapping.yaml").write_text(MAPPING, encoding="utf-8")
    lines = [
        {"event": {"name": "payment.send", "arguments": '{"amount": 250}'}, "time": 1_700_000_000_123,
         "agent": {"name": "billing-bot"}, "trace": {"id.v2": "t-1"}, "user_id": 42, "deploy": {"env": "prod"}},
        {"event": {"name": "db.query", "arguments": {"sql": "select 1"}}, "time": "2026-11-01T10:00:00Z"},
        {"event": {"arguments": {}}},
        {"event": {"name": "x", "arguments": "{nope"}},
        {"event": {"name": "x"}, "agent": {"name": ["a"]}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n", encoding="utf-8")
    report = ingest(store, [path], mapping=tmp_path / "events.mapping.yaml")
    assert (report.read, report.stored, report.quarantined) == (6, 2, 4)
    rows = store.con.execute('SELECT tool, args, ts, agent, session, "user", context FROM actions ORDER BY seq').fetchall()
    tool, args, ts, agent, session, user, context = rows[0]
    assert (tool, json.loads(args), agent, session, user) == ("payment.send", {"amount": 250}, "billing-bot", "t-1", "42")
    assert ts.isoformat().startswith("2023-11-14T22:13:20.123")
    assert json.loads(context) == {"env": "prod", "team": "payments"}
    assert json.loads(rows[1][6]) == {"team": "payments"}  # a path that leads nowhere is left out
    reasons = [r for r, in store.con.execute("SELECT reason FROM quarantine ORDER BY source_line").fetchall()]
    assert reasons[:3] == ["missing `tool` (mapped from `event.name`)",
                           "`args` (mapped from `event.arguments`) is text that is not JSON",
                           "`agent` is not a string or null (got array)"]
    assert reasons[3].startswith("invalid json: ")  # as ingest says of any line


def test_every_problem_of_a_mapping_is_listed_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tool: a.b\nagnet: x\nts_unit: days\nargs: {path: x}\n", encoding="utf-8")
    with pytest.raises(LogFormatError) as e:
        load_mapping(path)
    text = str(e.value)
    assert f"{path}:2: unknown field `agnet`" in text
    assert f"{path}:3: `ts_unit` must be one of s, ms, us, ns, not `days`" in text
    assert f"{path}:4: `args`: expected a path" in text
    with pytest.raises(LogFormatError, match="`tool` must be mapped"):
        parse_mapping("agent: a\n")


def test_a_mapping_only_reads_jsonl_or_parquet(tmp_path: Path, store: Store) -> None:
    with pytest.raises(LogFormatError, match="`mapping` is an option of jsonl or parquet input, not of `otel`"):
        ingest(store, [tmp_path], format="otel", mapping=parse_mapping("tool: t\n"))


def test_list_indexes_and_constants() -> None:
    m = parse_mapping("tool: calls.0.fn\nargs: calls.0.kw\nagent: {value: bot}\n")
    assert m({"calls": [{"fn": "f", "kw": {"a": 1}}]}) == {"tool": "f", "args": {"a": 1}, "agent": "bot"}
    with pytest.raises(Rejected, match="missing `tool` \\(mapped from `calls.0.fn`\\)"):
        m({"calls": []})
