"""Replay of Parquet files without a store (gatekit/lake.py, `gatekit replay --input DIR --out DIR`).

Its decisions are the compiled policy's, so what is tested here is the reading: rows become the store's
action columns in the log order (files by path, rows in a file), objects in any of their Parquet shapes,
the rows that break the contract quarantined with their reason, and the answer the same under a memory
limit that makes DuckDB spill.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekit.errors import InputError
from gatekit.lake import parquet_files, replay_files
from gatekit.logs.store import Store
from gatekit.policy import parse_policy
from gatekit.policy.decide import decide_log
from gatekit.replay import replay

from .test_agreement import _SETTINGS, _show, dense_logs, logs, policy_dicts, to_policy, window_policies

POLICY = parse_policy("""\
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
  - id: prod
    tool: "*"
    action: deny
    when: {context.env: {eq: prod}}
  - id: burst
    tool: payment.send
    action: deny
    when: {rate: {gte: 3, window: 1m, per: agent}}
""")


def _write(path: Path, actions: list[dict[str, Any]], *, json_text: bool = True) -> Path:
    """`actions` as a Parquet file of the contract's columns, args and context as JSON text."""
    cols: dict[str, list[Any]] = {k: [] for k in ("action_id", "ts", "agent", "session", "user", "tool", "args",
                                                   "context")}
    for a in actions:
        for k in cols:
            v = a.get(k)
            cols[k].append(json.dumps(v, allow_nan=True) if k in ("args", "context") and v is not None and json_text
                           else v)
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()}), path)
    return path


def _read(out: Path) -> dict[str, tuple[Any, ...]]:
    rows = duckdb.connect().execute(f"SELECT action_id, decision, rules, errors, tier FROM "
                                    f"read_parquet('{out}/decisions.parquet')").fetchall()
    return {r[0]: (r[1], tuple(r[2]), tuple(r[3]), r[4]) for r in rows}


def _decide(policy, log: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {a["action_id"]: (d.decision, tuple(d.rules), tuple(d.errors), d.tier)
            for a, d in zip(log, decide_log(policy, log))}


# ---- the same decisions as decide, from files, in the log order across files ---------------------------
@settings(_SETTINGS, max_examples=40, deadline=None)
@given(doc=st.one_of(policy_dicts(), window_policies()), log=st.one_of(logs, dense_logs()), cut=st.integers(0, 12))
def test_files_decide_as_decide(tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any],
                                log: list[dict[str, Any]], cut: int) -> None:
    _show(doc, log)
    policy = to_policy(doc)
    log = [{**a, "action_id": f"a-{i}"} for i, a in enumerate(log)]
    d = tmp_path_factory.mktemp("lake")
    (d / "in").mkdir()
    # two files: the second's name sorts after the first's, so the log order is the list's (ties in
    # windows are broken by it)
    _write(d / "in" / "part-0.parquet", log[:cut])
    _write(d / "in" / "part-1.parquet", log[cut:])
    result = replay_files(policy, d / "in", d / "out")
    assert result.quarantined == 0
    assert result.actions == len(log)
    assert _read(d / "out") == _decide(policy, log)


def test_the_same_decisions_as_the_store(tmp_path: Path) -> None:
    log = [{"action_id": f"a-{i}", "ts": f"2026-11-02T10:00:{i % 60:02d}Z", "tool": "payment.send",
            "agent": f"bot-{i % 3}", "args": {"amount": 40 * (i % 7)}, "context": {"env": "prod" if i % 11 == 0 else "dev"}}
           for i in range(300)]
    _write(tmp_path / "a.parquet", log)
    with Store(tmp_path / "s.duckdb") as store:
        from gatekit.logs.ingest import ingest
        ingest(store, [tmp_path / "a.parquet"])
        run = replay(store, POLICY, "r")
        stored = {r[0]: (r[1], tuple(r[2]), tuple(r[3]), r[4]) for r in store.con.execute(
            "SELECT action_id, decision, rules, errors, tier FROM decisions WHERE run = 'r'").fetchall()}
    result = replay_files(POLICY, tmp_path / "a.parquet", tmp_path / "out")
    assert _read(tmp_path / "out") == stored
    assert result.decisions == run.decisions
    assert {"allow", "escalate", "deny"} == {v[0] for v in stored.values()}  # the sample exercises every verdict


