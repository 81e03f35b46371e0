"""Drift: how behaviour, execution and the policy's reach change over time.

(a) behaviour between two time windows: tool mix (PSI), new and vanished tools, the numeric arguments the
policy tests, and the would-be escalation rate; (b) execution drift: approved actions whose executed hash is
not the reviewed one; (c) coverage: tools and agents no rule looks at; (d) each rule's firing rate over time.

A window is a half-open `[start, end)` pair of aware datetimes; `split_halves` and `split_weeks` cut a
frame's span into windows and `in_window` selects one.

>>> first, second = split_halves(frame)
>>> tool_mix_psi(in_window(frame, first), in_window(frame, second))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from gatekit.metrics.rates import records, rule_firing, wilson, with_time_keys
from gatekit.policy import Policy
from gatekit.policy.conditions import ORDER_OPS, Test, Window, leaves
from gatekit.policy.timezones import zone
from gatekit.policy.values import compile_re2
from gatekit.run import Run

__all__ = [
    "PSI_EPSILON", "DriftSummary", "Span", "argument_values", "coverage", "escalation_rate_change",
    "execution_drift", "execution_drift_actions", "in_window", "numeric_drift", "numeric_fields", "rule_drift",
    "psi_band", "rule_rate_change", "split_halves", "split_weeks", "summarize_drift", "tool_mix_psi",
]

Span = tuple[datetime, datetime]  # [start, end)
# A tool absent from one window has share 0 there, and PSI's log would be infinite: shares are floored at
# PSI_EPSILON (both in the difference and in the log), so a new tool with share s adds (s - e) * ln(s / e).
PSI_EPSILON = 1e-4
PSI_BANDS = ((0.1, "stable"), (0.25, "moderate"))  # above the last: "major" (the usual credit-risk reading)
_SQRT2 = math.sqrt(2.0)


# -- windows ---------------------------------------------------------------------------------------------
def _bounds(frame: pl.DataFrame, timezone: str) -> tuple[datetime, datetime] | None:
    if frame.height == 0:
        return None
    lo, hi = frame.select(lo=pl.col("ts").min(), hi=pl.col("ts").max()).row(0)
    tz = zone(timezone)
    start = lo.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    end = hi.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return start, end


def split_halves(frame: pl.DataFrame, *, timezone: str = "UTC") -> list[Span]:
    """The frame's span cut in two at a day boundary (midnight in `timezone`): `[first day, middle)` and
    `[middle, day after the last)`; a single day is cut at noon. Empty frame: no windows."""
    bounds = _bounds(frame, timezone)
    if bounds is None:
        return []
    start, end = bounds
    days = (end.date() - start.date()).days
    middle = start + (timedelta(days=days // 2) if days > 1 else timedelta(hours=12))
    return [(start, middle), (middle, end)]


def split_weeks(frame: pl.DataFrame, *, timezone: str = "UTC") -> list[Span]:
    """One window per calendar week (Monday 00:00 in `timezone`) from the first action's to the last's."""
    bounds = _bounds(frame, timezone)
    if bounds is None:
        return []
    start, end = bounds
    start -= timedelta(days=start.weekday())
    out = []
    while start < end:
        out.append((start, start + timedelta(days=7)))
        start += timedelta(days=7)
    return out


def in_window(frame: pl.DataFrame, window: Span) -> pl.DataFrame:
    """The rows of `frame` with `ts` in `[start, end)` (a naive datetime is taken as UTC)."""
    tz = frame.schema["ts"].time_zone or "UTC"  # type: ignore[union-attr]
    start, end = (pl.lit(w if w.tzinfo else w.replace(tzinfo=ZoneInfo("UTC"))).dt.convert_time_zone(tz)
                  for w in window)
    return frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))


# -- (a) behaviour drift ---------------------------------------------------------------------------------
def tool_mix_psi(frame_a: pl.DataFrame, frame_b: pl.DataFrame, *, by: str = "tool",
                 epsilon: float = PSI_EPSILON) -> pl.DataFrame:
    """Each tool's (or `by`'s: agent, ...) share of calls in window A and B and its term of the population
    stability index (the terms sum to the PSI); `status` is `new` (only in B), `vanished` (only in A) or
    `both`. Shares are floored at `epsilon` (see PSI_EPSILON).

    Columns: <by>, count_a, count_b, share_a, share_b, psi, status.
    """
    a = frame_a.lazy().group_by(by).agg(count_a=pl.len().cast(pl.Int64)).collect()
    b = frame_b.lazy().group_by(by).agg(count_b=pl.len().cast(pl.Int64)).collect()
    out = (a.join(b, on=by, how="full", coalesce=True, nulls_equal=True)
           .with_columns(pl.col("count_a", "count_b").fill_null(0)))
    na, nb = frame_a.height, frame_b.height
    sa = pl.col("count_a") / na if na else pl.lit(None, pl.Float64)
    sb = pl.col("count_b") / nb if nb else pl.lit(None, pl.Float64)
    out = out.with_columns(share_a=sa, share_b=sb)
    fa, fb = pl.max_horizontal("share_a", pl.lit(epsilon)), pl.max_horizontal("share_b", pl.lit(epsilon))
    return out.with_columns(
        psi=(fb - fa) * (fb / fa).log() if na and nb else pl.lit(None, pl.Float64),
        status=pl.when(pl.col("count_a") == 0).then(pl.lit("new"))
        .when(pl.col("count_b") == 0).then(pl.lit("vanished")).otherwise(pl.lit("both")),
    ).sort(by, nulls_last=True)


def numeric_fields(policy: Policy) -> dict[str, list[str]]:
    """The args/context fields the policy compares as numbers (order tests, numeric operands of eq / ne /
    in / not_in, `sum` fields), each with the ids of the rules that test it, in file order."""
    out: dict[str, list[str]] = {}
    for rule in policy.rules:
        for leaf in leaves(rule.when):
            name = None
            if isinstance(leaf, Window) and leaf.field is not None:
                name = leaf.field.name
            elif isinstance(leaf, Test) and leaf.field.root in ("args", "context"):
                operands = leaf.operand if isinstance(leaf.operand, (list, tuple)) else [leaf.operand]
                numeric = any(isinstance(o, (int, float)) and not isinstance(o, bool) for o in operands)
                if leaf.op in ORDER_OPS or (leaf.op in ("eq", "ne", "in", "not_in") and numeric):
                    name = leaf.field.name
            if name is not None and rule.id not in out.setdefault(name, []):
                out[name].append(rule.id)
    return out


def _tool_rules(policy: Policy, tools: Sequence[str], rule_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """(tool, rule) for every distinct tool a rule's tool pattern matches (RE2, full match)."""
    rows = []
    for rule in policy.rules:
        if rule_ids is not None and rule.id not in rule_ids:
            continue
        regex = compile_re2(rule.tool_regex)
        rows.extend((tool, rule.id) for tool in tools if tool is not None and regex.fullmatch(tool) is not None)
    return pl.DataFrame(rows, schema={"tool": pl.String, "rule": pl.String}, orient="row")


