"""What-if replays for the Simulate page: a policy over a window of the stored actions, read-only.

A replay here writes nothing: the compiled policy runs as a query on a read-only connection, so it works
while another process reads or writes the store. Window tests (`rate`, `sum`) look back before the window's
start by the policy's longest window, so every action in the window gets exactly the decision a replay of
the whole store would give it. Saving a result as a run is a real `gatekit replay` of the whole store, in a
separate process (the one writer DuckDB allows), through the same command users run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from gatekit.errors import GatekitError
from gatekit.logs.store import Store
from gatekit.metrics.diff import transition_matrix
from gatekit.metrics.drift import in_window
from gatekit.metrics.rates import decision_rates, rule_firing, smell_test
from gatekit.policy import Policy
from gatekit.policy.compile import compile_sql
from gatekit.policy.conditions import Window, leaves

__all__ = ["Comparison", "compare", "lookback", "replay_window", "save_run"]

SAVE_TIMEOUT_S = 600.0


def lookback(policy: Policy) -> timedelta:
    """How far before an action the policy's window tests look (0 without any)."""
    us = [leaf.window_us for rule in policy.rules for leaf in leaves(rule.when) if isinstance(leaf, Window)]
    return timedelta(microseconds=max(us, default=0))


def _ts(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def replay_window(store: Store, policy: Policy, start: datetime, end: datetime) -> pl.DataFrame:
    """The decision of every action with `ts` in `[start, end)`, as a replay of the whole store gives it.

    Columns: seq, decision, rules, errors, tier (the rows `gatekit replay` stores), in log order.
    """
    since = start - lookback(policy)
    source = f"SELECT * FROM actions WHERE ts >= {_ts(since)} AND ts < {_ts(end)}"
    return store.con.sql(
        f"SELECT seq, decision, rules, errors, tier FROM ({compile_sql(policy, source)}) "
        f"WHERE seq IN (SELECT seq FROM actions WHERE ts >= {_ts(start)} AND ts < {_ts(end)}) ORDER BY seq").pl()


@dataclass(frozen=True)
class Comparison:
    """A simulated policy against a stored run, over the same window of actions."""

    run: str
    policy_name: str
    start: datetime
    end: datetime
    actions: int
    rates: pl.DataFrame  # decision_rates of both, with a `run` column: the run's name, then `simulated`
    matrix: pl.DataFrame  # transition_matrix from the run to the simulation
    rules: pl.DataFrame  # rule, fired_run, fired_simulated, change, action, mode (the simulated policy's rules first)
    firing: pl.DataFrame  # rule_firing of the simulation
    smell: pl.DataFrame  # smell_test of the simulation

    def rate(self, who: str, decision: str) -> float:
        row = self.rates.filter((pl.col("run") == who) & (pl.col("decision").cast(pl.String) == decision))
        return float(row["rate"][0] or 0.0) if row.height else 0.0

    @property
    def changed(self) -> int:
        return int(self.matrix.filter(pl.col("changed"))["count"].sum())


def compare(actions: pl.DataFrame, rows: pl.DataFrame, current: pl.DataFrame, run: str, policy: Policy,
            run_policy: Policy, start: datetime, end: datetime) -> Comparison:
    """Compare simulated `rows` (from `replay_window`) with the stored run's frame `current`.

    `actions` is every stored action (the action columns of `decisions_frame`); the simulation's frame is
    its rows in the window with the simulated decisions.
    """
    simulated = actions.join(rows, on="seq", how="inner").sort("seq")
    before = in_window(current, (start, end))
    rates = pl.concat([decision_rates(before).with_columns(run=pl.lit(run)),
                       decision_rates(simulated).with_columns(run=pl.lit("simulated"))])
    firing = rule_firing(simulated, policy)
    old = rule_firing(before, run_policy).select("rule", fired_run="fired")
    rules = (firing.select("rule", "action", "mode", fired_simulated="fired")
             .join(old, on="rule", how="full", coalesce=True, maintain_order="left")
             .with_columns(pl.col("fired_run", "fired_simulated").fill_null(0))
             .with_columns(change=pl.col("fired_simulated") - pl.col("fired_run"))
             .select("rule", "action", "mode", "fired_run", "fired_simulated", "change"))
    return Comparison(run=run, policy_name=policy.name, start=start, end=end, actions=simulated.height,
                      rates=rates, matrix=transition_matrix(before, simulated), rules=rules, firing=firing,
                      smell=smell_test(simulated))


def save_run(db: Path, text: str, name: str, *, replace: bool = False) -> dict[str, Any]:
    """Replay `text` over the whole store as run `name` with `gatekit replay`, in its own process, and
    return the run as `gatekit replay --json` prints it. Raises `GatekitError` with the command's message."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:80] or "policy"
    with tempfile.TemporaryDirectory(prefix="gatekit-simulate-") as tmp:
        path = Path(tmp) / f"{slug}.yaml"
        path.write_text(text, encoding="utf-8")
        cmd = [sys.executable, "-m", "gatekit.cli", "replay", "--db", str(db), "--policy", str(path),
               "--name", name, "--json", "--quiet", *(["--replace"] if replace else [])]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=SAVE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise GatekitError(f"`gatekit replay` did not finish within {SAVE_TIMEOUT_S:g}s") from exc
    if done.returncode != 0:
        message = done.stderr.strip().replace(str(path), "policy.yaml") or f"exit code {done.returncode}"
        raise GatekitError(message)
    return json.loads(done.stdout)
