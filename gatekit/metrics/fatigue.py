"""Reviewer fatigue, from recorded approvals: load, latency, rubber stamps, the queue, timeouts and SLA
breaches, and the action patterns reviewers always approve (promotion candidates, proposed as allow rules).

A *review* is one recorded approval that is not break-glass (break-glass is a control, see controls.py).

>>> with Store("gatekit.duckdb", read_only=True) as store:
...     fatigue = reviewer_fatigue(load_run(store, "starter"))
>>> fatigue.reviewers.filter(pl.col("rubber_stamp"))["reviewer"].to_list()
['u-tom']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from gatekit.metrics.rates import local_time, records
from gatekit.policy.dump import dump_yaml, number
from gatekit.run import Run

__all__ = [
    "BUSINESS_HOURS", "DEFAULT_TIMEOUT_S", "FAST_S", "SLA_S", "TIMEOUTS_S", "BusinessHours", "Fatigue",
    "decision_latency", "promotion_candidates", "promotion_policy", "queue_depth",
    "review_deadlines", "review_verdicts", "reviewer_fatigue", "reviewer_load",
    "reviewer_stats", "sla_breaches", "timed_out_reviews",
]

# The recorded approval process's own limits (sample_logs/PLANTED.json `recorded_world`): a tier's timeout,
# the review SLA. A tier not named here (or an action the run would not escalate) gets DEFAULT_TIMEOUT_S.
TIMEOUTS_S: Mapping[str, float] = {"standard": 4 * 3600.0, "critical": 30 * 60.0}
DEFAULT_TIMEOUT_S = 4 * 3600.0
SLA_S = 3600.0
FAST_S = 10.0  # an approval faster than this was not read
MIN_REVIEWS = 50  # fewer reviews say nothing about a reviewer's habits
RUBBER_STAMP_RATE = 0.98
FAST_SHARE = 0.5
OVERLOAD_FACTOR = 2.0  # reviews a day, against the median reviewer's
AFTER_HOURS_SHARE = 1 / 3
SLA_BREACH_SHARE = 0.2
MIN_APPROVED = 30


@dataclass(frozen=True)
class BusinessHours:
    """Working hours, `start` <= local hour < `end` on `weekdays` (ISO: 1 Monday .. 7 Sunday) in `timezone`."""

    start: int = 8
    end: int = 19
    weekdays: tuple[int, ...] = (1, 2, 3, 4, 5)
    timezone: str = "UTC"

    def local(self, ts: pl.Expr) -> pl.Expr:
        return local_time(ts, self.timezone)

    def after_hours(self, ts: pl.Expr) -> pl.Expr:
        t = self.local(ts)
        return ~t.dt.weekday().is_in(list(self.weekdays)) | (t.dt.hour() < self.start) | (t.dt.hour() >= self.end)


BUSINESS_HOURS = BusinessHours()


def _reviews(approvals: pl.DataFrame, hours: BusinessHours = BUSINESS_HOURS) -> pl.DataFrame:
    """The reviews among `approvals`, with `approved`, `after_hours` and the local `day` of the request."""
    return approvals.filter(~pl.col("break_glass") & pl.col("reviewer").is_not_null()).with_columns(
        approved=(pl.col("review") == "approve").fill_null(False),
        denied=(pl.col("review") == "deny").fill_null(False),
        after_hours=hours.after_hours(pl.col("requested_at")).fill_null(False),
        day=hours.local(pl.col("requested_at")).dt.date(),
    )


def _period_days(reviews: pl.DataFrame) -> int:
    """Calendar days from the first review request to the last, both included (at least 1)."""
    days = reviews.select(pl.col("day").min().alias("a"), pl.col("day").max().alias("b")).row(0)
    return (days[1] - days[0]).days + 1 if days[0] is not None else 1


def reviewer_load(approvals: pl.DataFrame, *, hours: BusinessHours = BUSINESS_HOURS) -> pl.DataFrame:
    """Reviews per reviewer per local day: `reviewer, day, reviews, approved, denied, after_hours`."""
    return (_reviews(approvals, hours).group_by("reviewer", "day")
            .agg(reviews=pl.len(), approved=pl.col("approved").sum(), denied=pl.col("denied").sum(),
                 after_hours=pl.col("after_hours").sum())
            .sort("reviewer", "day", nulls_last=True))


def _latency_stats() -> list[pl.Expr]:
    lat = pl.col("latency_s")
    return [lat.median().alias("latency_median_s"), lat.quantile(0.9, "linear").alias("latency_p90_s")]


def reviewer_stats(approvals: pl.DataFrame, *, hours: BusinessHours = BUSINESS_HOURS, fast_s: float = FAST_S,
                   sla_s: float = SLA_S, min_reviews: int = MIN_REVIEWS,
                   rubber_stamp_rate: float = RUBBER_STAMP_RATE, fast_share: float = FAST_SHARE,
                   overload_factor: float = OVERLOAD_FACTOR, after_hours_share: float = AFTER_HOURS_SHARE,
                   sla_breach_share: float = SLA_BREACH_SHARE) -> pl.DataFrame:
    """One row per reviewer: volume, approve rate, latency, rubber-stamp and overload signals.

    `rubber_stamp`: at least `min_reviews` reviews and an approve rate >= `rubber_stamp_rate` or a share of
    approvals faster than `fast_s` >= `fast_share`. `overloaded`: at least `min_reviews`, reviews per day
    >= `overload_factor` x the median reviewer's (among those with `min_reviews`), and the load spills
    over: after-hours share >= `after_hours_share` or SLA-breach share >= `sla_breach_share`. High load
    alone is not overload: a reviewer who keeps up within the SLA in working hours is busy, not overloaded.
    """
    reviews = _reviews(approvals, hours).sort("reviewer", "decided_at", "requested_at", "seq", "approval_index")
    days = _period_days(reviews)
    # streaks: a deny starts a new run (sorted by reviewer, a run never spans two); the longest per reviewer
    streaks = (reviews.with_columns(run=(~pl.col("approved")).cum_sum())
               .group_by("reviewer", "run").agg(pl.col("approved").sum().alias("streak"))
               .group_by("reviewer").agg(pl.col("streak").max().alias("longest_approval_streak")))
    busiest = (reviews.group_by("reviewer", "day").len()
               .group_by("reviewer").agg(pl.col("len").max().alias("busiest_day_reviews")))
    glass = (approvals.filter(pl.col("break_glass") & pl.col("reviewer").is_not_null())
             .group_by("reviewer").agg(pl.len().alias("break_glass")))
    fast = pl.col("approved") & (pl.col("latency_s") < fast_s)
    stats = (reviews.group_by("reviewer").agg(
        pl.col("role").drop_nulls().mode().sort().first().alias("role"),
        pl.len().alias("reviews"),
        pl.col("day").drop_nulls().n_unique().alias("days_active"),
        pl.col("approved").sum().alias("approved"),
        pl.col("denied").sum().alias("denied"),
        pl.col("after_hours").sum().alias("after_hours"),
        *_latency_stats(),
        fast.sum().alias("fast_approvals"),
        (pl.col("latency_s") > sla_s).sum().alias("sla_breaches"),
        (pl.col("outcome") == "timed_out").sum().alias("timed_out"),
    ).join(streaks, on="reviewer", how="left").join(busiest, on="reviewer", how="left")
        .join(glass, on="reviewer", how="full", coalesce=True))
    n = pl.col("reviews")
    stats = stats.with_columns(
        pl.col("reviews", "approved", "denied", "after_hours", "fast_approvals", "sla_breaches", "timed_out",
               "days_active", "longest_approval_streak", "busiest_day_reviews", "break_glass").fill_null(0),
    ).with_columns(
        reviews_per_day=n / days,
        approve_rate=_ratio(pl.col("approved"), n),
        after_hours_share=_ratio(pl.col("after_hours"), n),
        fast_share=_ratio(pl.col("fast_approvals"), pl.col("approved")),
        sla_breach_share=_ratio(pl.col("sla_breaches"), n),
    )
    enough = n >= min_reviews
    typical = stats.filter(enough)["reviews_per_day"].median()
    heavy = pl.lit(False) if typical is None else pl.col("reviews_per_day") >= overload_factor * typical
    return stats.with_columns(
        rubber_stamp=enough & ((pl.col("approve_rate") >= rubber_stamp_rate)
                               | (pl.col("fast_share") >= fast_share)).fill_null(False),
        overloaded=enough & heavy & ((pl.col("after_hours_share") >= after_hours_share)
                                     | (pl.col("sla_breach_share") >= sla_breach_share)).fill_null(False),
    ).select(
        "reviewer", "role", "reviews", "days_active", "reviews_per_day", "busiest_day_reviews", "approved",
        "denied", "approve_rate", "after_hours", "after_hours_share", "latency_median_s", "latency_p90_s",
        "fast_approvals", "fast_share", "longest_approval_streak", "sla_breaches", "sla_breach_share",
        "timed_out", "break_glass", "rubber_stamp", "overloaded",
    ).sort("reviewer")


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null when den is 0 (0/0 is no evidence, not a rate of 0)."""
    return pl.when(den > 0).then(num / den).otherwise(None)