def argument_values(run: Run) -> pl.DataFrame:
    """The numeric values of `numeric_fields(run.policy)`, one row per action and field, for the actions of
    the run whose tool is one a rule testing that field applies to (an amount on a tool no amount rule
    covers is not the policy's business). Values that are not numbers are left out.

    Columns: seq, ts, tool, field, value.
    """
    policy, frame = run.policy, run.frame
    fields = numeric_fields(policy)
    schema = {"seq": pl.Int64, "ts": frame.schema["ts"], "tool": pl.String, "field": pl.String, "value": pl.Float64}
    if not fields:
        return pl.DataFrame(schema=schema)
    tools = frame["tool"].unique().to_list()
    scope = pl.concat([_tool_rules(policy, tools, ids).select("tool").unique().with_columns(field=pl.lit(f))
                       for f, ids in fields.items()])
    calls = frame.select("seq", "ts", "tool").filter(pl.col("tool").is_in(scope["tool"].unique().to_list()))
    values = (calls.join(run.arguments(list(fields)).select("seq", *fields), on="seq")
              .unpivot(index=["seq", "ts", "tool"], variable_name="field", value_name="value")
              .drop_nulls("value"))
    return (values.join(scope, on=["tool", "field"], how="semi")
            .select(list(schema)).sort("field", "tool", "seq"))


