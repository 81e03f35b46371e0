"""Would-be decisions of a run: rates with Wilson intervals, rule firing, workload forecast and smell test.

Every function takes a run's frames (`gatekit.run.Run.frame`) and returns a tidy polars frame; the work is
polars expressions over whole columns, never a Python loop over actions. `summarize_rates` takes the run.

>>> rates = decision_rates(load_run(store, "starter").frame, by="tool")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import polars as pl

from gatekit.policy import Policy
from gatekit.policy.conditions import WEEKDAYS
from gatekit.policy.model import VERDICTS
from gatekit.policy.timezones import CYCLE_US, offsets
from gatekit.run import Run

__all__ = [
    "BY_KEYS", "DECISIONS", "SMELL_THRESHOLD", "Z95", "RatesSummary", "decision_rates", "escalation_rate_by",
    "local_time", "rates_of_counts", "records", "routine_escalations", "routine_of_counts", "routine_tools", "rule_firing",
    "rule_firing_of_counts", "smell_of_routine", "smell_test", "summarize_rates", "wilson", "with_time_keys",
    "workload_forecast", "workload_of_counts",
]

DECISIONS = VERDICTS  # ("allow", "escalate", "deny"): the order every frame lists them in
DECISION = pl.Enum(DECISIONS)
WEEKDAY = pl.Enum(WEEKDAYS)
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
# Keys `decision_rates` derives itself; any other column of the frame (tool, agent, tier, ...) works as is.
TIME_KEYS = ("hour", "weekday", "day", "week")
BY_KEYS = ("tool", "agent", "session", "user", "tier", "rule", *TIME_KEYS)
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)
SMELL_THRESHOLD = 0.10  # the seeds' smell test: more than 10-15% of routine actions need a human


# -- building blocks -------------------------------------------------------------------------------------
def wilson(successes: str | pl.Expr, total: str | pl.Expr, z: float = Z95) -> tuple[pl.Expr, pl.Expr]:
    """Wilson score interval of `successes / total` as two expressions (`lower`, `upper`); null when total is 0.

    >>> frame.with_columns(*wilson("escalations", "actions"))
    """
    x = pl.col(successes) if isinstance(successes, str) else successes
    n = pl.col(total) if isinstance(total, str) else total
    x, n = x.cast(pl.Float64), n.cast(pl.Float64)
    p = x / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * (p * (1 - p) / n + z2 / (4 * n * n)).sqrt()
    # exact at the ends (x = 0 gives lower 0, x = n upper 1), where rounding would leave a hair of error
    lower = pl.when(n <= 0).then(None).when(x <= 0).then(0.0).otherwise((centre - half).clip(0.0, 1.0))
    upper = pl.when(n <= 0).then(None).when(x >= n).then(1.0).otherwise((centre + half).clip(0.0, 1.0))
    return lower.alias("lower"), upper.alias("upper")


def local_time(ts: pl.Expr, timezone: str) -> pl.Expr:
    """The naive local time of the instants `ts` in `timezone`, from the policy's one tz database (the pinned
    `tzdata`, `gatekit.policy.timezones.offsets`), so an hour or a day here is the one a policy's `hour` or
    `date` test reads. Not polars' own `convert_time_zone`: its zone data is another release (America/Vancouver
    from late 2026 is an hour off)."""
    table = offsets(timezone)
    starts = pl.Series([start for start, _ in table.rows], dtype=pl.Int64)
    shifts = pl.Series([shift for _, shift in table.rows], dtype=pl.Int64)
    us = ts.dt.epoch("us")
    key = pl.when(us < table.cycle_start_us).then(us).otherwise(
        table.cycle_start_us + (us - table.cycle_start_us) % CYCLE_US)
    row = pl.lit(starts).search_sorted(key, side="right").cast(pl.Int64) - 1  # the last row starting at or before
    return (us + pl.lit(shifts).gather(row)).cast(pl.Datetime("us"))


def with_time_keys(frame: FrameT, timezone: str = "UTC", keys: Sequence[str] = TIME_KEYS) -> FrameT:
    """`frame` plus `hour` (0-23), `weekday` (mon..sun), `day` and `week` (its Monday) of `ts` in `timezone`
    (only those in `keys`), read as the policy reads local time (`local_time`)."""
    local = local_time(pl.col("ts"), timezone)
    exprs = {
        "hour": local.dt.hour(),
        "weekday": local.dt.weekday().replace_strict(range(1, 8), WEEKDAYS, return_dtype=WEEKDAY),
        "day": local.dt.date(),
        "week": local.dt.truncate("1w").dt.date(),
    }
    return frame.with_columns(**{k: e for k, e in exprs.items() if k in keys})


def _keys(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def _grouped(frame: pl.DataFrame, keys: list[str], timezone: str) -> pl.LazyFrame:
    """The keys and the decision only (lazy: polars then reads just these columns): time keys derived,
    `rule` one row per matched rule (null: none)."""
    missing = [k for k in keys if k not in frame.columns and k not in TIME_KEYS and k != "rule"]
    if missing:
        raise ValueError(f"cannot group by `{missing[0]}`: use one of {', '.join(BY_KEYS)} or a column of the frame")
    derived = [k for k in keys if k in TIME_KEYS and k not in frame.columns]
    plain = [k for k in keys if k not in derived and k != "rule"]
    out = frame.lazy().select(*plain, "decision", *(["ts"] if derived else []),
                              *([pl.col("rules").alias("rule")] if "rule" in keys else []))
    if derived:
        out = with_time_keys(out, timezone, derived).drop("ts")
    if "rule" in keys:
        out = out.explode("rule", empty_as_null=True)
    return out


def _with_rate(frame: pl.DataFrame, count: str, total: str) -> pl.DataFrame:
    return frame.with_columns(rate=pl.when(pl.col(total) > 0).then(pl.col(count) / pl.col(total))).with_columns(
        *wilson(count, total))


# -- would-be decisions ----------------------------------------------------------------------------------
def decision_rates(decisions: pl.DataFrame, by: str | Sequence[str] = (), *, timezone: str = "UTC") -> pl.DataFrame:
    """Count, rate and Wilson 95% interval of each decision, overall or per group (all three decisions per
    group, zeros included, so rates sum to 1 within every group).

    `by`: any of `BY_KEYS` or a column of `decisions`. `rule` groups by matched rule: an action counts once
    under each rule it matched, and under a null rule when it matched none. `tier` is null for every action
    not escalated (and for escalations with no tier). Time keys are in `timezone` (the policy's).

    Columns: *by, decision, count, total, rate, lower, upper.

    >>> decision_rates(run.frame, by=["agent", "hour"])
    """
    keys = _keys(by)
    frame = _grouped(decisions, keys, timezone)
    counts = frame.group_by([*keys, "decision"]).agg(count=pl.len().cast(pl.Int64)).collect()
    return rates_of_counts(counts, keys)


def rates_of_counts(counts: pl.DataFrame, by: str | Sequence[str] = ()) -> pl.DataFrame:
    """`decision_rates` from its counts (`*by, decision, count`, the groups that occur): the counts of another
    engine (`gatekit.spark.metrics`) become the same frame."""
    keys = _keys(by)
    counts = counts.select(*keys, pl.col("decision").cast(DECISION), pl.col("count").cast(pl.Int64))
    grid = pl.DataFrame({"decision": DECISIONS}, schema={"decision": DECISION})
    if keys:
        grid = counts.select(keys).unique().join(grid, how="cross")
    out = (grid.join(counts, on=[*keys, "decision"], how="left", nulls_equal=True)
           .with_columns(pl.col("count").fill_null(0)))
    total = pl.col("count").sum().over(keys) if keys else pl.col("count").sum()
    out = _with_rate(out.with_columns(total=total), "count", "total")
    return out.sort([*keys, "decision"], nulls_last=True)


def escalation_rate_by(decisions: pl.DataFrame, by: str | Sequence[str], *, timezone: str = "UTC") -> pl.DataFrame:
    """Per group: actions, escalations, escalation rate and its Wilson interval, most escalations first.

    The `escalate` rows of `decision_rates`, ranked: which tools, agents or hours would cost reviews.

    Columns: *by, actions, escalations, rate, lower, upper.
    """
    keys = _keys(by)
    return (decision_rates(decisions, keys, timezone=timezone)
            .filter(pl.col("decision") == "escalate")
            .select(*keys, actions="total", escalations="count", rate="rate", lower="lower", upper="upper")
            .sort(["escalations", *keys], descending=[True] + [False] * len(keys), nulls_last=True))


def rule_firing(decisions: pl.DataFrame, policy: Policy | None = None) -> pl.DataFrame:
    """How often each rule matched (shadow rules included), errored, and what the matched actions ended as.

    With `policy`, every rule is listed in file order, those that never fire with `fired` 0 (`never_fired`);
    rule ids in the run but not in the policy follow. `rate` is `fired` over all actions.

    Columns: rule, position, action, mode, tier, tools, fired, rate, lower, upper, errored, fired_allow,
    fired_escalate, fired_deny, never_fired.
    """
    fired = (decisions.lazy().select("decision", rule="rules").explode("rule").drop_nulls("rule")
             .group_by("rule").agg(
                 fired=pl.len().cast(pl.Int64),
                 **{f"fired_{d}": (pl.col("decision") == d).sum().cast(pl.Int64) for d in DECISIONS})
             .collect())
    errored = (decisions.lazy().select(rule="errors").explode("rule").drop_nulls("rule")
               .group_by("rule").agg(errored=pl.len().cast(pl.Int64)).collect())
    return rule_firing_of_counts(fired, errored, decisions.height, policy)


def rule_firing_of_counts(fired: pl.DataFrame, errored: pl.DataFrame, total: int,
                          policy: Policy | None = None) -> pl.DataFrame:
    """`rule_firing` from its counts: `fired` (rule, fired, fired_allow, fired_escalate, fired_deny), `errored`
    (rule, errored), over `total` actions."""
    fired = fired.select("rule", *(pl.col(c).cast(pl.Int64) for c in ("fired", *(f"fired_{d}" for d in DECISIONS))))
    errored = errored.select("rule", pl.col("errored").cast(pl.Int64))
    rules = pl.DataFrame({
        "rule": [r.id for r in policy.rules] if policy else [],
        "position": list(range(1, len(policy.rules) + 1)) if policy else [],
        "action": [r.action for r in policy.rules] if policy else [],
        "mode": [r.mode for r in policy.rules] if policy else [],
        "tier": [r.tier for r in policy.rules] if policy else [],
        "tools": [", ".join(r.tools) for r in policy.rules] if policy else [],
    }, schema={"rule": pl.String, "position": pl.Int64, "action": pl.String, "mode": pl.String,
               "tier": pl.String, "tools": pl.String})
    seen = pl.concat([fired.select("rule"), errored.select("rule")]).unique()
    extra = seen.join(rules, on="rule", how="anti").sort("rule")
    rules = pl.concat([rules, extra], how="diagonal")
    out = (rules.join(fired, on="rule", how="left").join(errored, on="rule", how="left")
           .with_columns(pl.col("fired", "errored", *(f"fired_{d}" for d in DECISIONS)).fill_null(0),
                         actions=pl.lit(total, pl.Int64)))
    out = _with_rate(out, "fired", "actions")
    return out.select("rule", "position", "action", "mode", "tier", "tools", "fired", "rate", "lower", "upper",
                      "errored", *(f"fired_{d}" for d in DECISIONS), never_fired=pl.col("fired") == 0)


# -- workload and the smell test -------------------------------------------------------------------------
def workload_forecast(decisions: pl.DataFrame, approvals: pl.DataFrame, *, timezone: str = "UTC",
                      tier_approvals: Mapping[str, int] | None = None) -> pl.DataFrame:
    """What the run's escalations would cost reviewers, as one row.

    `days` is every calendar day from the first action to the last (in `timezone`), quiet days included.
    `reviews` counts one review per escalation, or the tier's `approvals` when `tier_approvals` names it.
    `median_review_s` is the median `latency_s` (requested to decided) of the recorded approvals: it is
    wall-clock time to a decision, queueing included, so `reviewer_hours_per_week` (reviews a week times
    that median) is an upper estimate of effort. Null when no approval was recorded.

    Columns: days, actions, escalations, escalations_per_day, escalations_per_week, busiest_day,
    busiest_day_escalations, peak_hour, peak_hour_escalations, peak_hour_share, reviews, reviews_per_week,
    median_review_s, reviewer_hours_per_week.
    """
    frame = with_time_keys(decisions.lazy().select("ts", "decision", "tier"), timezone, ("hour", "day"))
    esc = (frame.filter(pl.col("decision") == "escalate").group_by("tier", "hour", "day")
           .agg(n=pl.len().cast(pl.Int64)).collect())
    first, last = frame.select(first=pl.col("day").min(), last=pl.col("day").max()).collect().row(0)
    latencies = approvals.filter(pl.col("latency_s").is_not_null() & (pl.col("latency_s") >= 0))["latency_s"]
    median = latencies.median() if latencies.len() else None
    return workload_of_counts(esc, first, last, decisions.height, median, tier_approvals=tier_approvals)


def workload_of_counts(esc: pl.DataFrame, first: date | None, last: date | None, actions: int,
                       median_review_s: float | None, *,
                       tier_approvals: Mapping[str, int] | None = None) -> pl.DataFrame:
    """`workload_forecast` from its counts: `esc` (tier, hour, day, n: the escalations of each), the first and
    last day of the log (local), the number of actions and the median review latency (None: none recorded)."""
    median = median_review_s
    days = (last - first).days + 1 if first is not None and last is not None else 0
    by_day = esc.group_by("day").agg(n=pl.col("n").sum()).sort(["n", "day"], descending=[True, False])
    by_hour = esc.group_by("hour").agg(n=pl.col("n").sum()).sort(["n", "hour"], descending=[True, False])
    weights = tier_approvals or {}
    reviews = esc.select((pl.col("tier").replace_strict(
        list(weights), list(weights.values()), default=1, return_dtype=pl.Int64) * pl.col("n")).sum()).item() \
        if esc.height else 0
    n_esc = int(esc["n"].sum()) if esc.height else 0
    weeks = days / 7 if days else None
    per_week = reviews / weeks if weeks else None
    row = {
        "days": days,
        "actions": actions,
        "escalations": n_esc,
        "escalations_per_day": n_esc / days if days else None,
        "escalations_per_week": n_esc / weeks if weeks else None,
        "busiest_day": by_day["day"][0] if by_day.height else None,
        "busiest_day_escalations": int(by_day["n"][0]) if by_day.height else 0,
        "peak_hour": int(by_hour["hour"][0]) if by_hour.height else None,
        "peak_hour_escalations": int(by_hour["n"][0]) if by_hour.height else 0,
        "peak_hour_share": by_hour["n"][0] / n_esc if n_esc else None,
        "reviews": int(reviews),
        "reviews_per_week": per_week,
        "median_review_s": float(median) if median is not None else None,
        "reviewer_hours_per_week": per_week * median / 3600 if per_week is not None and median is not None else None,
    }
    return pl.DataFrame([row], schema={
        "days": pl.Int64, "actions": pl.Int64, "escalations": pl.Int64, "escalations_per_day": pl.Float64,
        "escalations_per_week": pl.Float64, "busiest_day": pl.Date, "busiest_day_escalations": pl.Int64,
        "peak_hour": pl.Int64, "peak_hour_escalations": pl.Int64, "peak_hour_share": pl.Float64,
        "reviews": pl.Int64, "reviews_per_week": pl.Float64, "median_review_s": pl.Float64,
        "reviewer_hours_per_week": pl.Float64})


def routine_tools(frame: pl.DataFrame) -> list[str]:
    """The tools whose recorded history never involved a human: no call carried an approval and none was
    `denied`. These are the calls the recorded process already trusted (reads, routine writes).

    `blocked` (the recorded world's own rate limiter or DLP proxy) does not count against a tool: a limiter
    stopping a burst says nothing about the ordinary call. Works on any frame with tool, approvals, outcome.
    """
    return (frame.lazy().select("tool", reviewed=pl.col("approvals") > 0, denied=pl.col("outcome") == "denied")
            .group_by("tool").agg(pl.col("reviewed").any(), pl.col("denied").any())
            .filter(~pl.col("reviewed") & ~pl.col("denied")).sort("tool").collect()["tool"].to_list())


def routine_escalations(decisions: pl.DataFrame, routine: Sequence[str] | None = None) -> pl.DataFrame:
    """Per routine tool (`routine_tools` unless given): actions, escalations, rate and Wilson interval.

    Columns: tool, actions, escalations, rate, lower, upper.
    """
    tools = list(routine) if routine is not None else routine_tools(decisions)
    out = (decisions.lazy().select("tool", escalated=pl.col("decision") == "escalate")
           .filter(pl.col("tool").is_in(tools)).group_by("tool")
           .agg(actions=pl.len().cast(pl.Int64), escalations=pl.col("escalated").sum().cast(pl.Int64)).collect())
    return routine_of_counts(out)


def routine_of_counts(per_tool: pl.DataFrame) -> pl.DataFrame:
    """`routine_escalations` from its counts (tool, actions, escalations: the routine tools only)."""
    out = per_tool.select("tool", pl.col("actions").cast(pl.Int64), pl.col("escalations").cast(pl.Int64))
    return _with_rate(out, "escalations", "actions").sort("tool")


def smell_test(decisions: pl.DataFrame, *, threshold: float = SMELL_THRESHOLD,
               routine: Sequence[str] | None = None) -> pl.DataFrame:
    """The seeds' smell test as one row: `flagged` when more than `threshold` of routine actions (those of
    `routine_tools`, unless `routine` names them) would be escalated to a human.

    Columns: tools (how many routine tools), routine_actions, escalations, rate, lower, upper, threshold,
    flagged.
    """
    return smell_of_routine(routine_escalations(decisions, routine), threshold=threshold)


def smell_of_routine(per_tool: pl.DataFrame, *, threshold: float = SMELL_THRESHOLD) -> pl.DataFrame:
    """`smell_test` from `routine_escalations`'s frame."""
    out = per_tool.select(tools=pl.len().cast(pl.Int64), routine_actions=pl.col("actions").sum(),
                          escalations=pl.col("escalations").sum())
    out = _with_rate(out, "escalations", "routine_actions")
    return out.with_columns(threshold=pl.lit(threshold, pl.Float64),
                            flagged=pl.col("rate").fill_null(0.0) > threshold)


# -- the run, for the report -----------------------------------------------------------------------------
def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A (small, aggregated) frame as JSON-ready rows: dates as ISO text, NaN and infinities as null."""
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dicts()]


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


@dataclass(frozen=True)
class RatesSummary:
    """Would-be decisions of one run: the frames the report shows, and its headline numbers."""

    run: str
    policy_name: str
    actions: int
    decisions: dict[str, int]
    overall: pl.DataFrame
    by: dict[str, pl.DataFrame]
    rule_firing: pl.DataFrame
    never_fired: tuple[str, ...]
    workload: pl.DataFrame
    routine_tools: tuple[str, ...]
    routine: pl.DataFrame
    smell: pl.DataFrame
    timezone: str = "UTC"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "policy": self.policy_name,
            "timezone": self.timezone,
            "actions": self.actions,
            "decisions": dict(self.decisions),
            "rates": records(self.overall),
            "by": {key: records(frame) for key, frame in self.by.items()},
            "rule_firing": records(self.rule_firing),
            "never_fired": list(self.never_fired),
            "workload": records(self.workload)[0],
            "smell_test": {**records(self.smell)[0], "routine_tools": list(self.routine_tools),
                           "by_tool": records(self.routine)},
        }


def summarize_rates(run: Run, *, by: Sequence[str] = ("tool", "agent", "rule", "tier", "hour", "weekday", "day"),
                    threshold: float = SMELL_THRESHOLD, routine: Sequence[str] | None = None) -> RatesSummary:
    """Every would-be-decision metric of `run`, for the report.

    >>> summarize_rates(load_run(store, "starter")).to_dict()["decisions"]
    {'allow': 17893, 'escalate': 1935, 'deny': 172}
    """
    policy, frame, approvals = run.policy, run.frame, run.approvals
    tz = policy.timezone
    firing = rule_firing(frame, policy)
    tools = list(routine) if routine is not None else routine_tools(frame)
    counts = frame["decision"].value_counts()
    return RatesSummary(
        run=run.name,
        policy_name=policy.name,
        actions=frame.height,
        decisions={d: int(counts.filter(pl.col("decision") == d)["count"].sum()) for d in DECISIONS},
        overall=decision_rates(frame, timezone=tz),
        by={key: decision_rates(frame, key, timezone=tz) for key in by},
        rule_firing=firing,
        never_fired=tuple(firing.filter(pl.col("never_fired"))["rule"].to_list()),
        workload=workload_forecast(frame, approvals, timezone=tz,
                                   tier_approvals={t.name: t.approvals for t in policy.tiers.values()}),
        routine_tools=tuple(tools),
        routine=routine_escalations(frame, tools),
        smell=smell_test(frame, threshold=threshold, routine=tools),
        timezone=tz,
    )
