"""Run one policy through both evaluators: `decide_log` (Python) and `compile_sql` (DuckDB).

`run_both(policy, actions)` returns `(py, sql)`, each a list of `(decision, rules, errors, tier)` per
action in log order, so the two can be compared with `==` and against hand-written expectations.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import duckdb
import pyarrow as pa

from gatekit.action import parse_ts
from gatekit.logs import shred
from gatekit.policy.closure import closure_log
from gatekit.policy.compile import compile_sql
from gatekit.policy.decide import decide_log
from gatekit.policy.model import Policy

Outcome = tuple[str, tuple[str, ...], tuple[str, ...], "str | None"]

# The store's `ts` is NOT NULL: a call without one gets this fixed instant on the SQL side.
DEFAULT_TS = datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc)

_TABLE = """
CREATE TABLE actions (
  seq BIGINT, action_id VARCHAR, ts TIMESTAMPTZ, agent VARCHAR, session VARCHAR, "user" VARCHAR,
  tool VARCHAR, args JSON, context JSON
)
"""


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


Detail = tuple[str, str, str, str, str]  # a RuleError as (rule, field, test, code, message)


def run_python(policy: Policy, actions: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    return [(d.decision, tuple(d.rules), tuple(d.errors), d.tier) for d in decide_log(policy, list(actions))]


def details_python(policy: Policy, actions: Sequence[Mapping[str, Any]]) -> list[tuple[Detail, ...]]:
    """`Decision.error_details` of every action, as tuples."""
    return [tuple((e.rule, e.field, e.test, e.code, e.message) for e in d.error_details)
            for d in decide_log(policy, list(actions))]


def run_closure(policy: Policy, actions: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    """The closure evaluator's outcomes (gatekit/policy/closure.py: the gate's), windows over the log."""
    return [(d.decision, tuple(d.rules), tuple(d.errors), d.tier) for d in closure_log(policy, list(actions))]


def details_closure(policy: Policy, actions: Sequence[Mapping[str, Any]]) -> list[tuple[Detail, ...]]:
    return [tuple((e.rule, e.field, e.test, e.code, e.message) for e in d.error_details)
            for d in closure_log(policy, list(actions))]


def _arrow(actions: Sequence[Mapping[str, Any]]) -> pa.Table:
    cols = list(zip(*rows(actions))) if actions else [()] * 9
    return pa.table({
        "seq": pa.array(cols[0], pa.int64()),
        "action_id": pa.array(cols[1], pa.string()),
        "ts": pa.array(cols[2], pa.timestamp("us", tz="UTC")),
        "agent": pa.array(cols[3], pa.string()),
        "session": pa.array(cols[4], pa.string()),
        "user": pa.array(cols[5], pa.string()),
        "tool": pa.array(cols[6], pa.string()),
        "args": pa.array(cols[7], pa.string()),
        "context": pa.array(cols[8], pa.string()),
    })


def run_sql(policy: Policy, actions: Sequence[Mapping[str, Any]],
            con: duckdb.DuckDBPyConnection | None = None, shredded: bool = False) -> list[Outcome]:
    """The compiled query's outcomes over a fresh `actions` table holding `actions` (loaded from Arrow);
    with `shredded`, the policy's paths are shredded first (gatekit/logs/shred.py) and read from there."""
    got = _query(policy, actions, con, "seq, action_id, decision, rules, errors, tier", shredded)
    return [(d, tuple(rs or ()), tuple(es or ()), tier) for _, _, d, rs, es, tier in got]


def details_sql(policy: Policy, actions: Sequence[Mapping[str, Any]],
                con: duckdb.DuckDBPyConnection | None = None, shredded: bool = False) -> list[tuple[Detail, ...]]:
    """The compiled query's `error_details` of every action, as tuples."""
    got = _query(policy, actions, con, "seq, error_details", shredded)
    return [tuple((e["rule"], e["field"], e["test"], e["code"], e["message"]) for e in (ds or ()))
            for _, ds in got]