def numeric_drift(values_a: pl.DataFrame, values_b: pl.DataFrame) -> pl.DataFrame:
    """Per (field, tool): how the distribution of a tested number moved from window A to B: counts, mean
    and quantiles on each side, and the two-sample Kolmogorov-Smirnov statistic with its asymptotic
    p-value (null when a side is empty).

    Columns: field, tool, n_a, n_b, mean_a, mean_b, p50_a, p50_b, p90_a, p90_b, p99_a, p99_b, ks, ks_p.
    """
    keys = ["field", "tool"]

    def stats(values: pl.DataFrame, side: str) -> pl.DataFrame:
        v = pl.col("value")
        return values.group_by(keys).agg(
            pl.len().cast(pl.Int64).alias(f"n_{side}"), v.mean().alias(f"mean_{side}"),
            *(v.quantile(q, "linear").alias(f"p{round(q * 100)}_{side}") for q in (0.5, 0.9, 0.99)))

    out = stats(values_a, "a").join(stats(values_b, "b"), on=keys, how="full", coalesce=True).with_columns(
        pl.col("n_a", "n_b").fill_null(0))
    both = pl.concat([values_a.select(*keys, "value", a=pl.lit(1), b=pl.lit(0)),
                      values_b.select(*keys, "value", a=pl.lit(0), b=pl.lit(1))])
    # empirical CDFs of both samples at every value, read after the last of a run of equal values
    ecdf = both.sort([*keys, "value"]).with_columns(
        fa=pl.col("a").cum_sum().over(keys) / pl.col("a").sum().over(keys),
        fb=pl.col("b").cum_sum().over(keys) / pl.col("b").sum().over(keys),
        last=pl.col("value") != pl.col("value").shift(-1).over(keys))
    ks = (ecdf.filter(pl.col("last").fill_null(True))
          .group_by(keys).agg(ks=(pl.col("fa") - pl.col("fb")).abs().max()))
    out = out.join(ks, on=keys, how="left").with_columns(
        ks=pl.when((pl.col("n_a") > 0) & (pl.col("n_b") > 0)).then(pl.col("ks")))
    p = [_ks_pvalue(d, na, nb) for d, na, nb in out.select("ks", "n_a", "n_b").iter_rows()]  # one per group
    cols = ["n_a", "n_b", "mean_a", "mean_b", "p50_a", "p50_b", "p90_a", "p90_b", "p99_a", "p99_b", "ks"]
    return out.select(*keys, *cols).with_columns(pl.Series("ks_p", p, pl.Float64)).sort(keys)


def _ks_pvalue(d: float | None, n_a: int, n_b: int) -> float | None:
    """Asymptotic two-sample KS p-value, Q(lambda) with Stephens' small-sample correction."""
    if d is None or not n_a or not n_b:
        return None
    ne = n_a * n_b / (n_a + n_b)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 1e-3:
        return 1.0
    if lam < 1.18:  # the other series of the Kolmogorov distribution converges fast here
        y = math.exp(-math.pi ** 2 / (8 * lam * lam))
        cdf = math.sqrt(2 * math.pi) / lam * (y + y ** 9 + y ** 25 + y ** 49)
        return min(max(1.0 - cdf, 0.0), 1.0)
    x = math.exp(-2 * lam * lam)
    return min(max(2 * (x - x ** 4 + x ** 9 - x ** 16), 0.0), 1.0)


