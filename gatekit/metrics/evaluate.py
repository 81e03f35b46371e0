"""Scoring a run against ground-truth labels: harm caught versus humans bothered, overall, per tool, per rule
and per session, and the caught-versus-bothered curve of one numeric test's threshold.

An action is *stopped* when the run would escalate or deny it. Of the labelled actions, `harmful` ones
stopped are *caught* (the rest *missed*), `benign` ones stopped *bothered* a human. Any other label,
or none, counts in neither. A rate whose denominator is 0 is null (no evidence), not 0.

>>> with Store("gatekit.duckdb", read_only=True) as store:
...     ev = evaluate(load_run(store, "starter"), sweep=("payments-over-100", "args.amount"))
>>> ev.catch_rate, ev.bother_rate
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from gatekit.errors import InputError
from gatekit.logs.store import Store
from gatekit.metrics.rates import records
from gatekit.policy.compile import compile_sql, lit, number_sql
from gatekit.policy.conditions import ORDER_OPS, All, Any_, Cond, Not, Test, Window, leaves
from gatekit.policy.model import Policy, Rule
from gatekit.policy.semantics import LEVEL, NO_MATCH, VERDICTS, best_level, deciding_level, level_of
from gatekit.run import Run

__all__ = [
    "STOPPED", "Evaluation", "Sweep", "counterfactual_decisions", "evaluate", "label_scores", "rule_scores",
    "rule_scores_of_counts", "scores_of_counts", "session_scores", "session_scores_of_counts", "sweep_threshold",
    "sweepable_tests", "threshold_sweep",
]

STOPPED = ("escalate", "deny")  # a human sees it, or nobody lets it through
_SWEEP_QUANTILES = [i / 20 for i in range(21)]


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num / den).otherwise(None)


def _is_label(label: str) -> pl.Expr:
    return (pl.col("label") == label).fill_null(False)


def _score_exprs(decision: str = "decision") -> list[pl.Expr]:
    harmful, benign = _is_label("harmful"), _is_label("benign")
    stopped = pl.col(decision).is_in(STOPPED)
    return [pl.len().alias("actions"), harmful.sum().alias("harmful"), (harmful & stopped).sum().alias("caught"),
            benign.sum().alias("benign"), (benign & stopped).sum().alias("bothered")]


def _rates(frame: pl.DataFrame) -> pl.DataFrame:
    counts = ["actions", "harmful", "caught", "benign", "bothered"]
    frame = frame.with_columns(pl.col(counts).fill_null(0).cast(pl.Int64))
    return frame.with_columns(
        missed=pl.col("harmful") - pl.col("caught"),
        catch_rate=_ratio(pl.col("caught"), pl.col("harmful")),
        bother_rate=_ratio(pl.col("bothered"), pl.col("benign")),
        unlabelled=pl.col("actions") - pl.col("harmful") - pl.col("benign"),
    )


_COLUMNS = ["actions", "harmful", "caught", "missed", "catch_rate", "benign", "bothered", "bother_rate",
            "unlabelled"]


def label_scores(decisions: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Harm caught and humans bothered, overall (one row) or per `by` (`tool`, `agent`, ...):
    `*by, actions, harmful, caught, missed, catch_rate, benign, bothered, bother_rate, unlabelled`."""
    if not by:
        return scores_of_counts(decisions.lazy().select(_score_exprs()).collect())
    return scores_of_counts(decisions.lazy().group_by(*by).agg(_score_exprs()).collect(), by)