def _with_tier(approvals: pl.DataFrame, decisions: pl.DataFrame | None) -> pl.DataFrame:
    if decisions is None:
        return approvals.with_columns(tier=pl.lit(None, pl.String))
    return approvals.join(decisions.select("seq", "tier"), on="seq", how="left")


def decision_latency(approvals: pl.DataFrame, decisions: pl.DataFrame | None = None,
                     by: Sequence[str] = ("tier",), *, sla_s: float = SLA_S) -> pl.DataFrame:
    """Review latency by `by` (any of `tier`, `reviewer`, `role`, `tool`, `agent`): `*by, reviews,
    latency_median_s, latency_p90_s, sla_breaches`. `tier` is the action's tier under the run of
    `decisions` (null: the run would not escalate it)."""
    reviews = _with_tier(_reviews(approvals), decisions)
    return (reviews.group_by(*by).agg(pl.len().alias("reviews"), *_latency_stats(),
                                      (pl.col("latency_s") > sla_s).sum().alias("sla_breaches"))
            .sort(*by, nulls_last=True))


def queue_depth(approvals: pl.DataFrame, *, every: str = "1h") -> pl.DataFrame:
    """Open review requests over time, one row per `every` interval from the first request to the last
    decision: `start, requested, decided` (in the interval), `open_at_start` (requested before it and not
    decided before it), `peak_open` (the most open at any instant of it)."""
    iv = _reviews(approvals).filter(
        pl.col("requested_at").is_not_null() & pl.col("decided_at").is_not_null()
        & (pl.col("decided_at") >= pl.col("requested_at")))
    schema = {"start": pl.Datetime("us", "UTC"), "requested": pl.UInt32, "decided": pl.UInt32,
              "open_at_start": pl.Int64, "peak_open": pl.Int64}
    if iv.is_empty():
        return pl.DataFrame(schema=schema)
    # +1 at each request, -1 at each decision; at one instant decisions first, so nothing peaks spuriously
    events = pl.concat([iv.select(t=pl.col("requested_at"), delta=pl.lit(1, pl.Int64)),
                        iv.select(t=pl.col("decided_at"), delta=pl.lit(-1, pl.Int64))]).sort("t", "delta")
    events = events.with_columns(open=pl.col("delta").cum_sum(), start=pl.col("t").dt.truncate(every))
    per = events.group_by("start").agg(
        requested=(pl.col("delta") == 1).sum(), decided=(pl.col("delta") == -1).sum(), peak=pl.col("open").max())
    lo, hi = events["start"].min(), events["start"].max()
    grid = pl.DataFrame({"start": pl.datetime_range(lo, hi, every, eager=True)}).with_columns(
        pl.col("start").cast(events.schema["start"]))
    out = grid.join(per, on="start", how="left").sort("start").with_columns(
        pl.col("requested", "decided").fill_null(0))
    out = out.with_columns(open_at_start=(pl.col("requested").cast(pl.Int64) - pl.col("decided").cast(pl.Int64))
                           .cum_sum().shift(1, fill_value=0))
    return out.with_columns(peak_open=pl.max_horizontal("open_at_start", "peak").cast(pl.Int64)).select(
        pl.col("start").dt.convert_time_zone("UTC"), "requested", "decided", "open_at_start", "peak_open")