def _rate(x: str, n: str) -> pl.Expr:
    return pl.when(pl.col(n) > 0).then(pl.col(x) / pl.col(n))


def _two_proportion(frame: pl.DataFrame) -> pl.DataFrame:
    """Add change, z and p_value (two-sided, pooled two-proportion z-test) from x_a, n_a, x_b, n_b."""
    xa, na, xb, nb = (pl.col(c).cast(pl.Float64) for c in ("x_a", "n_a", "x_b", "n_b"))
    pooled = (xa + xb) / (na + nb)
    se = (pooled * (1 - pooled) * (1 / na + 1 / nb)).sqrt()
    ok = (na > 0) & (nb > 0)
    out = frame.with_columns(
        change=pl.when(ok).then(xb / nb - xa / na),
        z=pl.when(ok).then(pl.when(se > 0).then((xb / nb - xa / na) / se).otherwise(0.0)))
    p = [None if z is None else math.erfc(abs(z) / _SQRT2) for z in out["z"]]  # one per group, not per action
    return out.with_columns(pl.Series("p_value", p, pl.Float64))


def escalation_rate_change(frame_a: pl.DataFrame, frame_b: pl.DataFrame,
                           by: str | Sequence[str] = ()) -> pl.DataFrame:
    """The would-be escalation rate in window A and B, overall or per group, with a two-proportion z-test.

    Columns: *by, actions_a, escalations_a, rate_a, actions_b, escalations_b, rate_b, change, z, p_value.
    """
    keys = [by] if isinstance(by, str) else list(by)

    def side(frame: pl.DataFrame, s: str) -> pl.DataFrame:
        agg = dict(n=pl.len().cast(pl.Int64), x=pl.col("escalated").sum().cast(pl.Int64))
        lf = frame.lazy().select(*keys, escalated=pl.col("decision") == "escalate")
        out = lf.group_by(keys).agg(**agg) if keys else lf.select(**agg)
        return out.collect().rename({"n": f"n_{s}", "x": f"x_{s}"})

    a, b = side(frame_a, "a"), side(frame_b, "b")
    if keys:
        out = a.join(b, on=keys, how="full", coalesce=True, nulls_equal=True)
    else:
        out = pl.concat([a, b], how="horizontal")
    out = _two_proportion(out.with_columns(pl.col("n_a", "x_a", "n_b", "x_b").fill_null(0)))
    return out.select(*keys, actions_a="n_a", escalations_a="x_a", rate_a=_rate("x_a", "n_a"),
                      actions_b="n_b", escalations_b="x_b", rate_b=_rate("x_b", "n_b"),
                      change="change", z="z", p_value="p_value").sort(keys, nulls_last=True)


# -- (b) execution drift ---------------------------------------------------------------------------------
def _approved(approvals: pl.DataFrame) -> pl.DataFrame:
    """One row per approved action (an `approve` review, outcome `executed`), with its reviewers."""
    return (approvals.filter((pl.col("review") == "approve") & (pl.col("outcome") == "executed"))
            .group_by("seq", maintain_order=True)
            .agg(pl.col("action_id", "ts", "agent", "tool", "evidence_hash", "executed_hash").first(),
                 reviewers=pl.col("reviewer").unique(maintain_order=True))
            .with_columns(verifiable=pl.col("evidence_hash").is_not_null() & pl.col("executed_hash").is_not_null())
            .with_columns(drifted=pl.col("verifiable") & (pl.col("evidence_hash") != pl.col("executed_hash"))))


