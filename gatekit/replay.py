"""Shadow replay: a policy over the stored actions, inside DuckDB, saved as a named run.

>>> with Store("gatekit.duckdb") as store:
...     run = replay(store, load_policy("policies/starter.yaml"), name="starter")
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gatekit.errors import StoreError
from gatekit.logs.store import Store
from gatekit.policy.compile import ERROR_DETAIL, compile_sql, lit
from gatekit.policy.model import Policy

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


@dataclass(frozen=True)
class Run:
    """A stored replay: which policy, when, and how many actions it would allow, escalate or deny."""

    name: str
    policy_name: str
    fingerprint: str
    created_at: datetime
    actions: int
    allow: int
    escalate: int
    deny: int
    errored: int
    seconds: float
    policy_source: str = ""

    @property
    def decisions(self) -> dict[str, int]:
        return {"allow": self.allow, "escalate": self.escalate, "deny": self.deny}

    def rate(self, decision: str) -> float:
        return self.decisions[decision] / self.actions if self.actions else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["decisions"] = self.decisions
        out["rates"] = {d: self.rate(d) for d in self.decisions}
        return out


def ensure_schema(store: Store) -> None:
    store.con.execute(RUN_SCHEMA)
    store.con.execute(ERROR_DETAILS)


def has_error_details(store: Store) -> bool:
    """Whether the store's decisions carry error details (a store opened read-only may predate them)."""
    return bool(store.con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'decisions' "
        "AND column_name = 'error_details'").fetchall()[0][0])


def action_errors(store: Store, name: str, seq: int) -> list[dict[str, Any]]:
    """Why the rules that errored on action `seq` in run `name` errored: rule, field, test, code, message."""
    if not has_error_details(store):
        return []
    rows = store.con.execute("SELECT error_details FROM decisions WHERE run = ? AND seq = ?", [name, seq]).fetchall()
    return list(rows[0][0] or []) if rows else []


def error_summary(store: Store, name: str) -> list[dict[str, Any]]:
    """A run's evaluation errors by rule and code: how many actions, and one message as an example."""
    if not has_error_details(store):
        return []
    rows = store.con.execute(
        "SELECT e.rule, e.code, count(*) AS actions, min(e.message) AS example FROM "
        "(SELECT unnest(error_details) AS e FROM decisions WHERE run = ? AND len(errors) > 0) "
        "GROUP BY ALL ORDER BY actions DESC, e.rule, e.code", [name]).fetchall()
    return [{"rule": r, "code": c, "actions": n, "example": m} for r, c, n, m in rows]


def replay(store: Store, policy: Policy, name: str | None = None, *, replace: bool = False) -> Run:
    """Decide every stored action with `policy` and store the result as run `name`."""
    ensure_schema(store)
    now = datetime.now(timezone.utc)
    if name is None:
        name = f"{policy.name}-{now.strftime('%Y%m%d-%H%M%S')}"
        name = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", name)[:128]
    if not _NAME.match(name):
        raise StoreError(f"invalid run name `{name}`: use letters, digits and _ . : @ + - (at most 128)")
    con = store.con
    exists = con.execute("SELECT count(*) FROM runs WHERE name = ?", [name]).fetchall()[0][0]
    if exists and not replace:
        raise StoreError(f"run `{name}` already exists: pick another --name or pass --replace")
    started = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM decisions WHERE run = ?", [name])
        con.execute("DELETE FROM runs WHERE name = ?", [name])
        con.execute("INSERT INTO decisions (run, seq, action_id, decision, rules, errors, tier, error_details) "
                    f"SELECT {lit(name)}, seq, action_id, decision, rules, errors, tier, error_details "
                    f"FROM ({compile_sql(policy)})")
        counts = con.execute(
            "SELECT count(*), count(*) FILTER (decision = 'allow'), count(*) FILTER (decision = 'escalate'), "
            "count(*) FILTER (decision = 'deny'), count(*) FILTER (len(errors) > 0) FROM decisions WHERE run = ?",
            [name]).fetchall()[0]
        seconds = time.perf_counter() - started
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, policy.name, policy.source, policy.text, policy.fingerprint, now, *counts, seconds])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return get_run(store, name)


def get_run(store: Store, name: str) -> Run:
    if not store.read_only:
        ensure_schema(store)
    rows = store.con.execute(
        "SELECT name, policy_name, fingerprint, created_at, actions, allow, escalate, deny, errored, seconds, "
        "policy_source FROM runs WHERE name = ?", [name]).fetchall()
    if not rows:
        known = ", ".join(f"`{r.name}`" for r in list_runs(store)) or "none: run `gatekit replay` first"
        raise StoreError(f"no run `{name}` in the store (runs: {known})")
    return Run(*rows[0])


def list_runs(store: Store) -> list[Run]:
    if not _has_runs(store):
        return []
    rows = store.con.execute(
        "SELECT name, policy_name, fingerprint, created_at, actions, allow, escalate, deny, errored, seconds, "
        "policy_source FROM runs ORDER BY created_at, name").fetchall()
    return [Run(*r) for r in rows]


def _has_runs(store: Store) -> bool:
    return bool(store.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'").fetchall()[0][0])


def export_run(store: Store, name: str, out: Path | str) -> Path:
    """Write a run's rows (`action_id, decision, rules, errors, tier`, plus seq and `error_details`: rule,
    field, test, code and message per errored rule) as Parquet or JSON Lines."""
    get_run(store, name)
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        fmt = "(FORMAT parquet)"
    elif suffix in (".jsonl", ".ndjson", ".json"):
        fmt = "(FORMAT json)"
    else:
        raise StoreError(f"cannot write `{path}`: use a .parquet or .jsonl file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    store.con.execute(
        f"COPY (SELECT seq, action_id, decision, rules, errors, tier"
        f"{', error_details' if has_error_details(store) else ''} FROM decisions WHERE run = {lit(name)} "
        f"ORDER BY seq) TO {lit(str(path))} {fmt}")
    return path
