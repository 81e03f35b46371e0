"""`gatekit replay --engine spark` end to end (JSON Lines and Parquet, a file and a directory, the
quarantine), and the bundled AgentDojo runs decided by Spark exactly as DuckDB decides them."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from gatekit.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
RUNS = (ROOT / ".." / "shared" / "data" / "agentdojo-runs").resolve()
POLICY = """\
version: 1
name: pay
tiers:
  standard: {approvals: 1, timeout: 4h}
rules:
  - id: big-payment
    tool: payment.send
    action: escalate
    tier: standard
    when: {args.amount: {gt: 100}}
  - id: burst
    tool: "payment.*"
    action: deny
    when: {rate: {window: 1m, per: agent, gt: 3}}
  - id: odd-memo
    tool: payment.send
    action: escalate
    when: {args.memo: {matches: "^x$"}}
"""


def _lines(tmp: Path) -> Path:
    good = [{"action_id": f"a-{i}", "ts": f"2026-11-02T10:00:{i:02d}Z", "tool": "payment.send", "agent": "bot",
             "args": {"amount": 50 * i, "memo": "x\n" if i == 2 else "y"}} for i in range(1, 6)]
    bad = ["not json", "[1, 2]", json.dumps({"ts": "2026-11-02T10:00:00Z"}),
           json.dumps({"tool": "payment.send", "ts": "yesterday"}), json.dumps({"tool": "t", "args": [1]})]
    (tmp / "logs").mkdir()
    (tmp / "logs" / "a.jsonl").write_text("\n".join(json.dumps(g) for g in good[:3]) + "\n" + "\n".join(bad) + "\n")
    (tmp / "logs" / "b.jsonl").write_text("\n".join(json.dumps(g) for g in good[3:]) + "\n")
    (tmp / "policy.yaml").write_text(POLICY)
    return tmp / "logs"


def test_replay_a_directory_of_json_lines(spark, tmp_path: Path, gatekit_cli) -> None:
    logs = _lines(tmp_path)
    out = tmp_path / "decisions"
    code, stdout, err = gatekit_cli("replay", "--engine", "spark", "--input", str(logs), "--policy",
                                    str(tmp_path / "policy.yaml"), "--out", str(out), "--json", "--quiet")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["actions"] == 5 and result["quarantined"] == 5
    assert {r["reason"] for r in result["quarantine_reasons"]} == {
        "not valid JSON", "not a JSON object", "missing `tool`", "bad timestamp `yesterday`",
        "`args` is not an object (got array)"}
    con = duckdb.connect()
    rows = con.execute(f"SELECT action_id, decision, rules, errors, tier FROM read_parquet('{out}/*.parquet') "
                       "ORDER BY action_id").fetchall()
    # a-2's memo is "x\n": RE2's `$` is the end of the text (Java's would match before the newline);
    # a-4 and a-5 are the 4th and 5th payment of `bot` within a minute, across the two files in name order
    assert rows == [("a-1", "allow", [], [], None), ("a-2", "allow", [], [], None),
                    ("a-3", "escalate", ["big-payment"], [], "standard"),
                    ("a-4", "deny", ["big-payment", "burst"], [], None),
                    ("a-5", "deny", ["big-payment", "burst"], [], None)]
    assert con.execute(f"SELECT count(*) FROM read_parquet('{out}/_quarantine/*.parquet')").fetchone() == (5,)


def test_replay_parquet_matches_json_lines(spark, tmp_path: Path) -> None:
    from gatekit.spark import replay_spark

    logs = _lines(tmp_path)
    policy = load_policy(tmp_path / "policy.yaml")
    con = duckdb.connect()
    good = [json.loads(line) for f in sorted(logs.iterdir()) for line in f.read_text().splitlines()
            if line.startswith('{"action_id"')]
    con.execute("CREATE TABLE t (action_id VARCHAR, ts TIMESTAMPTZ, agent VARCHAR, tool VARCHAR, args VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                    [(g["action_id"], g["ts"], g["agent"], g["tool"], json.dumps(g["args"])) for g in good])
    con.execute(f"COPY t TO '{tmp_path / 'actions.parquet'}' (FORMAT parquet)")
    a = replay_spark(spark, policy, str(tmp_path / "actions.parquet"), str(tmp_path / "p"))
    b = replay_spark(spark, policy, str(logs), str(tmp_path / "j"))
    assert a.decisions == b.decisions and a.quarantined == 0 and b.quarantined == 5
    read = "SELECT action_id, decision, rules, errors, tier FROM read_parquet('{}/*.parquet') ORDER BY 1"
    assert con.execute(read.format(tmp_path / "p")).fetchall() == con.execute(read.format(tmp_path / "j")).fetchall()


def test_agentdojo_runs_decide_as_duckdb(spark, tmp_path: Path) -> None:
    """The bundled AgentDojo runs through notebooks/policies/agentdojo-final.yaml: Spark gives every action the
    decision, rules, errors and tier DuckDB's replay gives it."""
    if not RUNS.is_dir():
        pytest.skip(f"the AgentDojo runs are not at {RUNS}")
    from gatekit.logs import Store, ingest
    from gatekit.replay import replay
    from gatekit.spark import replay_spark

    policy = load_policy(ROOT / "notebooks" / "policies" / "agentdojo-final.yaml")
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [RUNS])
        replay(store, policy, "final")
        con = store.con
        con.execute(f"COPY (SELECT action_id, ts, agent, session, \"user\", tool, CAST(args AS VARCHAR) AS args, "
                    f"CAST(context AS VARCHAR) AS context FROM actions ORDER BY seq) "
                    f"TO '{tmp_path / 'actions.parquet'}' (FORMAT parquet)")
        duck = con.execute("SELECT action_id, decision, rules, errors, tier FROM decisions WHERE run = 'final' "
                           "ORDER BY 1").fetchall()
    result = replay_spark(spark, policy, str(tmp_path / "actions.parquet"), str(tmp_path / "out"))
    got = duckdb.connect().execute(f"SELECT action_id, decision, rules, errors, tier FROM "
                                   f"read_parquet('{tmp_path / 'out'}/*.parquet') ORDER BY 1").fetchall()
    assert result.actions == len(duck) > 1000 and result.quarantined == 0
    assert got == [tuple(r) for r in duck]