def review_deadlines(approvals: pl.DataFrame, decisions: pl.DataFrame | None = None, *,
                     timeouts_s: Mapping[str, float] = TIMEOUTS_S,
                     default_timeout_s: float = DEFAULT_TIMEOUT_S) -> pl.DataFrame:
    """`approvals` with the action's `tier` under the run, its `timeout_s` (from `timeouts_s`, else the
    default), and `late`: decided after the request timed out."""
    tiers = pl.DataFrame({"tier": list(timeouts_s), "timeout_s": [float(v) for v in timeouts_s.values()]},
                         schema={"tier": pl.String, "timeout_s": pl.Float64})
    out = _with_tier(approvals, decisions).join(tiers, on="tier", how="left")
    return out.with_columns(pl.col("timeout_s").fill_null(float(default_timeout_s))).with_columns(
        late=(pl.col("latency_s") > pl.col("timeout_s")).fill_null(False))


def timed_out_reviews(approvals: pl.DataFrame, decisions: pl.DataFrame | None = None, *,
                      timeouts_s: Mapping[str, float] = TIMEOUTS_S,
                      default_timeout_s: float = DEFAULT_TIMEOUT_S) -> pl.DataFrame:
    """Reviews of actions that timed out (recorded outcome `timed_out`) or decided after their tier's
    timeout: `seq, action_id, tool, agent, reviewer, tier, requested_at, decided_at, latency_s, timeout_s,
    outcome, late`."""
    reviews = review_deadlines(_reviews(approvals), decisions, timeouts_s=timeouts_s,
                               default_timeout_s=default_timeout_s)
    return reviews.filter((pl.col("outcome") == "timed_out") | pl.col("late")).select(
        "seq", "action_id", "tool", "agent", "reviewer", "tier", "requested_at", "decided_at", "latency_s",
        "timeout_s", "outcome", "late").sort("seq", "reviewer")


