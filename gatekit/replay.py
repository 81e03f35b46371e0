"""Shadow replay: a policy over the stored actions, inside DuckDB, saved as a named run (the write path;
reading runs back is `gatekit.run`).

>>> with Store("gatekit.duckdb") as store:
...     run = replay(store, load_policy("policies/starter.yaml"), name="starter")
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from gatekit.errors import StoreError
from gatekit.logs.shred import policy_paths, shred, shredded
from gatekit.logs.store import Store
from gatekit.policy.compile import ERROR_DETAIL, compile_sql, lit
from gatekit.policy.model import Policy
from gatekit.run import Run, decision_counts, load_run, run_row

RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  name VARCHAR PRIMARY KEY, policy_name VARCHAR, policy_source VARCHAR, policy_text VARCHAR,
  fingerprint VARCHAR, created_at TIMESTAMPTZ, actions BIGINT, allow BIGINT, escalate BIGINT, deny BIGINT,
  errored BIGINT, seconds DOUBLE
);
CREATE TABLE IF NOT EXISTS decisions (
  run VARCHAR NOT NULL, seq BIGINT NOT NULL, action_id VARCHAR NOT NULL, decision VARCHAR NOT NULL,
  rules VARCHAR[] NOT NULL, errors VARCHAR[] NOT NULL, tier VARCHAR
);
"""
# Why each errored rule errored (decision.RuleError: rule, field, test, code, message), one per entry of
# `errors`. Added after the first stores were written: `ensure_schema` adds it to a store without it.
ERROR_DETAILS = f"ALTER TABLE decisions ADD COLUMN IF NOT EXISTS error_details {ERROR_DETAIL}[]"
_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


def ensure_schema(store: Store) -> None:
    store.con.execute(RUN_SCHEMA)
    store.con.execute(ERROR_DETAILS)


def replay(store: Store, policy: Policy, name: str | None = None, *, replace: bool = False,
           shred_paths: bool = True) -> Run:
    """Decide every stored action with `policy` and store the result as run `name`.

    The paths the policy reads are shredded first (gatekit/logs/shred.py) and read as typed columns;
    `shred_paths=False` reads the JSON and leaves the store's shred as it is (the same decisions)."""
    ensure_schema(store)
    now = datetime.now(timezone.utc)
    if name is None:
        name = f"{policy.name}-{now.strftime('%Y%m%d-%H%M%S')}"
        name = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", name)[:128]
    if not _NAME.match(name):
        raise StoreError(f"invalid run name `{name}`: use letters, digits and _ . : @ + - (at most 128)")
    con = store.con
    if run_row(store, name) is not None and not replace:
        raise StoreError(f"run `{name}` already exists: pick another --name or pass --replace")
    started = time.perf_counter()
    # the paths the policy reads as typed columns: shredded now if not yet (a store opened read-only
    # keeps what is shredded, and the compiler reads the rest from the JSON)
    paths = policy_paths(policy)
    shreds = (None if not shred_paths or not paths else shredded(store, paths) if store.read_only
              else shred(store, paths))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM decisions WHERE run = ?", [name])
        con.execute("DELETE FROM runs WHERE name = ?", [name])
        con.execute("INSERT INTO decisions (run, seq, action_id, decision, rules, errors, tier, error_details) "
                    f"SELECT {lit(name)}, seq, action_id, decision, rules, errors, tier, error_details "
                    f"FROM ({compile_sql(policy, shredded=shreds)})")
        counts = decision_counts(store, name)
        seconds = time.perf_counter() - started
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, policy.name, policy.source, policy.text, policy.fingerprint, now, *counts, seconds])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return load_run(store, name)


def delete_run(store: Store, name: str) -> Run:
    """Remove the run `name`, its row and its decisions, and return what it was; the actions stay.

    >>> delete_run(store, "starter@8c8965e7ec8d").actions
    20000
    """
    run = load_run(store, name)  # a StoreError naming the stored runs if there is none
    con = store.con
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM decisions WHERE run = ?", [name])
        con.execute("DELETE FROM runs WHERE name = ?", [name])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return run
