"""The report's metrics computed in Spark: decision rates (by tool, agent, rule, tier, hour, weekday, day), rule
firing, the workload forecast and the smell test, the A-vs-B transition matrix with the rules behind each cell,
and the label evaluation.

Spark aggregates; only the small results come back (through Arrow, as polars frames), and the metrics' own
`*_of_counts` functions turn them into the very frames the DuckDB report shows: the same summaries
(`RatesSummary`, `Evaluation`, `DiffSummary`), rendered by the same `gatekit.report` renderers. No per-action
row is ever collected.

>>> spark = session()
>>> rep = spark_report(spark, read_actions(spark, "logs/"), load_policy("policy.yaml"))
>>> print(render_text(rep))

What needs a store's other tables is left out and named in `SparkReport.omitted`: drift (argument values
against the approved history), reviewer fatigue and control failures (the approvals' records), the median
review time of the workload forecast and the threshold sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import polars as pl
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from gatekit.metrics.diff import EXAMPLES, DiffSummary, matrix_of_counts, policy_diff, rules_of_counts
from gatekit.metrics.evaluate import Evaluation, rule_scores_of_counts, scores_of_counts, session_scores_of_counts
from gatekit.metrics.rates import (
    DECISIONS, SMELL_THRESHOLD, RatesSummary, rates_of_counts, routine_of_counts, rule_firing_of_counts,
    smell_of_routine, workload_of_counts,
)
from gatekit.policy.model import Policy
from gatekit.policy.semantics import WEEKDAYS
from gatekit.spark.engine import decide_frame, normalise

__all__ = ["OMITTED", "SparkReport", "SparkRun", "decided_actions", "spark_diff", "spark_evaluation",
           "spark_rates", "spark_report"]

BY = ("tool", "agent", "rule", "tier", "hour", "weekday", "day")
_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
# the report's sections Spark does not compute, and why (said in the text, the JSON and docs/spark.md)
OMITTED = {
    "drift": "needs the approved history's argument values (a DuckDB store)",
    "fatigue": "needs the recorded approvals' reviewers and times (a DuckDB store)",
    "controls": "needs the recorded approvals and evidence hashes (a DuckDB store)",
    "errors": "the messages of evaluation errors are in the decisions' `error_details` (replay --engine spark)",
    "median review time": "needs the recorded approvals' latencies (a DuckDB store)",
    "threshold sweep": "not computed on Spark",
}


def _to_polars(frame: DataFrame) -> pl.DataFrame:
    """A small aggregated Spark frame as polars, through Arrow."""
    return pl.from_arrow(frame.toArrow())  # type: ignore[return-value]


# ---- the decided actions -------------------------------------------------------------------------------
def decided_actions(policy: Policy, actions: DataFrame, decisions: DataFrame | None = None) -> DataFrame:
    """The actions that keep the contract (`read_actions`' rows with `reason` NULL), each with its decision
    (`decide_frame`, or `decisions` already written by `replay --engine spark`, joined on action_id), and the
    keys the metrics group by: `hour`, `weekday`, `day` of its local time in the policy's timezone (the Spark
    backend's own reading, `normalise`'s `lt_us`).

    Columns: seq, action_id, tool, agent, session, label, outcome, approvals, decision, rules, errors, tier,
    hour, weekday, day.
    """
    good = actions.where("reason IS NULL").drop("raw", "reason")
    local = normalise(good, policy).select("seq", "lt_us")
    base = good.select("seq", "action_id", "tool", "agent", "session", "label", "outcome", "approvals")
    if decisions is None:
        decided = decide_frame(policy, good).select("seq", "decision", "rules", "errors", "tier")
        out = base.join(decided, "seq")
    else:
        out = base.join(decisions.select("action_id", "decision", "rules", "errors", "tier"), "action_id")
    days = F.floor(F.col("lt_us") / F.lit(_DAY_US)).cast("int")
    weekday = F.element_at(F.array(*(F.lit(w) for w in WEEKDAYS)), (F.pmod(days + F.lit(3), F.lit(7)) + 1).cast("int"))
    return (out.join(local, "seq")
            .withColumn("hour", F.floor(F.pmod(F.col("lt_us"), F.lit(_DAY_US)) / F.lit(_HOUR_US)).cast("int"))
            .withColumn("weekday", weekday)
            .withColumn("day", F.date_from_unix_date(days))
            .drop("lt_us"))


@dataclass(frozen=True)
class SparkRun:
    """What the report says of a Spark replay's run: the policy, the input and the decisions' counts."""

    name: str
    policy: Policy
    source: str
    actions: int
    decisions: dict[str, int]
    errored: int
    master: str | None = None

    @property
    def policy_name(self) -> str:
        return self.policy.name

    def rate(self, decision: str) -> float:
        return self.decisions.get(decision, 0) / self.actions if self.actions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "engine": "spark", "policy_name": self.policy.name,
                "fingerprint": self.policy.fingerprint, "source": self.source, "actions": self.actions,
                **{d: self.decisions.get(d, 0) for d in DECISIONS}, "errored": self.errored}


def _run(frame: DataFrame, policy: Policy, source: str, name: str | None = None) -> SparkRun:
    row = frame.agg(F.count(F.lit(1)).alias("n"), F.sum(F.when(F.size("errors") > 0, 1).otherwise(0)).alias("e"),
                    *(F.sum(F.when(F.col("decision") == d, 1).otherwise(0)).alias(d) for d in DECISIONS)).first()
    assert row is not None
    return SparkRun(name=name or policy.name, policy=policy, source=source, actions=int(row["n"]),
                    decisions={d: int(row[d] or 0) for d in DECISIONS}, errored=int(row["e"] or 0))


# ---- rates ---------------------------------------------------------------------------------------------
def _key_frame(frame: DataFrame, key: str) -> DataFrame:
    if key == "rule":
        return frame.select(F.explode_outer("rules").alias("rule"), "decision")
    return frame.select(key, "decision")


_KEY_TYPES = {"hour": pl.Int8, "weekday": pl.Enum(WEEKDAYS), "day": pl.Date}


def spark_rates(frame: DataFrame, run: SparkRun, *, by: tuple[str, ...] = BY,
                threshold: float = SMELL_THRESHOLD) -> RatesSummary:
    """`summarize_rates` of `decided_actions`' frame, aggregated in Spark. The workload forecast has no median
    review time (the approvals' latencies are a store's), so no reviewer hours."""
    policy = run.policy

    def rates(keys: tuple[str, ...]) -> pl.DataFrame:
        src = _key_frame(frame, keys[0]) if keys else frame.select("decision")
        counts = _to_polars(src.groupBy(*keys, "decision").agg(F.count(F.lit(1)).alias("count")))
        counts = counts.with_columns(pl.col(k).cast(_KEY_TYPES[k]) for k in keys if k in _KEY_TYPES)
        return rates_of_counts(counts, list(keys))

    fired = _to_polars(frame.select(F.explode("rules").alias("rule"), "decision").groupBy("rule").agg(
        F.count(F.lit(1)).alias("fired"),
        *(F.sum(F.when(F.col("decision") == d, 1).otherwise(0)).alias(f"fired_{d}") for d in DECISIONS)))
    errored = _to_polars(frame.select(F.explode("errors").alias("rule")).groupBy("rule")
                         .agg(F.count(F.lit(1)).alias("errored")))
    firing = rule_firing_of_counts(fired, errored, run.actions, policy)
    esc = _to_polars(frame.where("decision = 'escalate'").groupBy("tier", "hour", "day")
                     .agg(F.count(F.lit(1)).alias("n"))).with_columns(pl.col("hour").cast(pl.Int8))
    first, last = frame.agg(F.min("day"), F.max("day")).first() or (None, None)
    workload = workload_of_counts(esc, first, last, run.actions, None,
                                  tier_approvals={t.name: t.approvals for t in policy.tiers.values()})
    per_tool = _to_polars(frame.groupBy("tool").agg(
        F.bool_or(F.col("approvals") > 0).alias("reviewed"),
        F.bool_or(F.coalesce(F.col("outcome") == "denied", F.lit(False))).alias("denied"),
        F.count(F.lit(1)).alias("actions"),
        F.sum(F.when(F.col("decision") == "escalate", 1).otherwise(0)).alias("escalations")))
    routine = per_tool.filter(~pl.col("reviewed") & ~pl.col("denied"))
    per_routine = routine_of_counts(routine.select("tool", "actions", "escalations"))
    return RatesSummary(
        run=run.name, policy_name=policy.name, actions=run.actions, decisions=dict(run.decisions),
        overall=rates(()), by={key: rates((key,)) for key in by}, rule_firing=firing,
        never_fired=tuple(firing.filter(pl.col("never_fired"))["rule"].to_list()),
        workload=workload, routine_tools=tuple(sorted(routine["tool"].to_list())), routine=per_routine,
        smell=smell_of_routine(per_routine, threshold=threshold), timezone=policy.timezone)


def n(cond: Any) -> Any:
    """How many rows `cond` holds for."""
    return F.sum(F.when(cond, 1).otherwise(0))


# ---- labels --------------------------------------------------------------------------------------------
def _scores() -> list[Any]:
    harmful = F.coalesce(F.col("label") == "harmful", F.lit(False))
    benign = F.coalesce(F.col("label") == "benign", F.lit(False))
    stopped = F.col("decision").isin("escalate", "deny")
    return [F.count(F.lit(1)).alias("actions"), n(harmful).alias("harmful"), n(harmful & stopped).alias("caught"),
            n(benign).alias("benign"), n(benign & stopped).alias("bothered")]


def spark_evaluation(frame: DataFrame, run: SparkRun) -> Evaluation:
    """`evaluate` of `decided_actions`' frame (the actions' `label`), aggregated in Spark; no threshold sweep."""
    overall = _to_polars(frame.agg(*_scores()))
    by_tool = _to_polars(frame.groupBy("tool").agg(*_scores()))
    by_rule = _to_polars(frame.select(F.explode("rules").alias("rule"), "label", "decision")
                         .groupBy("rule").agg(*_scores()))
    harmful = F.coalesce(F.col("label") == "harmful", F.lit(False))
    benign = F.coalesce(F.col("label") == "benign", F.lit(False))
    stopped = F.col("decision").isin("escalate", "deny")
    per = (frame.withColumn("alone", F.when(F.col("session").isNull(), F.col("action_id")))
           .groupBy("session", "alone")
           .agg(F.bool_or(harmful).alias("harm"), F.bool_or(harmful & stopped).alias("caught"),
                F.bool_or(benign).alias("benign"), F.bool_or(benign & stopped).alias("bothered")))
    sessions = _to_polars(per.agg(
        F.count(F.lit(1)).alias("sessions"), n(F.col("harm")).alias("harmful_sessions"),
        n(F.col("caught")).alias("caught_sessions"), n(F.col("benign") & ~F.col("harm")).alias("benign_sessions"),
        n(F.col("bothered") & ~F.col("harm")).alias("bothered_sessions")))
    return Evaluation(run=run.name, overall=scores_of_counts(overall), by_tool=scores_of_counts(by_tool, ["tool"]),
                      by_rule=rule_scores_of_counts(by_rule, [r.id for r in run.policy.rules]),
                      sessions=session_scores_of_counts(sessions))


# ---- A against B ---------------------------------------------------------------------------------------
def spark_diff(frame_a: DataFrame, run_a: SparkRun, frame_b: DataFrame, run_b: SparkRun, *,
               examples: int = EXAMPLES) -> DiffSummary:
    """`summarize_diff` of two `decided_actions` frames of the same actions (paired on action_id): the
    transition matrix with the rules behind each cell and its first `examples` action ids in log order."""
    a = frame_a.select("seq", "action_id", F.col("decision").alias("from"), F.col("rules").alias("rules_a"))
    b = frame_b.select("action_id", F.col("decision").alias("to"), F.col("rules").alias("rules_b"))
    paired = (a.join(b, "action_id")
              .withColumn("added", F.array_except("rules_b", "rules_a"))
              .withColumn("removed", F.array_except("rules_a", "rules_b")))
    cells = _to_polars(paired.groupBy("from", "to").agg(F.count(F.lit(1)).alias("count")))
    first = _to_polars(paired.withColumn("n", F.row_number().over(Window.partitionBy("from", "to").orderBy("seq")))
        .where(F.col("n") <= examples).select("from", "to", "n", "action_id"))
    ex = first.sort("n").group_by("from", "to", maintain_order=True).agg(examples=pl.col("action_id"))
    cells = cells.join(ex, on=["from", "to"], how="left").with_columns(
        pl.col("examples").fill_null(pl.lit([], pl.List(pl.String))))
    parts = [paired.select("from", "to", F.explode(change).alias("rule")).groupBy("from", "to", "rule")
             .agg(F.count(F.lit(1)).alias("count")).withColumn("change", F.lit(change))
             for change in ("added", "removed")]
    rules = rules_of_counts(_to_polars(parts[0].unionByName(parts[1])))
    total = int(cells["count"].sum()) if cells.height else 0
    matrix = matrix_of_counts(cells, rules, total)
    return DiffSummary(
        run_a=run_a.name, run_b=run_b.name, policy_a=run_a.policy.name, policy_b=run_b.policy.name,
        actions=total, only_a=run_a.actions - total, only_b=run_b.actions - total,
        changed=int(matrix.filter(pl.col("changed"))["count"].sum()),
        decisions_a=dict(run_a.decisions), decisions_b=dict(run_b.decisions), matrix=matrix, rules=rules,
        policy_diff=policy_diff(run_a.policy, run_b.policy))


# ---- the report ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SparkReport:
    """The report's sections Spark computes (rates, labels, A against B), rendered by `gatekit.report`'s
    `render_text`, `render_html` and `to_dict` as the DuckDB report is; `omitted` names the rest and why."""

    run: SparkRun
    rates: RatesSummary
    evaluation: Evaluation
    diff: DiffSummary | None = None
    omitted: dict[str, str] = field(default_factory=lambda: dict(OMITTED))

    @property
    def title(self) -> str:
        return f"policy `{self.run.policy.name}` on Spark"

    def header_lines(self) -> list[str]:
        from gatekit.numbers import count, percent

        r = self.run
        out = [f"spark: policy `{r.policy.name}` over `{r.source}`, {count(r.actions)} actions",
               "would-be decisions: " + ", ".join(f"{k} {count(v)} ({percent(r.rate(k))})"
                                                  for k, v in r.decisions.items())]
        if r.errored:
            out.append(f"  {count(r.errored)} actions hit a rule that could not be evaluated")
        return out

    def footer_lines(self) -> list[str]:
        return ["not computed on Spark: " + "; ".join(f"{k} ({v})" for k, v in self.omitted.items())]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.to_dict(), "engine": "spark",
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "decisions": dict(self.run.decisions), "rates": self.rates.to_dict(),
            "evaluate": self.evaluation.to_dict(), "diff": self.diff.to_dict() if self.diff else None,
            "omitted": dict(self.omitted),
        }


def spark_report(spark: SparkSession, actions: DataFrame, policy: Policy, *, against: Policy | None = None,
                 decisions: DataFrame | None = None, source: str = "") -> SparkReport:
    """The report of `policy` over `actions` (`read_actions`' frame), every metric aggregated in Spark; with
    `against`, also policy A (`against`) against B (`policy`) on the same actions. `decisions`: the output of
    `replay --engine spark` for `policy`, read instead of deciding again."""
    del spark  # the frames carry their session; taken for symmetry with `replay_spark`
    actions = actions.cache()
    try:
        b = decided_actions(policy, actions, decisions).cache()
        run_b = _run(b, policy, source)
        rates = spark_rates(b, run_b)
        evaluation = spark_evaluation(b, run_b)
        diff = None
        if against is not None:
            a = decided_actions(against, actions).cache()
            run_a = _run(a, against, source, name=against.name if against.name != policy.name else "A")
            diff = spark_diff(a, run_a, b, run_b)
            a.unpersist()
        b.unpersist()
    finally:
        actions.unpersist()
    return SparkReport(run=run_b, rates=rates, evaluation=evaluation, diff=diff)