def sla_breaches(approvals: pl.DataFrame, *, sla_s: float = SLA_S) -> pl.DataFrame:
    """Reviews decided more than `sla_s` after the request: `seq, action_id, tool, agent, reviewer, role,
    requested_at, decided_at, latency_s`."""
    return _reviews(approvals).filter(pl.col("latency_s") > sla_s).select(
        "seq", "action_id", "tool", "agent", "reviewer", "role", "requested_at", "decided_at",
        "latency_s").sort("seq", "reviewer")


# ---- promotion candidates ------------------------------------------------------------------------------
def review_verdicts(approvals: pl.DataFrame) -> pl.DataFrame:
    """One row per reviewed action: `seq, action_id, ts, tool, agent, reviews, approved` (every review
    approved) `, denied` (some review denied). Actions with a break-glass approval are left out."""
    glass = approvals.filter(pl.col("break_glass")).select("seq").unique()
    return (_reviews(approvals).join(glass, on="seq", how="anti")
            .group_by("seq", "action_id", "ts", "tool", "agent")
            .agg(reviews=pl.len(), approved=pl.col("approved").all(), denied=pl.col("denied").any())
            .sort("seq"))


def _round_down(x: pl.Expr) -> pl.Expr:
    """The largest of 1, 2, 5 x 10^k at most x (x > 0)."""
    p = pl.lit(10.0).pow(x.log10().floor())
    m = x / p
    down = pl.when(m >= 5).then(5 * p).when(m >= 2).then(2 * p).otherwise(p)
    nxt = _next_round(down)
    return pl.when(nxt <= x).then(nxt).otherwise(down)  # log10 of 1000 is 2.9999...: one step fixes it


def _next_round(r: pl.Expr) -> pl.Expr:
    """The next of 1, 2, 5 x 10^k above r, itself of that form."""
    p = pl.lit(10.0).pow(r.log10().round(9).floor())
    m = (r / p).round(6)
    return pl.when(m >= 5).then(10 * p).when(m >= 2).then(5 * p).otherwise(2 * p)