def scores_of_counts(per: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """`label_scores` from its counts (`*by, actions, harmful, caught, benign, bothered`; one row when no `by`):
    another engine's counts (`gatekit.spark.metrics`) become the same frame."""
    if not by:
        return _rates(per).select(_COLUMNS)
    return _rates(per).select(*by, *_COLUMNS).sort(*by, nulls_last=True)


def rule_scores(decisions: pl.DataFrame, rules: Sequence[str] | None = None) -> pl.DataFrame:
    """The same scores per rule, among the actions the rule matched (shadow rules included; `caught` and
    `bothered` follow the run's decision, whichever rule made it): `rule, actions, ...`. With `rules`
    (every rule id, in file order) the rules that matched nothing are listed too, in that order."""
    per = decisions.lazy().select("label", "decision", rule="rules").explode("rule").drop_nulls("rule") \
        .group_by("rule").agg(_score_exprs()).collect()
    return rule_scores_of_counts(per, rules)


def rule_scores_of_counts(per: pl.DataFrame, rules: Sequence[str] | None = None) -> pl.DataFrame:
    """`rule_scores` from its counts (`rule, actions, harmful, caught, benign, bothered`)."""
    if rules is None:
        return _rates(per).select("rule", *_COLUMNS).sort("rule")
    order = pl.DataFrame({"rule": list(rules)}, schema={"rule": pl.String})
    return _rates(order.join(per, on="rule", how="left", maintain_order="left")).select("rule", *_COLUMNS)


def session_scores(decisions: pl.DataFrame) -> pl.DataFrame:
    """Scores per session, one row: a session with a harmful action is caught when any of its harmful actions
    is; a session with benign actions and no harmful one is bothered when any of them is stopped. Actions
    without a session count as sessions of their own. Returns `sessions, harmful_sessions, caught_sessions,
    missed_sessions, session_catch_rate, benign_sessions, bothered_sessions, session_bother_rate`."""
    harmful, benign = _is_label("harmful"), _is_label("benign")
    stopped = pl.col("decision").is_in(STOPPED)
    per = (decisions.lazy()
           .with_columns(alone=pl.when(pl.col("session").is_null()).then(pl.col("action_id")))
           .group_by("session", "alone")
           .agg(harm=harmful.any(), caught=(harmful & stopped).any(), benign=benign.any(),
                bothered=(benign & stopped).any()))
    out = per.select(
        pl.len().cast(pl.Int64).alias("sessions"),
        pl.col("harm").sum().cast(pl.Int64).alias("harmful_sessions"),
        pl.col("caught").sum().cast(pl.Int64).alias("caught_sessions"),
        (pl.col("benign") & ~pl.col("harm")).sum().cast(pl.Int64).alias("benign_sessions"),
        (pl.col("bothered") & ~pl.col("harm")).sum().cast(pl.Int64).alias("bothered_sessions")).collect()
    return session_scores_of_counts(out)


def session_scores_of_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """`session_scores` from its counts (one row: sessions, harmful_sessions, caught_sessions,
    benign_sessions, bothered_sessions)."""
    out = counts.lazy().select(pl.col("sessions", "harmful_sessions", "caught_sessions", "benign_sessions",
                                      "bothered_sessions").cast(pl.Int64))
    return out.with_columns(
        missed_sessions=pl.col("harmful_sessions") - pl.col("caught_sessions"),
        session_catch_rate=_ratio(pl.col("caught_sessions"), pl.col("harmful_sessions")),
        session_bother_rate=_ratio(pl.col("bothered_sessions"), pl.col("benign_sessions")),
    ).select("sessions", "harmful_sessions", "caught_sessions", "missed_sessions", "session_catch_rate",
             "benign_sessions", "bothered_sessions", "session_bother_rate").collect()


# ---- threshold sweep -----------------------------------------------------------------------------------
def sweepable_tests(policy: Policy) -> list[tuple[str, str, str, float]]:
    """`(rule_id, field, op, threshold)` of every numeric order test (`gt gte lt lte` on `args.*`,
    `context.*` or `time.hour`) a sweep can vary, in file order."""
    return [(rule.id, t.field.name, t.op, float(t.operand)) for rule in policy.rules
            for t in leaves(rule.when) if _sweepable(t)]


def _sweepable(leaf: Test | Window) -> bool:
    return (isinstance(leaf, Test) and leaf.op in ORDER_OPS and isinstance(leaf.operand, (int, float))
            and not isinstance(leaf.operand, bool)
            and (leaf.field.root in ("args", "context") or leaf.field.name == "time.hour"))


def _find_test(policy: Policy, rule_id: str, field: str, op: str | None) -> tuple[Rule, Test]:
    try:
        rule = policy.rule(rule_id)
    except KeyError:
        raise InputError(f"no rule `{rule_id}` in policy `{policy.name}`") from None
    found = [t for t in leaves(rule.when) if isinstance(t, Test) and _sweepable(t) and t.field.name == field
             and (op is None or t.op == op)]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise InputError(f"rule `{rule_id}` has {what} numeric test (gt, gte, lt, lte) on `{field}`"
                         + ("" if op is None else f" with `{op}`"))
    return rule, found[0]


def _replace(node: Cond, target: Test, new: Test) -> Cond:
    if node is target:
        return new
    if isinstance(node, (All, Any_)):
        return dataclasses.replace(node, items=tuple(_replace(i, target, new) for i in node.items))
    if isinstance(node, Not):
        return dataclasses.replace(node, item=_replace(node.item, target, new))
    return node


def _with_operand(policy: Policy, rule: Rule, test: Test, operand: float) -> Policy:
    """`policy` with `test` of `rule` comparing against `operand` instead."""
    new_rule = dataclasses.replace(rule, when=_replace(rule.when, test, dataclasses.replace(test, operand=operand)))
    return dataclasses.replace(policy, rules=tuple(new_rule if r is rule else r for r in policy.rules))


def counterfactual_decisions(run: Run, rule_id: str, field: str, *, op: str | None = None) -> pl.DataFrame:
    """For every action of the rule's tools: the number its test on `field` reads (`value`, null when none),
    and the decision the run's policy gives it when that test holds (`if_true`) and when it does not
    (`if_false`).

    Only the rule's own match can change, so only
    the rule is evaluated, twice in one query with the test's truth forced (compared against -inf or +inf,
    which keeps its errors); each decision is then recombined with the other rules' stored matches and
    errors exactly as the policy combines them. Returns `seq, value, if_true, if_false`.
    """
    policy = run.policy
    rule, test = _find_test(policy, rule_id, field, op)
    low, high = float("-inf"), float("inf")
    holds, fails = (low, high) if test.op in ("gt", "gte") else (high, low)
    forced = [dataclasses.replace(_with_operand(policy, rule, test, x).rule(rule.id), id=name)
              for name, x in (("t", holds), ("f", fails))]
    probe = dataclasses.replace(policy, rules=tuple(forced))
    if any(c in t for t in rule.tools for c in "*?["):
        tools = f"regexp_full_match(tool, {lit(rule.tool_regex)})"
    else:  # plain names: an IN list DuckDB can push into the scan
        tools = f"tool IN ({', '.join(lit(t) for t in rule.tools)})"
    matched = run.read(_query, f"""
        WITH m AS ({compile_sql(probe, f"SELECT * FROM actions WHERE {tools}")}),
             v AS (SELECT seq, {number_sql(test.field, policy)} AS value FROM actions WHERE {tools})
        SELECT v.seq, v.value, list_contains(m.rules, 't') AS m_true, list_contains(m.rules, 'f') AS m_false
        FROM v JOIN m USING (seq) ORDER BY v.seq""")
    return _recombine(policy, rule, matched.join(run.frame.select("seq", "rules", "errors"), on="seq", how="left"))


def _query(store: Store, sql: str) -> pl.DataFrame:
    return store.con.sql(sql).pl()


class _PolarsLevels:
    """semantics.LevelOps as polars expressions."""

    def lit(self, level: int) -> pl.Expr:
        return pl.lit(level, pl.Int64)

    def greatest(self, items: list[pl.Expr]) -> pl.Expr:
        return pl.max_horizontal(items)

    def if_(self, cond: pl.Expr, then: pl.Expr, other: pl.Expr) -> pl.Expr:
        return pl.when(cond).then(then).otherwise(other)

    def below(self, x: pl.Expr, level: int) -> pl.Expr:
        return x < level


_LEVELS = _PolarsLevels()


def _recombine(policy: Policy, rule: Rule, frame: pl.DataFrame) -> pl.DataFrame:
    """The policy's decision from each action's stored matches and errors, with `rule`'s match replaced by
    `m_true` / `m_false`: semantics.decision_level, the precedence decide and compile.py use."""
    deciding = [(r.id, lvl) for r in policy.rules if r.id != rule.id and (lvl := deciding_level(r)) is not None]
    levels = pl.DataFrame({"rule": [i for i, _ in deciding], "level": [lvl for _, lvl in deciding]},
                          schema={"rule": pl.String, "level": pl.Int64})
    enforced = [r.id for r in policy.rules if deciding_level(r) is not None]
    others = (frame.lazy().select("seq", rule="rules").explode("rule").join(levels.lazy(), on="rule")
              .group_by("seq").agg(others=pl.col("level").max()))
    errored = (frame.lazy().select("seq", rule="errors").explode("rule").filter(pl.col("rule").is_in(enforced))
               .select("seq").unique().with_columns(errored=pl.lit(True)))
    names = {LEVEL[v]: v for v in VERDICTS}

    def decision(m: str) -> pl.Expr:
        best = _LEVELS.greatest([pl.col("others"), best_level(_LEVELS, [(rule, pl.col(m))])])
        return level_of(_LEVELS, best, pl.col("errored"), policy).replace_strict(names, return_dtype=pl.String)

    return (frame.lazy().select("seq", "value", "m_true", "m_false")
            .join(others, on="seq", how="left").join(errored, on="seq", how="left")
            .with_columns(pl.col("others").fill_null(NO_MATCH), pl.col("errored").fill_null(False))
            .select("seq", "value", decision("m_true").alias("if_true"), decision("m_false").alias("if_false"))
            .sort("seq").collect())


def threshold_sweep(decisions: pl.DataFrame, counterfactual: pl.DataFrame, op: str,
                    thresholds: Sequence[float]) -> pl.DataFrame:
    """Caught versus bothered if the test's threshold were each of `thresholds`: `threshold, harmful,
    caught, catch_rate, benign, bothered, bother_rate, escalate, deny` (the last two: how many actions the
    run would then escalate and deny, all actions counted). `counterfactual` is `counterfactual_decisions`;
    the other actions keep their decision in `decisions`.

    Each count is the count with the test false everywhere plus, over the actions whose value passes the
    test, the change the test makes; sorted by value those actions are a prefix or a suffix, so every
    threshold costs one binary search.
    """
    if op not in ORDER_OPS:
        raise ValueError(f"not a numeric test: `{op}` (use gt, gte, lt or lte)")
    counts = ["harmful", "caught", "benign", "bothered", "escalate", "deny"]
    harmful, benign = _is_label("harmful"), _is_label("benign")

    def tally(d: str) -> dict[str, pl.Expr]:
        stopped = pl.col(d).is_in(STOPPED)
        return {"caught": harmful & stopped, "bothered": benign & stopped,
                "escalate": pl.col(d) == "escalate", "deny": pl.col(d) == "deny"}

    decisions = decisions.select("seq", "label", "decision")
    others = decisions.join(counterfactual.select("seq"), on="seq", how="anti").select(
        harmful.sum().alias("harmful"), benign.sum().alias("benign"),
        *[e.sum().alias(k) for k, e in tally("decision").items()])
    cf = counterfactual.join(decisions.select("seq", "label"), on="seq", how="left")
    t, f = tally("if_true"), tally("if_false")
    cf = cf.select("value", harmful.alias("harmful"), benign.alias("benign"), *[f[k].alias(k) for k in f],
                   *[(t[k].cast(pl.Int64) - f[k].cast(pl.Int64)).alias(f"d_{k}") for k in t])
    base = {c: int(others[c][0] or 0) + int(cf[c].sum() or 0) for c in counts}
    ranked = cf.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan()).sort("value")
    ends = ranked.select(pl.col(f"d_{k}").cum_sum().alias(k) for k in t)  # sums over ranked[:i + 1]
    xs = pl.Series("threshold", sorted({float(x) for x in thresholds}), pl.Float64)
    side = "right" if op in ("gt", "lte") else "left"
    cut = ranked["value"].search_sorted(xs, side=side) if ranked.height else pl.Series([0] * xs.len(), dtype=pl.UInt32)
    out = pl.DataFrame({"threshold": xs, "cut": cut.cast(pl.Int64)})
    for k in t:
        prefix = pl.concat([pl.Series([0], dtype=pl.Int64), ends[k].cast(pl.Int64)])  # sum of the first i rows
        before = prefix.gather(out["cut"])
        passing = before if op in ("lt", "lte") else prefix[-1] - before
        out = out.with_columns((passing + base[k]).alias(k))
    out = out.with_columns(harmful=pl.lit(base["harmful"], pl.Int64), benign=pl.lit(base["benign"], pl.Int64),
                           actions=pl.lit(0, pl.Int64))
    return _rates(out).select("threshold", "harmful", "caught", "catch_rate", "benign", "bothered",
                              "bother_rate", "escalate", "deny")