def test_objects_as_structs_maps_and_json_columns(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""COPY (SELECT * FROM (VALUES
        ('s1', TIMESTAMP '2026-11-02 10:00:00', 'payment.send', {{'amount': 250.0}}, MAP {{'env': 'dev'}}),
        ('s2', TIMESTAMP '2026-11-02 10:05:00', 'payment.send', {{'amount': 50.0}}, MAP {{'env': 'prod'}}))
        t(action_id, ts, tool, args, context)) TO '{tmp_path}/s.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT 'j1' AS action_id, TIMESTAMPTZ '2026-11-02 10:00:00+00' AS ts,
        'payment.send' AS tool, '{{"amount": 250}}'::JSON AS args, NULL::JSON AS context)
        TO '{tmp_path}/j.parquet' (FORMAT parquet)""")
    replay_files(POLICY, tmp_path / "s.parquet", tmp_path / "o1")
    replay_files(POLICY, tmp_path / "j.parquet", tmp_path / "o2")
    assert _read(tmp_path / "o1") == {"s1": ("escalate", ("big-payment",), (), "standard"),
                                      "s2": ("deny", ("prod",), (), None)}
    assert _read(tmp_path / "o2") == {"j1": ("escalate", ("big-payment",), (), "standard")}


def test_timestamps_as_text_and_epoch_seconds(tmp_path: Path) -> None:
    # three calls of one agent within a minute: the third breaks the rate, whatever shape its time has
    for name, stamps, kind in (("text", ["2026-11-02T10:00:00Z", "2026-11-02T10:00:20+00:00",
                                         "2026-11-02 10:00:40"], pa.string()),
                               ("epoch", [1793613600, 1793613620, 1793613640.5], pa.float64())):
        pq.write_table(pa.table({"action_id": [f"{name}-{i}" for i in range(3)], "ts": pa.array(stamps, kind),
                                 "tool": ["payment.send"] * 3, "agent": ["bot"] * 3}), tmp_path / f"{name}.parquet")
        replay_files(POLICY, tmp_path / f"{name}.parquet", tmp_path / name)
        assert [v[0] for _, v in sorted(_read(tmp_path / name).items())] == ["allow", "allow", "deny"], name


# ---- the rows that break the contract: quarantined with their reason, the others decided ---------------
def test_bad_rows_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    good = {"ts": "2026-11-02T10:00:00Z", "tool": "payment.send", "args": {"amount": 500}}
    rows = [
        {**good, "action_id": "ok-1"},
        {**good, "action_id": "no-tool", "tool": None},
        {**good, "action_id": "blank-tool", "tool": "  "},
        {**good, "action_id": "no-ts", "ts": None},
        {**good, "action_id": "bad-ts", "ts": "yesterday"},
        {**good, "action_id": "ok-2", "args": None},
    ]
    _write(tmp_path / "a.parquet", rows)
    bad = pa.table({"action_id": ["not-json", "array"], "ts": ["2026-11-02T10:00:00Z"] * 2,
                    "tool": ["payment.send"] * 2, "args": ['{"amount": 5', '[1, 2]'], "context": ['{}', '{}']})
    pq.write_table(bad, tmp_path / "b.parquet")
    result = replay_files(POLICY, tmp_path, tmp_path / "out")
    assert result.actions == 2 and set(_read(tmp_path / "out")) == {"ok-1", "ok-2"}
    got = duckdb.connect().execute(f"SELECT file, row, reason FROM "
                                   f"read_parquet('{tmp_path}/out/_quarantine/quarantine.parquet')").fetchall()
    assert [(Path(f).name, r, why) for f, r, why in got] == [
        ("a.parquet", 1, "missing `tool`"), ("a.parquet", 2, "`tool` is empty"),
        ("a.parquet", 3, "missing or bad `ts`"), ("a.parquet", 4, "missing or bad `ts`"),
        ("b.parquet", 0, "`args` is not valid JSON"), ("b.parquet", 1, "`args` is not an object (got array)")]
    assert result.quarantined == 6 and dict(result.reasons)["missing or bad `ts`"] == 2


def test_a_row_without_an_id_gets_a_stable_one(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", [{"ts": "2026-11-02T10:00:00Z", "tool": "x"}] * 3)
    replay_files(POLICY, tmp_path / "a.parquet", tmp_path / "o1")
    replay_files(POLICY, tmp_path / "a.parquet", tmp_path / "o2")
    first, again = sorted(_read(tmp_path / "o1")), sorted(_read(tmp_path / "o2"))
    assert first == again and len(set(first)) == 3 and all(i.startswith("a-") and len(i) == 26 for i in first)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "no input at"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no Parquet files at"),
    (lambda d: (d / "log.jsonl").write_text("{}\n") and d / "log.jsonl", "is not a Parquet file"),
    (lambda d: pq.write_table(pa.table({"x": [1]}), d / "x.parquet") or d / "x.parquet", "no `tool` column"),
    (lambda d: pq.write_table(pa.table({"tool": ["a"]}), d / "t.parquet") or d / "t.parquet", "no `ts` column"),
    (lambda d: pq.write_table(pa.table({"tool": ["a"], "ts": ["x"], "args": [1]}), d / "n.parquet")
     or d / "n.parquet", "column `args` is BIGINT"),
])
def test_input_that_is_not_action_records_is_refused(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        replay_files(POLICY, make(tmp_path), tmp_path / "out")


def test_hidden_and_underscore_files_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "in" / "_spark_metadata").mkdir(parents=True)
    _write(tmp_path / "in" / "part-0.parquet", [{"ts": "2026-11-02T10:00:00Z", "tool": "x"}])
    (tmp_path / "in" / "_SUCCESS").write_text("")
    (tmp_path / "in" / ".part-0.parquet.crc").write_text("x")
    (tmp_path / "in" / "_spark_metadata" / "0").write_text("{}")
    assert [p.name for p in parquet_files(tmp_path / "in")] == ["part-0.parquet"]


# ---- under a memory limit: the same answer, spilled ----------------------------------------------------
def test_a_small_memory_limit_spills_and_decides_the_same(tmp_path: Path) -> None:
    n = 200_000
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT 'a-' || i AS action_id,
            TIMESTAMPTZ '2026-11-02 00:00:00+00' + to_milliseconds(i * 37 % 86400000) AS ts,
            'bot-' || (i % 97) AS agent, 'payment.send' AS tool,
            '{{"amount": ' || (i * 7919 % 300) || ', "memo": "' || repeat('x', 40) || '"}}' AS args,
            '{{"env": "' || CASE WHEN i % 13 = 0 THEN 'prod' ELSE 'dev' END || '"}}' AS context
        FROM range({n}) t(i)) TO '{tmp_path}/a.parquet' (FORMAT parquet)""")
    free = replay_files(POLICY, tmp_path / "a.parquet", tmp_path / "free")
    tight = replay_files(POLICY, tmp_path / "a.parquet", tmp_path / "tight", memory_limit="48MB", threads=1)
    assert free.actions == tight.actions == n
    assert _read(tmp_path / "free") == _read(tmp_path / "tight")
    assert free.decisions["deny"] > 0 and free.decisions["escalate"] > 0
    assert not list((tmp_path / "tight").glob(".gatekit-spill-*"))  # the spill directory is removed


