"""Shredding (gatekit/logs/shred.py): replay shreds the paths a policy reads on demand, later replays read
the typed columns, actions ingested after a shred are shredded by the next replay, and a store opened
read-only reads the shred when it covers every row and the JSON otherwise. Every replay is held to decide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatekit.logs import shred
from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.policy import parse_policy
from gatekit.policy.compile import compile_sql
from gatekit.policy.decide import decide_log
from gatekit.replay import replay

POLICY_A = """
version: 1
name: a
on_error: escalate
rules:
  - {id: big, tool: pay, action: escalate, when: {args.amount: {gt: 100}}}
  - {id: blocked, tool: pay, action: deny, when: {args.to: {in: [mallory, [x, 1]]}}}
  - {id: prod, tool: "*", action: escalate, when: {context.env: prod}}
  - {id: volume, tool: pay, action: escalate, when: {sum: {field: args.fee, window: 1d, gt: 10}}}
"""
POLICY_B = """
version: 1
name: b
rules:
  - {id: flag, tool: "*", action: deny, when: {args.flag: true}}
  - {id: tags, tool: "*", action: escalate, when: {args.tags: {contains: ops}}}
  - {id: big, tool: pay, action: escalate, when: {args.amount: {gte: 1000}}}
"""
_VALUES: list[Any] = [50, 150, "150", " 2e3 ", "1,810", "1e999", None, True, [1, 2], {"a": 1}, "x", 1e300]


def _calls(start: int, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        args: dict[str, Any] = {"to": ["mallory", "bob", ["x", 1], 3][i % 4], "fee": [4, "5", "x", None][i % 4]}
        if i % 5:
            args["amount"] = _VALUES[i % len(_VALUES)]
        if i % 3 == 0:
            args["flag"] = [True, "true", 1][i % 2]
        if i % 7 == 0:
            args["tags"] = ["ops", "dev"] if i % 2 else {"ops": 1}
        out.append({"action_id": f"a-{i}", "ts": f"2026-01-01T{i % 24:02d}:{i % 60:02d}:00Z",
                    "tool": ["pay", "db.query"][i % 3 == 2], "agent": "A", "args": args,
                    "context": {"env": ["prod", "dev", 1][i % 3]}})
    return out


def _ingest(store: Store, path: Path, calls: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(a) + "\n" for a in calls))
    ingest(store, [path])


def _expected(policy_text: str, calls: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for d in decide_log(parse_policy(policy_text), calls):
        out.append((d.decision, tuple(d.rules), tuple(d.errors), d.tier,
                    tuple((e.rule, e.field, e.test, e.code, e.message) for e in d.error_details)))
    return out


def _stored(store: Store, run: str) -> list[tuple[Any, ...]]:
    rows = store.con.execute("SELECT decision, rules, errors, tier, error_details FROM decisions WHERE run = ? "
                             "ORDER BY seq", [run]).fetchall()
    return [(d, tuple(r), tuple(e), t, tuple((x["rule"], x["field"], x["test"], x["code"], x["message"])
                                            for x in (ds or ()))) for d, r, e, t, ds in rows]


def _table_oid(store: Store) -> int:
    return store.con.execute("SELECT table_oid FROM duckdb_tables() WHERE table_name = ?",
                             [shred.TABLE]).fetchall()[0][0]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def test_the_first_replay_shreds_and_the_next_reads_the_shred(store: Store, tmp_path: Path) -> None:
    calls = _calls(0, 60)
    _ingest(store, tmp_path / "a.jsonl", calls)
    policy = parse_policy(POLICY_A)
    replay(store, policy, name="one")
    paths = shred.policy_paths(policy)
    assert set(paths) == {("args", "/amount"), ("args", "/to"), ("context", "/env"), ("args", "/fee")}
    got = shred.shredded(store, paths)
    assert got is not None and set(got.columns) == set(paths)
    assert store.con.execute(f"SELECT count(*) FROM {shred.TABLE}").fetchall()[0][0] == len(calls)
    # read from the typed columns: the query parses no stored document (only a list value, for `in`)
    sql = compile_sql(policy, shredded=got)
    assert "json_extract(args" not in sql and "json_extract(context" not in sql
    oid = _table_oid(store)
    replay(store, policy, name="two")
    assert _table_oid(store) == oid, "a replay with nothing new to shred rebuilt the shred"
    assert _stored(store, "one") == _stored(store, "two") == _expected(POLICY_A, calls)


def test_actions_ingested_after_a_shred_are_shredded_by_the_next_replay(store: Store, tmp_path: Path) -> None:
    first, more = _calls(0, 40), _calls(40, 35)
    _ingest(store, tmp_path / "a.jsonl", first)
    policy = parse_policy(POLICY_A)
    replay(store, policy, name="before")
    oid = _table_oid(store)
    _ingest(store, tmp_path / "b.jsonl", more)
    assert shred.shredded(store, shred.policy_paths(policy)) is None, "a shred missing rows must not be read"
    replay(store, policy, name="after")
    assert _table_oid(store) == oid, "new rows are added to the shred, not a rebuild"
    assert store.con.execute(f"SELECT count(*) FROM {shred.TABLE}").fetchall()[0][0] == len(first + more)
    assert _stored(store, "after") == _expected(POLICY_A, first + more)


def test_shred_new_rows_is_what_ingest_can_call(store: Store, tmp_path: Path) -> None:
    _ingest(store, tmp_path / "a.jsonl", _calls(0, 10))
    assert shred.shred_new_rows(store) == 0  # nothing shredded yet: nothing to keep up to date
    replay(store, parse_policy(POLICY_A), name="r")
    _ingest(store, tmp_path / "b.jsonl", _calls(10, 7))
    assert shred.shred_new_rows(store) == 7
    assert shred.shred_new_rows(store) == 0
    assert shred.shredded(store) is not None


def test_a_policy_reading_new_paths_reshreds_keeping_the_old(store: Store, tmp_path: Path) -> None:
    calls = _calls(0, 50)
    _ingest(store, tmp_path / "a.jsonl", calls)
    replay(store, parse_policy(POLICY_A), name="a")
    replay(store, parse_policy(POLICY_B), name="b")
    recorded = shred.shredded(store)
    assert recorded is not None
    assert set(recorded.columns) == set(shred.policy_paths(parse_policy(POLICY_A))) | {
        ("args", "/flag"), ("args", "/tags")}
    assert _stored(store, "b") == _expected(POLICY_B, calls)
    replay(store, parse_policy(POLICY_A), name="a2")
    assert _stored(store, "a2") == _stored(store, "a") == _expected(POLICY_A, calls)


def test_a_shred_made_by_other_readings_is_not_used(store: Store, tmp_path: Path) -> None:
    calls = _calls(0, 20)
    _ingest(store, tmp_path / "a.jsonl", calls)
    policy = parse_policy(POLICY_A)
    replay(store, policy, name="a")
    store.con.execute(f"UPDATE {shred.PATHS_TABLE} SET recipe = 'older'")
    store.con.execute(f"UPDATE {shred.TABLE} SET c0_n = -1, c0_t = 'NUM'")  # what an older gatekit left
    assert shred.shredded(store, shred.policy_paths(policy)) is None
    replay(store, policy, name="b")
    assert _stored(store, "b") == _expected(POLICY_A, calls)


def test_a_read_only_store_reads_a_complete_shred_and_else_the_json(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    first, more = _calls(0, 30), _calls(30, 30)
    policy = parse_policy(POLICY_A)
    with Store(db) as s:
        _ingest(s, tmp_path / "a.jsonl", first)
        replay(s, policy, name="a")
    query = "SELECT decision, rules, errors, tier FROM ({}) ORDER BY seq"

    def read_only() -> tuple[bool, list[tuple[Any, ...]]]:
        with Store(db, read_only=True) as ro:
            shreds = shred.shredded(ro, shred.policy_paths(policy))
            rows = ro.con.execute(query.format(compile_sql(policy, shredded=shreds))).fetchall()
            return shreds is not None, [(d, tuple(r), tuple(e), t) for d, r, e, t in rows]

    used, rows = read_only()
    assert used and rows == [e[:4] for e in _expected(POLICY_A, first)]
    with Store(db) as s:
        _ingest(s, tmp_path / "b.jsonl", more)  # not shredded yet
    used, rows = read_only()
    assert not used and rows == [e[:4] for e in _expected(POLICY_A, first + more)]


def test_a_shred_with_only_some_paths_is_read_for_those(store: Store, tmp_path: Path) -> None:
    calls = _calls(0, 40)
    _ingest(store, tmp_path / "a.jsonl", calls)
    shred.shred(store, [("args", "/amount")])
    policy = parse_policy(POLICY_A)
    part = shred.shredded(store, shred.policy_paths(policy))
    assert part is not None and set(part.columns) == {("args", "/amount")}
    sql = compile_sql(policy, shredded=part)
    assert "'/amount'" not in sql and "'/to'" in sql  # amount from the shred, the rest from the JSON
    rows = store.con.execute(f"SELECT decision, rules, errors, tier FROM ({sql}) ORDER BY seq").fetchall()
    assert [(d, tuple(r), tuple(e), t) for d, r, e, t in rows] == [e[:4] for e in _expected(POLICY_A, calls)]


def test_replay_without_shredding_reads_the_json_and_decides_the_same(store: Store, tmp_path: Path) -> None:
    calls = _calls(0, 30)
    _ingest(store, tmp_path / "a.jsonl", calls)
    replay(store, parse_policy(POLICY_A), name="json", shred_paths=False)
    assert shred.shredded(store) is None, "shred_paths=False shredded"
    replay(store, parse_policy(POLICY_A), name="shredded")
    assert _stored(store, "json") == _stored(store, "shredded") == _expected(POLICY_A, calls)
