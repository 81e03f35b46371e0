"""Control failures in the recorded approval process: self-approval, approvals used after expiry or
twice, actions executed without a required approval, break-glass use, and bypass attempts.

Every signal is a frame with one row per offending action (`action_id`), so a report can list them.

>>> with Store("gatekit.duckdb", read_only=True) as store:
...     failures = control_failures(load_run(store, "starter"))
>>> failures.action_ids["self_approval"]
['a-03466', 'a-04586', ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from gatekit.metrics.fatigue import DEFAULT_TIMEOUT_S, TIMEOUTS_S, review_deadlines
from gatekit.metrics.rates import records
from gatekit.run import Run

__all__ = [
    "RETRY_WINDOW_S", "ControlFailures", "break_glass_by_reviewer", "break_glass_by_week", "break_glass_uses",
    "bypass_attempts", "control_failures", "executed_without_approval", "expired_approvals",
    "reused_approvals", "self_approvals",
]

RETRY_WINDOW_S = 600.0  # a call retried this soon after being denied or blocked is an attempt to get through
_RAN = ("executed", "failed")  # outcomes where something ran
_REFUSED = ("denied", "blocked")


def self_approvals(approvals: pl.DataFrame) -> pl.DataFrame:
    """Approvals whose reviewer is the action's own `user` or `agent`: `seq, action_id, ts, tool, agent,
    user, reviewer, review, break_glass, kind` (`user` | `agent`)."""
    by_user = pl.col("reviewer") == pl.col("user")
    return (approvals.filter(by_user | (pl.col("reviewer") == pl.col("agent")))
            .with_columns(kind=pl.when(by_user).then(pl.lit("user")).otherwise(pl.lit("agent")))
            .select("seq", "action_id", "ts", "tool", "agent", "user", "reviewer", "review", "break_glass", "kind")
            .sort("seq", "reviewer"))


def expired_approvals(approvals: pl.DataFrame, decisions: pl.DataFrame | None = None, *,
                      timeouts_s: Mapping[str, float] = TIMEOUTS_S, default_timeout_s: float = DEFAULT_TIMEOUT_S,
                      ttls_s: Mapping[str, float] | None = None, default_ttl_s: float | None = None) -> pl.DataFrame:
    """Actions that ran on an approval that was no longer valid: decided after the request timed out
    (`after_timeout`, the tier's timeout under the run of `decisions`, see `review_deadlines`) or, when
    TTLs are given, decided longer than the tier's `approval_ttl` before the call it let through (`stale`).
    Returns `seq, action_id, ts, tool, agent, reviewer, tier, requested_at, decided_at, latency_s, limit_s,
    kind, outcome`."""
    approved = review_deadlines(approvals, decisions, timeouts_s=timeouts_s, default_timeout_s=default_timeout_s) \
        .filter((pl.col("review") == "approve") & pl.col("outcome").is_in(_RAN))
    late = approved.filter(pl.col("late")).with_columns(limit_s=pl.col("timeout_s"), kind=pl.lit("after_timeout"))
    parts = [late]
    if ttls_s or default_ttl_s is not None:
        ttl = pl.DataFrame({"tier": list(ttls_s or {}), "ttl_s": [float(v) for v in (ttls_s or {}).values()]},
                           schema={"tier": pl.String, "ttl_s": pl.Float64})
        age = (pl.col("ts") - pl.col("decided_at")).dt.total_microseconds() / 1e6
        stale = (approved.join(ttl, on="tier", how="left")
                 .with_columns(pl.col("ttl_s").fill_null(default_ttl_s))
                 .filter(age > pl.col("ttl_s"))
                 .with_columns(limit_s=pl.col("ttl_s"), kind=pl.lit("stale")).drop("ttl_s"))
        parts.append(stale)
    cols = ["seq", "action_id", "ts", "tool", "agent", "reviewer", "tier", "requested_at", "decided_at",
            "latency_s", "limit_s", "kind", "outcome"]
    return pl.concat([p.select(cols) for p in parts]).sort("seq", "kind", "reviewer")


def reused_approvals(approvals: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """Actions let through by an approval already used for another action: the same approval (reviewer,
    decision, requested_at, decided_at) recorded on both (`same_approval`), or an executed call whose
    evidence (`evidence_hash`) an earlier approved and executed call already had, itself carrying no
    approval (`same_evidence`). Returns `seq, action_id, ts, tool, agent, kind, first_action_id,
    reviewer, decided_at`; the first use is not listed."""
    fp = ["reviewer", "review", "requested_at", "decided_at"]
    cols = ["seq", "action_id", "ts", "tool", "agent", "kind", "first_action_id", "reviewer", "decided_at"]
    # sorted by fingerprint then time, an approval's first use is the first row of its fingerprint
    first = pl.struct(fp).is_first_distinct()
    twice = (approvals.lazy().filter(pl.col("decided_at").is_not_null() & pl.col("reviewer").is_not_null())
             .select("seq", "action_id", "ts", "tool", "agent", *fp).sort(*fp, "ts", "seq")
             .with_columns(first_seq=pl.when(first).then(pl.col("seq")).forward_fill(),
                           first_action_id=pl.when(first).then(pl.col("action_id")).forward_fill())
             .filter(pl.col("seq") != pl.col("first_seq")).collect()
             .unique(["seq", "first_action_id"], keep="first", maintain_order=True)
             .with_columns(kind=pl.lit("same_approval")))
    first_approved = (pl.when((pl.col("approvals") > 0) & (pl.col("outcome") == "executed"))
                      .then(pl.col("action_id")).shift(1).forward_fill())
    ran = decisions.lazy().select("seq", "action_id", "ts", "tool", "agent", "evidence_hash", "outcome",
                                  "approvals").filter(
        pl.col("evidence_hash").is_not_null() & pl.col("outcome").is_in(_RAN)).collect()
    approved = ran.filter((pl.col("approvals") > 0) & (pl.col("outcome") == "executed")).select("evidence_hash")
    evidence = (ran.join(approved.unique(), on="evidence_hash", how="semi")
                .sort("evidence_hash", "ts", "seq")
                .with_columns(first_action_id=first_approved.over("evidence_hash"))
                .filter((pl.col("approvals") == 0) & pl.col("first_action_id").is_not_null())
                .with_columns(kind=pl.lit("same_evidence"), reviewer=pl.lit(None, pl.String),
                              decided_at=pl.lit(None, approvals.schema.get("decided_at", pl.Datetime("us", "UTC")))))
    return pl.concat([twice.select(cols), evidence.select(cols)]).sort("seq", "kind")


def executed_without_approval(decisions: pl.DataFrame, approvals: pl.DataFrame) -> pl.DataFrame:
    """Actions the run would escalate that ran (`executed` or `failed`) with no approving review recorded
    (a break-glass approval counts as one): `seq, action_id, ts, tool, agent, user, outcome, tier, rules,
    approvals, denials`."""
    verdicts = approvals.group_by("seq").agg(approves=(pl.col("review") == "approve").sum(),
                                             denials=(pl.col("review") == "deny").sum())
    return (decisions.lazy().filter((pl.col("decision") == "escalate") & pl.col("outcome").is_in(_RAN))
            .join(verdicts.lazy(), on="seq", how="left")
            .filter(pl.col("approves").fill_null(0) == 0)
            .with_columns(pl.col("denials").fill_null(0))
            .select("seq", "action_id", "ts", "tool", "agent", "user", "outcome", "tier", "rules", "approvals",
                    "denials").sort("seq").collect())


def break_glass_uses(approvals: pl.DataFrame) -> pl.DataFrame:
    """Every break-glass approval: `seq, action_id, ts, tool, agent, user, reviewer, role, decided_at,
    reason, outcome`."""
    return approvals.filter(pl.col("break_glass")).select(
        "seq", "action_id", "ts", "tool", "agent", "user", "reviewer", "role", "decided_at", "reason",
        "outcome").sort("seq", "reviewer")


def break_glass_by_reviewer(approvals: pl.DataFrame) -> pl.DataFrame:
    """Break-glass approvals per reviewer: `reviewer, uses, first_ts, last_ts`, most first."""
    return (break_glass_uses(approvals).group_by("reviewer")
            .agg(uses=pl.len(), first_ts=pl.col("ts").min(), last_ts=pl.col("ts").max())
            .sort(["uses", "reviewer"], descending=[True, False]))


def break_glass_by_week(approvals: pl.DataFrame) -> pl.DataFrame:
    """Break-glass approvals per ISO week (Monday, UTC), every week from the first approval request to the
    last, none included: `week, uses`."""
    times = approvals.select(pl.col("requested_at").dt.convert_time_zone("UTC")).drop_nulls()
    if times.is_empty():
        return pl.DataFrame(schema={"week": pl.Date, "uses": pl.UInt32})
    week = pl.col("requested_at").dt.convert_time_zone("UTC").dt.date().dt.truncate("1w")
    lo, hi = times.select(week.min().alias("a"), week.max().alias("b")).row(0)
    used = approvals.filter(pl.col("break_glass") & pl.col("requested_at").is_not_null()) \
        .group_by(week.alias("week")).agg(uses=pl.len())
    grid = pl.DataFrame({"week": pl.date_range(lo, hi, "1w", eager=True)})
    return grid.join(used, on="week", how="left").with_columns(pl.col("uses").fill_null(0)).sort("week")


def bypass_attempts(decisions: pl.DataFrame, *, window_s: float = RETRY_WINDOW_S) -> pl.DataFrame:
    """Attempts to get around a refusal or a review: the next call of the same tool by the same agent in the
    same session within `window_s` of one that was `denied` or `blocked`, with different evidence
    (`retry_after_refusal`); and calls that ran with other arguments than the ones reviewed, `executed_hash`
    differing from `evidence_hash` (`execution_drift`). Returns `seq, action_id, ts, tool, agent, session,
    kind, prior_action_id, prior_outcome, gap_s, outcome`."""
    key = ["agent", "session", "tool"]
    cols = ["seq", "action_id", "ts", "tool", "agent", "session", "outcome", "evidence_hash", "executed_hash"]
    slim = decisions.lazy().select(cols)
    refused = slim.filter(pl.col("outcome").is_in(_REFUSED)).select(key).unique()
    nxt = slim.join(refused, on=key, how="semi").filter(
        pl.col("session").is_not_null() & pl.col("agent").is_not_null()).sort(*key, "ts", "seq").collect()
    # sorted by key then time, the previous row is the previous call of the same key when the keys agree
    # (a shift over the whole frame: far faster than a window per session)
    same = pl.all_horizontal([pl.col(k) == pl.col(k).shift(1) for k in key]).fill_null(False)
    nxt = nxt.with_columns(
        prior_action_id=pl.when(same).then(pl.col("action_id").shift(1)),
        prior_outcome=pl.when(same).then(pl.col("outcome").shift(1)),
        prior_hash=pl.when(same).then(pl.col("evidence_hash").shift(1)),
        gap_s=pl.when(same).then((pl.col("ts") - pl.col("ts").shift(1)).dt.total_microseconds() / 1e6))
    retries = nxt.filter(pl.col("prior_outcome").is_in(_REFUSED) & (pl.col("gap_s") <= window_s)
                         & pl.col("evidence_hash").ne_missing(pl.col("prior_hash"))) \
        .with_columns(kind=pl.lit("retry_after_refusal"))
    drift = slim.filter(pl.col("executed_hash") != pl.col("evidence_hash")).collect().with_columns(
        kind=pl.lit("execution_drift"), prior_action_id=pl.lit(None, pl.String),
        prior_outcome=pl.lit(None, pl.String), gap_s=pl.lit(None, pl.Float64))
    cols = ["seq", "action_id", "ts", "tool", "agent", "session", "kind", "prior_action_id", "prior_outcome",
            "gap_s", "outcome"]
    return pl.concat([retries.select(cols), drift.select(cols)]).sort("seq", "kind")


@dataclass(frozen=True)
class ControlFailures:
    """Control failures for a run: one frame per signal (see `control_failures`)."""

    run: str
    self_approvals: pl.DataFrame
    expired_approvals: pl.DataFrame
    reused_approvals: pl.DataFrame
    executed_without_approval: pl.DataFrame
    break_glass: pl.DataFrame
    break_glass_by_reviewer: pl.DataFrame
    break_glass_by_week: pl.DataFrame
    bypass_attempts: pl.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def signals(self) -> dict[str, pl.DataFrame]:
        return {"self_approval": self.self_approvals, "expired_approval": self.expired_approvals,
                "reused_approval": self.reused_approvals,
                "executed_without_approval": self.executed_without_approval,
                "break_glass": self.break_glass, "bypass_attempt": self.bypass_attempts}

    @property
    def action_ids(self) -> dict[str, list[str]]:
        """The offending actions of each signal, sorted, each once."""
        return {name: frame["action_id"].unique().sort().to_list() for name, frame in self.signals.items()}

    def offenders(self) -> pl.DataFrame:
        """`signal, kind, action_id`: every flagged action of every signal, once per signal and kind."""
        parts = [frame.select(signal=pl.lit(name),
                              kind=pl.col("kind") if "kind" in frame.columns else pl.lit(None, pl.String),
                              action_id=pl.col("action_id"))
                 for name, frame in self.signals.items()]
        return pl.concat(parts).unique().sort("signal", "kind", "action_id", nulls_last=True)

    def summary(self) -> pl.DataFrame:
        """`signal, kind, actions`: how many actions each signal (and each of its kinds) flags."""
        return self.offenders().group_by("signal", "kind").agg(actions=pl.len()).sort("signal", "kind")

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """Counts, offending action ids and every frame as rows; `limit` caps each list (not the counts)."""
        ids = self.action_ids
        return {
            "run": self.run,
            "counts": {name: len(v) for name, v in ids.items()},
            "action_ids": {name: v[:limit] for name, v in ids.items()},
            "settings": self.settings,
            "self_approvals": records(_capped(self.self_approvals, limit)),
            "expired_approvals": records(_capped(self.expired_approvals, limit)),
            "reused_approvals": records(_capped(self.reused_approvals, limit)),
            "executed_without_approval": records(_capped(self.executed_without_approval, limit)),
            "break_glass": records(_capped(self.break_glass, limit)),
            "break_glass_by_reviewer": records(self.break_glass_by_reviewer),
            "break_glass_by_week": records(self.break_glass_by_week),
            "bypass_attempts": records(_capped(self.bypass_attempts, limit)),
        }


def control_failures(run: Run, *, timeouts_s: Mapping[str, float] = TIMEOUTS_S,
                     default_timeout_s: float = DEFAULT_TIMEOUT_S, ttls_s: Mapping[str, float] | None = None,
                     default_ttl_s: float | None = None, retry_window_s: float = RETRY_WINDOW_S) -> ControlFailures:
    """Every control-failure signal for `run` (whose escalations say which actions needed an approval and
    whose tiers set the timeouts, looked up in `timeouts_s`).

    >>> control_failures(load_run(store, "starter")).summary()
    """
    approvals, decisions = run.approvals, run.frame
    return ControlFailures(
        run=run.name,
        self_approvals=self_approvals(approvals),
        expired_approvals=expired_approvals(approvals, decisions, timeouts_s=timeouts_s,
                                            default_timeout_s=default_timeout_s, ttls_s=ttls_s,
                                            default_ttl_s=default_ttl_s),
        reused_approvals=reused_approvals(approvals, decisions),
        executed_without_approval=executed_without_approval(decisions, approvals),
        break_glass=break_glass_uses(approvals),
        break_glass_by_reviewer=break_glass_by_reviewer(approvals),
        break_glass_by_week=break_glass_by_week(approvals),
        bypass_attempts=bypass_attempts(decisions, window_s=retry_window_s),
        settings={"timeouts_s": dict(timeouts_s), "default_timeout_s": default_timeout_s,
                  "ttls_s": dict(ttls_s or {}), "default_ttl_s": default_ttl_s, "retry_window_s": retry_window_s},
    )


def _capped(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    return frame if limit is None else frame.head(limit)