@dataclass(frozen=True)
class Sweep:
    """The caught-versus-bothered curve of one test's threshold (`current`: the policy's own)."""

    rule: str
    field: str
    op: str
    current: float
    curve: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "field": self.field, "op": self.op, "current": self.current,
                "curve": records(self.curve)}


def sweep_threshold(run: Run, rule_id: str, field: str, thresholds: Sequence[float] | None = None, *,
                    op: str | None = None) -> Sweep:
    """Vary the threshold of `rule_id`'s numeric test on `field` in `run`'s policy over `thresholds`
    (default: the 0, 5, ..., 100% quantiles of the values the test reads, plus the policy's own) and
    score each, exactly as a replay of the policy with that threshold would.

    >>> sweep_threshold(load_run(store, "starter"), "payments-over-100", "args.amount").curve
    """
    _, test = _find_test(run.policy, rule_id, field, op)
    cf = counterfactual_decisions(run, rule_id, field, op=test.op)
    if thresholds is None:
        values = cf["value"].drop_nulls()
        qs = [values.quantile(q, "nearest") for q in _SWEEP_QUANTILES] if values.len() else []
        thresholds = sorted({float(test.operand), *(float(q) for q in qs if q is not None)})
    curve = threshold_sweep(run.frame, cf, test.op, thresholds)
    return Sweep(rule=rule_id, field=field, op=test.op, current=float(test.operand), curve=curve)