def execution_drift(approvals: pl.DataFrame, by: str | Sequence[str] = (), *, timezone: str = "UTC") -> pl.DataFrame:
    """Share of approved actions whose `executed_hash` differs from the reviewed `evidence_hash`, overall or
    per group (`tool`, `agent`, `day`, `week`, ...). An approved action is one with an `approve` review and
    outcome `executed`; one missing either hash is not `verifiable` and counts in neither share term.

    Columns: *by, approved, verifiable, drifted, share, lower, upper.
    """
    keys = [by] if isinstance(by, str) else list(by)
    frame = _approved(approvals)
    if any(k in ("hour", "weekday", "day", "week") for k in keys):
        frame = with_time_keys(frame, timezone)
    agg = dict(approved=pl.len().cast(pl.Int64), verifiable=pl.col("verifiable").sum().cast(pl.Int64),
               drifted=pl.col("drifted").sum().cast(pl.Int64))
    out = frame.group_by(keys).agg(**agg) if keys else frame.select(**agg)
    out = out.with_columns(share=pl.when(pl.col("verifiable") > 0).then(pl.col("drifted") / pl.col("verifiable")))
    return out.with_columns(*wilson("drifted", "verifiable")).sort(keys, nulls_last=True)


def execution_drift_actions(approvals: pl.DataFrame) -> pl.DataFrame:
    """The approved actions whose executed hash differs from the reviewed one, in log order.

    Columns: seq, action_id, ts, agent, tool, reviewers, evidence_hash, executed_hash.
    """
    return _approved(approvals).filter("drifted").select(
        "seq", "action_id", "ts", "agent", "tool", "reviewers", "evidence_hash", "executed_hash").sort("seq")


