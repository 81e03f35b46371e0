"""The floor: the 20-rule policy hand-written as one DuckDB CASE over typed columns, one row per action.

    python -m benchmarks.floor --db STORE [--window] [--json-columns]

What a person would write for this one policy and this one data set, knowing every type in advance: no
JSON at decision time (the arguments were extracted once into typed columns, `typed_actions`, built by
`prepare`), no error tracking, no list of matched rules, only the decision. With `--json-columns` the same
CASE reads the store's JSON columns instead (`->>` and casts), the floor for data as it is stored.
Run as a process it imports only duckdb: its whole-process time is the floor replay is held to.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

_DENY = [
    "tool = 'payment.send' AND recipient IN ('mallory', 'eve-corp')",
    "(tool = 'db.delete' OR starts_with(tool, 'db.drop_')) AND env = 'prod'",
    "starts_with(tool, 'infra.iam.') AND suffix(role, 'admin')",
    "starts_with(tool, 'vault.') AND starts_with(path, 'secret/prod')",
]
_ESCALATE = [
    "tool = 'payment.send' AND amount > 100",
    "tool = 'payment.refund' AND amount > 500",
    "tool = 'db.update' AND env = 'prod' AND rows_affected > 1000",
    "tool = 'data.export' AND (regexp_matches(destination, '^(s3|https?)://(?:[^/]*\\.)?(?:external|partner)') "
    "OR \"rows\" > 100000)",
    "starts_with(tool, 'infra.iam.')",
    "tool = 'infra.scale' AND replicas > 50",
    "starts_with(tool, 'deploy.') AND env = 'prod'",
    "starts_with(tool, 'payment.') AND (hour(timezone('Europe/Berlin', ts)) < 7 OR hour(timezone('Europe/Berlin', ts)) >= 20)",
    "tool = 'email.campaign.send' AND recipients > 5000",
    "tool = 'email.send' AND contains(\"to\", '@') AND NOT suffix(\"to\", '@example.com')",
]
_NOWINDOW = ["tool = 'email.send' AND recipients > 20", "tool = 'payment.send' AND amount > 50000"]
_WINDOW = ["COALESCE(burst > 20, FALSE)", "COALESCE(volume > 50000, FALSE)"]

# the typed columns, as extracted from the store's JSON (a numeric string amount read as its number)
_TYPED = """
  seq, action_id, ts, agent, tool, context ->> '$.env' AS env,
  TRY_CAST(trim(args ->> '$.amount') AS DOUBLE) AS amount, args ->> '$.recipient' AS recipient,
  TRY_CAST(args ->> '$.rows_affected' AS BIGINT) AS rows_affected, TRY_CAST(args ->> '$.rows' AS BIGINT) AS "rows",
  args ->> '$.destination' AS destination, args ->> '$.role' AS role,
  TRY_CAST(args ->> '$.replicas' AS BIGINT) AS replicas, TRY_CAST(args ->> '$.recipients' AS BIGINT) AS recipients,
  args ->> '$.to' AS "to", args ->> '$.path' AS path
"""


def prepare(con: object, replace: bool = False) -> None:
    """Build `typed_actions` (the typed columns the floor reads) from `actions`, once."""
    have = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'typed_actions'").fetchall()[0][0]
    if have and not replace:
        return
    con.execute(f"CREATE OR REPLACE TABLE typed_actions AS SELECT {_TYPED} FROM actions ORDER BY seq")
    con.execute("CHECKPOINT")


def floor_sql(window: bool, source: str = "typed_actions") -> str:
    """The query: `seq, action_id, decision` for every row of `source` (typed columns)."""
    esc = _ESCALATE + (_WINDOW if window else _NOWINDOW)
    case = (f"CASE WHEN {' OR '.join(f'({c})' for c in _DENY)} THEN 'deny' "
            f"WHEN {' OR '.join(f'({c})' for c in esc)} THEN 'escalate' ELSE 'allow' END")
    if not window:
        return f"SELECT seq, action_id, {case} AS decision FROM {source}"
    # the two window rules: calls of the rule's tool by the same agent in (ts - window, ts]
    return f"""
    WITH b AS (SELECT seq, count(*) OVER (PARTITION BY agent ORDER BY ts
                 RANGE BETWEEN INTERVAL 599999999 MICROSECONDS PRECEDING AND CURRENT ROW) AS burst
               FROM {source} WHERE tool = 'email.send'),
         v AS (SELECT seq, sum(amount) OVER (PARTITION BY agent ORDER BY ts
                 RANGE BETWEEN INTERVAL 3599999999 MICROSECONDS PRECEDING AND CURRENT ROW) AS volume
               FROM {source} WHERE tool = 'payment.send')
    SELECT t.seq, t.action_id, {case} AS decision
    FROM {source} t LEFT JOIN b ON b.seq = t.seq LEFT JOIN v ON v.seq = t.seq"""


def run(con: object, window: bool, json_columns: bool = False) -> int:
    source = f"(SELECT {_TYPED} FROM actions)" if json_columns else "typed_actions"
    con.execute(f"CREATE OR REPLACE TABLE floor_decisions AS {floor_sql(window, source)}")
    return con.execute("SELECT count(*) FROM floor_decisions").fetchall()[0][0]


def main(argv: list[str] | None = None) -> None:
    import duckdb

    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--window", action="store_true", help="the policy with its two window rules")
    ap.add_argument("--json-columns", action="store_true", help="read the store's JSON, not typed columns")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    con = duckdb.connect(args.db)
    n = run(con, args.window, args.json_columns)
    con.close()
    print(json.dumps({"rows": n, "seconds": time.perf_counter() - t,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stdout)


if __name__ == "__main__":
    main()
