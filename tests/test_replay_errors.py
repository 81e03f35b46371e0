"""Replay stores why a rule errored (code and message per errored rule), as `decide` reports it, and shows it:
`--out`, the report's "errors by rule and code", the store of a run written before the column existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.policy import decide, parse_policy
from gatekit.replay import RUN_SCHEMA, ensure_schema, replay
from gatekit.run import action_errors, error_summary, export_run
from gatekit.report import build_report, render_text

POLICY = """
version: 1
name: errs
rules:
  - id: big-payment
    tool: payment.send
    action: escalate
    when: {args.amount: {gt: 100}}
  - id: vip
    tool: payment.send
    action: deny
    when: {args.to: {in: [ACME, Initech]}}
  - id: volume
    tool: payment.send
    action: escalate
    when: {sum: {field: args.fee, window: 7d, gt: 1000}}
"""
_CALLS = [
    {"tool": "payment.send", "args": {"amount": 50, "to": "x"}},
    {"tool": "payment.send", "args": {"amount": "1,810", "to": "x"}},
    {"tool": "payment.send", "args": {"amount": [1, 2], "to": ["ACME"]}},
    {"tool": "payment.send", "args": {"amount": "1e999", "to": "x", "fee": "lots"}},
    {"tool": "payment.send", "args": {"amount": "2,000", "to": "y", "fee": True}},
]
ACTIONS = [{**a, "ts": f"2026-01-0{i + 1}T10:00:00Z", "action_id": f"a-{i}"} for i, a in enumerate(_CALLS)]


@pytest.fixture()
def store(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(a) + "\n" for a in ACTIONS))
    with Store(tmp_path / "s.duckdb") as s:
        ingest(s, [log])
        yield s


def test_replay_stores_the_error_details_decide_gives(store: Store) -> None:
    policy = parse_policy(POLICY)
    replay(store, policy, name="errs")
    seqs = [r[0] for r in store.con.execute("SELECT seq FROM actions ORDER BY seq").fetchall()]
    for i, (seq, action) in enumerate(zip(seqs, ACTIONS)):
        want = [e.to_dict() for e in decide(policy, action, ACTIONS[:i]).error_details]
        assert action_errors(store, "errs", seq) == want
    codes = {(e["rule"], e["code"]) for e in error_summary(store, "errs")}
    assert codes == {("big-payment", "not_a_number"), ("big-payment", "type_mismatch"),
                     ("big-payment", "bad_number"), ("vip", "type_mismatch"), ("volume", "not_a_number"),
                     ("volume", "type_mismatch")}


def test_out_exports_error_codes_and_messages(store: Store, tmp_path: Path) -> None:
    replay(store, parse_policy(POLICY), name="errs")
    rows = [json.loads(line) for line in export_run(store, "errs", tmp_path / "out.jsonl").read_text().splitlines()]
    second = rows[1]
    assert second["errors"] == ["big-payment"]  # the contract's column is unchanged: rule ids
    assert second["error_details"] == [{"rule": "big-payment", "field": "args.amount", "test": "gt",
                                         "code": "not_a_number",
                                         "message": "`args.amount` gt: a string that is not a number"}]
    assert rows[0]["error_details"] == []


def test_report_text_lists_errors_by_rule_and_code(store: Store) -> None:
    replay(store, parse_policy(POLICY), name="errs")
    report = build_report(store, "errs")
    text = render_text(report)
    assert "errors by rule and code:" in text
    assert "  vip type_mismatch: 1 actions, e.g. `args.to` in: cannot use a list" in text
    assert report.to_dict()["errors"][0]["actions"] >= 1


def test_a_store_written_before_error_details_gets_the_column(tmp_path: Path) -> None:
    with Store(tmp_path / "old.duckdb") as s:
        s.con.execute(RUN_SCHEMA)  # the tables as they were before error details
        s.con.execute("INSERT INTO decisions VALUES ('old', 1, 'a-1', 'escalate', [], ['r'], NULL)")
        assert error_summary(s, "old") == []  # no column yet: nothing to say, no failure
        ensure_schema(s)
        assert s.con.execute("SELECT error_details FROM decisions").fetchall() == [(None,)]