def _query(policy: Policy, actions: Sequence[Mapping[str, Any]], con: duckdb.DuckDBPyConnection | None,
           columns: str, shredded: bool = False) -> list[tuple[Any, ...]]:
    own = con is None
    con = con or duckdb.connect(":memory:")
    try:
        con.execute("DROP TABLE IF EXISTS actions")
        con.execute(f"DROP TABLE IF EXISTS {shred.TABLE}")  # a shred of another test's actions
        con.execute(f"DROP TABLE IF EXISTS {shred.PATHS_TABLE}")
        con.execute(_TABLE)
        con.register("actions_in", _arrow(actions))
        try:
            con.execute("INSERT INTO actions SELECT * FROM actions_in")  # VARCHAR -> JSON validates the text
        finally:
            con.unregister("actions_in")
        shreds = shred.shred(con, shred.policy_paths(policy)) if shredded else None
        got = con.execute(f"SELECT {columns} FROM ({compile_sql(policy, shredded=shreds)}) ORDER BY seq").fetchall()
    finally:
        if own:
            con.close()
    assert [r[0] for r in got] == list(range(len(actions))), "the query must return one row per action"
    return got


def run_both(policy: Policy, actions: Sequence[Mapping[str, Any]],
             con: duckdb.DuckDBPyConnection | None = None, shredded: bool = False
             ) -> tuple[list[Outcome], list[Outcome]]:
    """Both evaluators' outcomes for every action: `(decide_log, compile_sql)`.

    The store cannot hold a call without a timestamp, so the SQL side gives such a call DEFAULT_TS while
    `decide` sees none: cases that read `time.*` or windows must give every action a `ts`.
    """
    return run_python(policy, actions), run_sql(policy, actions, con, shredded)


# ---- Spark ----------------------------------------------------------------------------------------------
def spark_batch(jobs: Sequence[tuple[Policy, Sequence[Sequence[Mapping[str, Any]]]]], spark: Any
                ) -> list[tuple[list[list[Outcome]], list[list[tuple[Detail, ...]]]]]:
    """The Spark backend's outcomes and error details for many policies, each over many logs, in ONE Spark
    job (the decided frames of every policy unioned; windows count within each log), each log in log
    order, over the same rows the DuckDB side reads (`rows`, JSON text args)."""
    from pyspark.sql import functions as F

    from gatekit.spark import decide_frame

    decided = []
    for j, (policy, logs) in enumerate(jobs):
        tables = []
        for n, actions in enumerate(logs):
            t = _arrow(actions)
            tables.append(t.append_column("log", pa.array([n] * len(t), pa.int64())))
        table = pa.concat_tables(tables) if tables else _arrow([]).append_column("log", pa.array([], pa.int64()))
        frame = spark.createDataFrame(table)
        decided.append(decide_frame(policy, frame, by="log").select(
            F.lit(j).alias("job_"), "log_", "seq", "decision", "rules", "errors", "tier", "error_details"))
    union = decided[0]
    for d in decided[1:]:
        union = union.unionByName(d)
    results = [([[None] * len(actions) for actions in logs], [[()] * len(actions) for actions in logs])
               for _, logs in jobs]
    for row in union.collect():
        out, details = results[row["job_"]]
        out[row["log_"]][row["seq"]] = (row["decision"], tuple(row["rules"] or ()), tuple(row["errors"] or ()),
                                        row["tier"])
        details[row["log_"]][row["seq"]] = tuple((e["rule"], e["field"], e["test"], e["code"], e["message"])
                                                 for e in (row["error_details"] or ()))
    assert all(o is not None for out, _ in results for log in out for o in log), "one row per action"
    return results  # type: ignore[return-value]


def spark_many(policy: Policy, logs: Sequence[Sequence[Mapping[str, Any]]],
               spark: Any) -> tuple[list[list[Outcome]], list[list[tuple[Detail, ...]]]]:
    """The Spark backend's outcomes and error details for many logs at once (one Spark job; see
    `spark_batch`)."""
    return spark_batch([(policy, logs)], spark)[0]


def run_spark_many(policy: Policy, logs: Sequence[Sequence[Mapping[str, Any]]], spark: Any) -> list[list[Outcome]]:
    """The Spark backend's outcomes for many logs at once (see `spark_many`)."""
    return spark_many(policy, logs, spark)[0]


def run_spark(policy: Policy, actions: Sequence[Mapping[str, Any]], spark: Any) -> list[Outcome]:
    """The Spark backend's outcomes over one log (see `run_spark_many`)."""
    return run_spark_many(policy, [actions], spark)[0]
