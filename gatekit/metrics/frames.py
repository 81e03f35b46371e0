"""The frames every metric starts from, read from the store in one query each (DuckDB -> Arrow -> polars).

Metrics take these frames and return tidy frames; nothing here loops over rows in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from gatekit.logs.store import Store
from gatekit.policy.compile import json_pointer, lit
from gatekit.replay import get_run

ACTION_COLUMNS = 'a.seq, a.action_id, a.ts, a.agent, a.session, a."user", a.tool, a.outcome, a.label, ' \
                 'a.evidence_hash, a.executed_hash'


def actions_frame(store: Store, where: str = "TRUE") -> pl.DataFrame:
    """One row per stored action (no args/context), in log order; `approvals` counts its approvals."""
    return store.con.sql(
        f"SELECT {ACTION_COLUMNS}, coalesce(json_array_length(a.approvals), 0) AS approvals "
        f"FROM actions a WHERE {where} ORDER BY a.seq").pl()


def decisions_frame(store: Store, run: str) -> pl.DataFrame:
    """One row per action of `run`: the action's columns plus decision, rules, errors and tier."""
    get_run(store, run)
    return store.con.sql(
        f"SELECT {ACTION_COLUMNS}, coalesce(json_array_length(a.approvals), 0) AS approvals, "
        "d.decision, d.rules, d.errors, d.tier "
        "FROM decisions d JOIN actions a USING (seq) WHERE d.run = ? ORDER BY a.seq", params=[run]).pl()


def approvals_frame(store: Store) -> pl.DataFrame:
    """One row per recorded approval: who reviewed which action, how, and how long it took."""
    # unnest of a JSON[] cast is several times faster than a lateral json_each
    return store.con.sql(f"""
        WITH ap AS (
            SELECT {ACTION_COLUMNS}, unnest(CAST(a.approvals AS JSON[])) AS value,
                   generate_subscripts(CAST(a.approvals AS JSON[]), 1) - 1 AS approval_index
            FROM actions a WHERE a.approvals IS NOT NULL)
        SELECT * EXCLUDE (value),
               value ->> 'reviewer' AS reviewer, value ->> 'role' AS role,
               value ->> 'decision' AS review,
               TRY_CAST(value ->> 'requested_at' AS TIMESTAMPTZ) AS requested_at,
               TRY_CAST(value ->> 'decided_at' AS TIMESTAMPTZ) AS decided_at,
               coalesce(TRY_CAST(value -> 'break_glass' AS BOOLEAN), FALSE) AS break_glass,
               value ->> 'reason' AS reason,
               value AS approval
        FROM ap
        ORDER BY seq, approval_index""").pl().with_columns(
        latency_s=(pl.col("decided_at") - pl.col("requested_at")).dt.total_microseconds() / 1e6)


def arg_frame(store: Store, paths: Sequence[str], where: str = "TRUE") -> pl.DataFrame:
    """`action_id` plus one column per field path (`args.amount`, `context.env`), read as a number when
    the value is a number or a numeric string, else as text (`<path>` and `<path>:text`); `where` filters
    the actions (alias `a`), e.g. to the tools a rule looks at."""
    cols = []
    for path in paths:
        root, _, rest = path.partition(".")
        if root not in ("args", "context") or not rest:
            raise ValueError(f"not an args or context path: `{path}`")
        j = f"json_extract(a.{root}, {lit(json_pointer(rest.split('.')))})"
        cols.append(f"TRY_CAST(trim({j} ->> '$') AS DOUBLE) AS \"{path}\"")
        cols.append(f"{j} ->> '$' AS \"{path}:text\"")
    return store.con.sql(f"SELECT a.seq, a.action_id, {', '.join(cols)} FROM actions a WHERE {where} ORDER BY a.seq").pl()