def promotion_candidates(approvals: pl.DataFrame, args: pl.DataFrame, *,
                         min_approved: int = MIN_APPROVED) -> pl.DataFrame:
    """Action patterns reviewers approved at least `min_approved` times and never denied, as allow rules.

    A pattern is a tool and an agent plus either a numeric field below a round threshold (1, 2 or 5 x 10^k:
    the largest at most the smallest denied value, or, if none was ever denied, the smallest above every
    value seen) or a string field equal to a value. `args` is `Run.reviewed_args`. Returns `tool, agent,
    field, op` (`lt` | `eq`) `, operand` (the threshold or the value, as text) `, reviewed, approved, denied, first_ts,
    last_ts, rule_id, rule_yaml` (one rule, a list item of a policy's `rules`), most approved first.

    An allow rule does not override an escalate rule (deny > escalate > allow): to promote, also exclude
    the pattern from the rules that escalate it.
    """
    verdicts = review_verdicts(approvals)
    vals = verdicts.join(args, on="seq", how="inner")
    keys = ["tool", "agent", "field"]
    numeric = vals.filter(pl.col("number").is_not_null() & pl.col("number").is_finite())
    bounds = numeric.group_by(keys).agg(
        low=pl.col("number").filter(pl.col("denied")).min(), high=pl.col("number").max())
    bounds = bounds.with_columns(threshold=pl.when(pl.col("low").is_not_null())
                                 .then(pl.when(pl.col("low") > 0).then(_round_down(pl.col("low"))))
                                 .otherwise(pl.when(pl.col("high") > 0).then(_next_round(_round_down(
                                     pl.col("high")))))).filter(pl.col("threshold").is_not_null())
    below = (numeric.join(bounds.select(*keys, "threshold"), on=keys)
             .filter(pl.col("number") < pl.col("threshold"))
             .group_by(*keys, "threshold").agg(*_counts()))
    whole = pl.col("threshold") == pl.col("threshold").floor()
    below = below.with_columns(op=pl.lit("lt"), operand=pl.when(whole & (pl.col("threshold").abs() < 1e15))
                               .then(pl.col("threshold").cast(pl.Int64).cast(pl.String))
                               .otherwise(pl.col("threshold").cast(pl.String))).drop("threshold")
    categorical = (vals.filter(pl.col("text").is_not_null() & pl.col("number").is_null())
                   .group_by(*keys, "text").agg(*_counts())
                   .with_columns(op=pl.lit("eq")).rename({"text": "operand"}))
    cols = [*keys, "op", "operand", "reviewed", "approved", "denied", "first_ts", "last_ts"]
    out = (pl.concat([below.select(cols), categorical.select(cols)])
           .filter((pl.col("denied") == 0) & (pl.col("approved") >= min_approved)
                   & pl.col("agent").is_not_null())
           .sort(["approved", "tool", "agent", "field", "op", "operand"], descending=[True, False, False, False,
                                                                                    False, False]))
    return _render_rules(out)


def _counts() -> list[pl.Expr]:
    return [pl.len().alias("reviewed"), pl.col("approved").sum().alias("approved"),
            pl.col("denied").sum().alias("denied"), pl.col("ts").min().alias("first_ts"),
            pl.col("ts").max().alias("last_ts")]