# -- (c) coverage ----------------------------------------------------------------------------------------
def coverage(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Which tools and agents the policy looks at: a tool is covered when some rule's tool pattern (shadow
    rules included) matches it, an agent when some of its calls are to a covered tool. Uncovered ones are
    decided by `default` alone. `rules` lists the rules whose pattern matches, in file order.

    Columns: dimension (tool, agent), name, actions, uncovered_actions, uncovered_share, covered, rules.
    """
    # the (tool, agent) pairs are few: count them once, then everything else works on that small frame
    calls = frame.lazy().group_by("tool", "agent").agg(actions=pl.len().cast(pl.Int64)).collect()
    order = {r.id: i for i, r in enumerate(policy.rules)}
    pairs = _tool_rules(policy, calls["tool"].unique().to_list()).with_columns(
        order=pl.col("rule").replace_strict(order, return_dtype=pl.Int64))
    by_tool = pairs.sort("order").group_by("tool", maintain_order=True).agg(pl.col("rule").alias("rules"))
    calls = calls.join(by_tool, on="tool", how="left", nulls_equal=True).with_columns(
        uncovered=pl.col("rules").is_null())

    def summary(dim: str) -> pl.DataFrame:
        counts = calls.group_by(dim).agg(actions=pl.col("actions").sum(),
                                         uncovered_actions=pl.col("actions").filter("uncovered").sum())
        rules = (calls.select(dim, rule="rules").explode("rule").drop_nulls("rule").unique()
                 .with_columns(order=pl.col("rule").replace_strict(order, return_dtype=pl.Int64))
                 .sort("order").group_by(dim, maintain_order=True).agg(rules=pl.col("rule")))
        return (counts.join(rules, on=dim, how="left", nulls_equal=True)
                .select(dimension=pl.lit(dim), name=pl.col(dim), actions="actions",
                        uncovered_actions="uncovered_actions",
                        uncovered_share=pl.col("uncovered_actions") / pl.col("actions"),
                        covered=pl.col("uncovered_actions") < pl.col("actions"),
                        rules=pl.col("rules").fill_null(pl.lit([], pl.List(pl.String)))))

    return pl.concat([summary("tool"), summary("agent")]).sort("dimension", "name", descending=[True, False],
                                                               nulls_last=True)


# -- (d) rule drift --------------------------------------------------------------------------------------
def _rule_ids(frame: pl.DataFrame, policy: Policy | None) -> list[str]:
    ids = [r.id for r in policy.rules] if policy else []
    seen = frame.lazy().select(pl.col("rules").explode().drop_nulls().unique().sort()).collect()["rules"].to_list()
    return ids + [r for r in seen if r not in ids]


def rule_drift(frame: pl.DataFrame, policy: Policy | None = None, *, every: str = "day",
               timezone: str = "UTC") -> pl.DataFrame:
    """Each rule's firing rate per `day`, `week` or `hour` (in `timezone`): every rule (all of the policy's,
    when given) in every period that has actions, zeros included, so a rule that stops firing shows.

    Columns: rule, period, actions, fired, rate, lower, upper.
    """
    if every not in ("day", "week", "hour"):
        raise ValueError(f"cannot bucket by `{every}`: use hour, day or week")
    timed = with_time_keys(frame.lazy().select("ts", "rules"), timezone, (every,)).select(period=every, rule="rules")
    periods = timed.group_by("period").agg(actions=pl.len().cast(pl.Int64)).collect()
    fired = (timed.explode("rule").drop_nulls("rule")
             .group_by("period", "rule").agg(fired=pl.len().cast(pl.Int64)).collect())
    ids = _rule_ids(frame, policy)
    grid = pl.DataFrame({"rule": ids, "position": range(len(ids))},
                        schema={"rule": pl.String, "position": pl.Int64}).join(periods, how="cross")
    out = grid.join(fired, on=["period", "rule"], how="left").with_columns(pl.col("fired").fill_null(0))
    out = out.with_columns(rate=pl.col("fired") / pl.col("actions")).with_columns(*wilson("fired", "actions"))
    return out.sort("position", "period").select("rule", "period", "actions", "fired", "rate", "lower", "upper")


def rule_rate_change(frame_a: pl.DataFrame, frame_b: pl.DataFrame, policy: Policy | None = None) -> pl.DataFrame:
    """Each rule's firing rate in window A and B with a two-proportion z-test: which rules drift.

    Columns: rule, actions_a, fired_a, rate_a, actions_b, fired_b, rate_b, change, z, p_value.
    """
    a = rule_firing(frame_a, policy).select("rule", x_a="fired").with_columns(n_a=pl.lit(frame_a.height, pl.Int64))
    b = rule_firing(frame_b, policy).select("rule", x_b="fired").with_columns(n_b=pl.lit(frame_b.height, pl.Int64))
    ids = _rule_ids(pl.concat([frame_a.select("rules"), frame_b.select("rules")]), policy)
    out = (pl.DataFrame({"rule": ids}, schema={"rule": pl.String})
           .join(a, on="rule", how="left").join(b, on="rule", how="left")
           .with_columns(pl.col("x_a", "x_b").fill_null(0), n_a=pl.lit(frame_a.height, pl.Int64),
                         n_b=pl.lit(frame_b.height, pl.Int64)))
    out = _two_proportion(out)
    return out.select("rule", actions_a="n_a", fired_a="x_a", rate_a=_rate("x_a", "n_a"),
                      actions_b="n_b", fired_b="x_b", rate_b=_rate("x_b", "n_b"),
                      change="change", z="z", p_value="p_value")


# -- the run, for the report -----------------------------------------------------------------------------
def psi_band(psi: float | None) -> str | None:
    if psi is None:
        return None
    for limit, name in PSI_BANDS:
        if psi < limit:
            return name
    return "major"


def _names(mix: pl.DataFrame, by: str, status: str) -> list[Any]:
    return mix.filter(pl.col("status") == status)[by].to_list()


@dataclass(frozen=True)
class DriftSummary:
    """Drift of one run between two windows, execution drift, coverage and rule drift over time."""

    run: str
    windows: tuple[Span, Span]
    tool_mix: pl.DataFrame
    psi: float | None
    new_tools: tuple[str, ...]
    vanished_tools: tuple[str, ...]
    agent_mix: pl.DataFrame
    agent_psi: float | None
    numeric: pl.DataFrame
    escalation: pl.DataFrame  # one row
    escalation_by_tool: pl.DataFrame
    execution: pl.DataFrame  # one row
    execution_by: dict[str, pl.DataFrame]
    drifted_actions: pl.DataFrame
    coverage: pl.DataFrame
    rule_drift: pl.DataFrame
    rule_change: pl.DataFrame
    every: str = "day"

    def to_dict(self) -> dict[str, Any]:
        uncovered = self.coverage.filter(~pl.col("covered"))
        return {
            "run": self.run,
            "windows": [{"start": s.isoformat(), "end": e.isoformat()} for s, e in self.windows],
            "behaviour": {
                "psi": self.psi, "psi_band": psi_band(self.psi),
                "new_tools": list(self.new_tools), "vanished_tools": list(self.vanished_tools),
                "tool_mix": records(self.tool_mix),
                "agent_psi": self.agent_psi, "agent_psi_band": psi_band(self.agent_psi),
                "new_agents": _names(self.agent_mix, "agent", "new"),
                "vanished_agents": _names(self.agent_mix, "agent", "vanished"),
                "agent_mix": records(self.agent_mix),
                "numeric": records(self.numeric),
                "escalation": records(self.escalation)[0] if self.escalation.height else None,
                "escalation_by_tool": records(self.escalation_by_tool),
            },
            "execution": {
                **(records(self.execution)[0] if self.execution.height else {}),
                "by": {k: records(v) for k, v in self.execution_by.items()},
                "actions": records(self.drifted_actions),
            },
            "coverage": {
                "uncovered_tools": uncovered.filter(pl.col("dimension") == "tool")["name"].to_list(),
                "uncovered_agents": uncovered.filter(pl.col("dimension") == "agent")["name"].to_list(),
                "rows": records(self.coverage),
            },
            "rules": {"every": self.every, "drift": records(self.rule_drift), "change": records(self.rule_change)},
        }


def summarize_drift(run: Run, windows: tuple[Span, Span] | None = None, *, every: str = "day") -> DriftSummary:
    """Every drift metric of `run`; `windows` defaults to the two halves of the log's span.

    >>> summarize_drift(load_run(store, "starter")).to_dict()["behaviour"]["psi"]
    """
    policy, frame, approvals = run.policy, run.frame, run.approvals
    tz = policy.timezone
    if windows is None:
        halves = split_halves(frame, timezone=tz)
        if len(halves) != 2:
            raise ValueError(f"run `{run.name}` has no actions to split into windows")
        windows = (halves[0], halves[1])
    a, b = in_window(frame, windows[0]), in_window(frame, windows[1])
    mix, agents = tool_mix_psi(a, b), tool_mix_psi(a, b, by="agent")
    values = argument_values(run)
    return DriftSummary(
        run=run.name,
        windows=windows,
        tool_mix=mix,
        psi=float(mix["psi"].sum()) if a.height and b.height else None,
        new_tools=tuple(_names(mix, "tool", "new")),
        vanished_tools=tuple(_names(mix, "tool", "vanished")),
        agent_mix=agents,
        agent_psi=float(agents["psi"].sum()) if a.height and b.height else None,
        numeric=numeric_drift(in_window(values, windows[0]), in_window(values, windows[1])),
        escalation=escalation_rate_change(a, b),
        escalation_by_tool=escalation_rate_change(a, b, "tool"),
        execution=execution_drift(approvals),
        execution_by={k: execution_drift(approvals, k, timezone=tz) for k in ("tool", "agent", "day")},
        drifted_actions=execution_drift_actions(approvals),
        coverage=coverage(frame, policy),
        rule_drift=rule_drift(frame, policy, every=every, timezone=tz),
        rule_change=rule_rate_change(a, b, policy),
        every=every,
    )