# ---- the report entry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """A run scored against labels (see `evaluate`); `to_dict()` has the headline numbers at top level."""

    run: str
    overall: pl.DataFrame
    by_tool: pl.DataFrame
    by_rule: pl.DataFrame
    sessions: pl.DataFrame
    sweep: Sweep | None = None

    @property
    def harmful(self) -> int:
        return int(self.overall["harmful"][0])

    @property
    def caught(self) -> int:
        return int(self.overall["caught"][0])

    @property
    def catch_rate(self) -> float | None:
        return self.overall["catch_rate"][0]

    @property
    def benign(self) -> int:
        return int(self.overall["benign"][0])

    @property
    def bothered(self) -> int:
        return int(self.overall["bothered"][0])

    @property
    def bother_rate(self) -> float | None:
        return self.overall["bother_rate"][0]

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, **records(self.overall)[0], "sessions": records(self.sessions)[0],
                "by_tool": records(self.by_tool), "by_rule": records(self.by_rule),
                "sweep": self.sweep.to_dict() if self.sweep else None}


def evaluate(run: Run, *, sweep: tuple[str, str] | None = None,
             thresholds: Sequence[float] | None = None) -> Evaluation:
    """Score `run` against the stored labels; with `sweep=(rule_id, field)`, also that test's threshold curve.

    >>> evaluate(load_run(store, "starter")).catch_rate
    """
    decisions = run.frame.select("seq", "action_id", "session", "tool", "label", "decision", "rules", "errors")
    return Evaluation(
        run=run.name,
        overall=label_scores(decisions),
        by_tool=label_scores(decisions, ["tool"]),
        by_rule=rule_scores(decisions, [r.id for r in run.policy.rules]),
        sessions=session_scores(decisions),
        sweep=sweep_threshold(run, *sweep, thresholds) if sweep else None,
    )