def _render_rules(c: pl.DataFrame) -> pl.DataFrame:
    ident = pl.concat_str(pl.lit("promote-"), pl.col("tool"), pl.lit("-"), pl.col("agent"), pl.lit("-"),
                          pl.col("field").str.split(".").list.last(), pl.lit("-"), pl.col("op"), pl.lit("-"),
                          pl.col("operand"))
    ident = ident.str.replace_all(r"[^A-Za-z0-9_.:/@]+", "-").str.strip_chars("-").str.slice(0, 100)
    c = c.with_row_index("_i").with_columns(rule_id=ident)
    c = c.with_columns(rule_id=pl.when(pl.col("rule_id").is_duplicated())
                       .then(pl.concat_str("rule_id", pl.lit("-"), pl.col("_i").cast(pl.String)))
                       .otherwise(pl.col("rule_id")))
    first, last = (pl.col(c_).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d") for c_ in ("first_ts", "last_ts"))
    reason = pl.format("{} reviews from {} to {}, every one approved", pl.col("reviewed"), first, last)
    rows = c.select("rule_id", "tool", "agent", "field", "op", "operand", reason.alias("reason")).to_dicts()
    yaml = [dump_yaml([_promotion_rule(row)]) for row in rows]
    return c.with_columns(rule_yaml=pl.Series(yaml, dtype=pl.String)).drop("_i")


def _promotion_rule(row: dict[str, Any]) -> dict[str, Any]:
    """One candidate as a rule of a policy file, in the dumper's canonical form."""
    operand = number(float(row["operand"])) if row["op"] == "lt" else row["operand"]
    return {"id": row["rule_id"], "tool": row["tool"], "action": "allow",
            "when": {"agent": {"eq": row["agent"]}, row["field"]: {row["op"]: operand}}, "reason": row["reason"]}


def promotion_policy(candidates: pl.DataFrame, name: str = "promotions") -> str:
    """A whole policy file (YAML) holding the candidates' allow rules, for `gatekit validate` or review.

    The dumper's own output (`dump_policy(parse_policy(text)) == text`): the header and each rule's
    `rule_yaml`, which is the list item the dumper writes for it.
    """
    head = {"version": 1, "name": name, "default": "allow", "on_error": "escalate", "timezone": "UTC"}
    rules = candidates["rule_yaml"].to_list() if candidates.height else []
    return dump_yaml(head) + "rules:\n" + "".join(rules) if rules else dump_yaml({**head, "rules": []})


# ---- the report entry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fatigue:
    """Reviewer fatigue for a run: frames plus the headline numbers (see `reviewer_fatigue`)."""

    run: str
    reviews: int
    reviewers: pl.DataFrame
    load: pl.DataFrame
    latency_by_tier: pl.DataFrame
    queue: pl.DataFrame
    timed_out: pl.DataFrame
    sla_breaches: pl.DataFrame
    promotions: pl.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def rubber_stamps(self) -> list[str]:
        return self.reviewers.filter(pl.col("rubber_stamp"))["reviewer"].to_list()

    @property
    def overloaded(self) -> list[str]:
        return self.reviewers.filter(pl.col("overloaded"))["reviewer"].to_list()

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """Headline numbers and every frame as rows; `limit` caps the per-action lists (timed-out reviews,
        SLA breaches), whose full counts stay in `timed_out` and `sla_breaches`."""
        return {
            "run": self.run, "reviews": self.reviews, "reviewer_count": self.reviewers.height,
            "rubber_stamps": self.rubber_stamps, "overloaded": self.overloaded,
            "timed_out": self.timed_out["action_id"].n_unique(), "sla_breaches": self.sla_breaches.height,
            "peak_open": int(self.queue["peak_open"].max() or 0) if self.queue.height else 0,
            "promotion_candidates": self.promotions.height,
            "settings": self.settings,
            "reviewers": records(self.reviewers), "load": records(self.load),
            "latency_by_tier": records(self.latency_by_tier), "queue": records(self.queue),
            "timed_out_reviews": records(_capped(self.timed_out, limit)),
            "sla_breach_reviews": records(_capped(self.sla_breaches, limit)),
            "promotions": records(self.promotions),
        }


def reviewer_fatigue(run: Run, *, hours: BusinessHours = BUSINESS_HOURS, sla_s: float = SLA_S,
                     fast_s: float = FAST_S, timeouts_s: Mapping[str, float] = TIMEOUTS_S,
                     default_timeout_s: float = DEFAULT_TIMEOUT_S, min_reviews: int = MIN_REVIEWS,
                     min_approved: int = MIN_APPROVED, queue_every: str = "1h") -> Fatigue:
    """Every fatigue metric for `run` (whose tiers group the latencies and set the timeouts).

    >>> reviewer_fatigue(load_run(store, "starter")).rubber_stamps
    """
    approvals, decisions = run.approvals, run.frame.select("seq", "tier")
    return Fatigue(
        run=run.name,
        reviews=_reviews(approvals).height,
        reviewers=reviewer_stats(approvals, hours=hours, fast_s=fast_s, sla_s=sla_s, min_reviews=min_reviews),
        load=reviewer_load(approvals, hours=hours),
        latency_by_tier=decision_latency(approvals, decisions, sla_s=sla_s),
        queue=queue_depth(approvals, every=queue_every),
        timed_out=timed_out_reviews(approvals, decisions, timeouts_s=timeouts_s,
                                    default_timeout_s=default_timeout_s),
        sla_breaches=sla_breaches(approvals, sla_s=sla_s),
        promotions=promotion_candidates(approvals, run.reviewed_args, min_approved=min_approved),
        settings={"business_hours": {"start": hours.start, "end": hours.end, "weekdays": list(hours.weekdays),
                                     "timezone": hours.timezone},
                  "sla_s": sla_s, "fast_s": fast_s, "timeouts_s": dict(timeouts_s),
                  "default_timeout_s": default_timeout_s, "min_reviews": min_reviews,
                  "min_approved": min_approved, "queue_every": queue_every},
    )


def _capped(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    return frame if limit is None else frame.head(limit)