def test_a_bad_memory_limit_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="bad memory limit `lots`"):
        replay_files(POLICY, tmp_path / "missing.parquet", tmp_path / "out", memory_limit="lots")
    assert not (tmp_path / "out").exists()


def test_the_cli_replays_files_and_a_store_under_a_memory_limit(tmp_path: Path, gatekit_cli) -> None:
    log = [{"action_id": f"a-{i}", "ts": f"2026-11-02T10:0{i // 3}:{20 * i % 60:02d}Z", "tool": "payment.send",
            "agent": "bot", "args": {"amount": 60 * i}} for i in range(5)]
    _write(tmp_path / "a.parquet", log)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.text)
    code, out, _ = gatekit_cli("replay", "--input", tmp_path / "a.parquet", "--out", tmp_path / "out",
                               "--policy", policy, "--memory-limit", "256MB", "--json")
    data = json.loads(out)
    assert code == 0 and data["actions"] == 5 and data["memory_limit"] == "256MB"
    want = {d: [v[0] for v in _decide(POLICY, log).values()].count(d) for d in ("allow", "escalate", "deny")}
    assert data["decisions"] == want and want["deny"] > 0 and want["allow"] > 0
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(a) + "\n" for a in log))
    db = tmp_path / "s.duckdb"
    assert gatekit_cli("ingest", tmp_path / "log.jsonl", "--db", db, "--quiet")[0] == 0
    code, out, _ = gatekit_cli("replay", "--db", db, "--policy", policy, "--memory-limit", "256MB", "--json")
    assert code == 0 and json.loads(out)["decisions"] == want
    code, out, _ = gatekit_cli("report", "--db", db, "--memory-limit", "256MB", "--json")
    assert code == 0 and json.loads(out)["decisions"] == want
