"""Run one policy through both evaluators: `decide_log` (Python) and `compile_sql` (DuckDB).

`run_both(policy, actions)` returns `(py, sql)`, each a list of `(decision, rules, errors, tier)` per
action in log order, so the two can be compared with `==` and against hand-written expectations.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import duckdb

from gatekit.action import parse_ts
from gatekit.policy.compile import compile_sql
from gatekit.policy.decide import decide_log
from gatekit.policy.model import Policy

Outcome = tuple[str, tuple[str, ...], tuple[str, ...], "str | None"]

# Actions without a timestamp still need one in the store (its `ts` is NOT NULL); every test that looks at
# time or windows gives its actions a `ts`, so this one only has to be fixed.
DEFAULT_TS = datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc)

_TABLE = """
CREATE TABLE actions (
  seq BIGINT, action_id VARCHAR, ts TIMESTAMPTZ, agent VARCHAR, session VARCHAR, "user" VARCHAR,
  tool VARCHAR, args JSON, context JSON
)
"""


def with_default_ts(actions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The actions as the store would hold them: every one with a timestamp."""
    return [dict(a) if a.get("ts") is not None else {**a, "ts": DEFAULT_TS} for a in actions]


def _ts(value: Any) -> datetime:
    if value is None:
        return DEFAULT_TS
    if isinstance(value, str):
        return parse_ts(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _json(value: Any) -> str:
    return json.dumps(value if value is not None else {}, allow_nan=True)


def rows(actions: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (seq, a.get("action_id") or f"a-{seq}", _ts(a.get("ts")), a.get("agent"), a.get("session"),
         a.get("user"), a.get("tool"), _json(a.get("args")), _json(a.get("context")))
        for seq, a in enumerate(actions)
    ]


def run_python(policy: Policy, actions: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    return [(d.decision, tuple(d.rules), tuple(d.errors), d.tier) for d in decide_log(policy, list(actions))]


def run_sql(policy: Policy, actions: Sequence[Mapping[str, Any]],
            con: duckdb.DuckDBPyConnection | None = None) -> list[Outcome]:
    own = con is None
    con = con or duckdb.connect(":memory:")
    try:
        con.execute("DROP TABLE IF EXISTS actions")
        con.execute(_TABLE)
        if actions:
            con.executemany("INSERT INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows(actions))
        got = con.execute(f"SELECT * FROM ({compile_sql(policy)}) ORDER BY seq").fetchall()
    finally:
        if own:
            con.close()
    assert [r[0] for r in got] == list(range(len(actions))), "the query must return one row per action"
    return [(d, tuple(rs or ()), tuple(es or ()), tier) for _, _, d, rs, es, tier in got]


def run_both(policy: Policy, actions: Sequence[Mapping[str, Any]],
             con: duckdb.DuckDBPyConnection | None = None) -> tuple[list[Outcome], list[Outcome]]:
    """Both evaluators' outcomes for every action.

    Python sees the same actions the store holds: actions without `ts` get DEFAULT_TS in both, so a
    missing timestamp cannot make them differ (the store cannot hold a row without one).
    """
    stored = with_default_ts(actions)
    return run_python(policy, stored), run_sql(policy, stored, con)
