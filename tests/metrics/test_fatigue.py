"""Reviewer fatigue: load, latency, rubber stamps, overload, the queue, timeouts, SLA breaches, promotions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.metrics.fatigue import (
    BusinessHours, decision_latency, promotion_candidates, promotion_policy, queue_depth,
    reviewer_fatigue, reviewer_load, reviewer_stats, sla_breaches, timed_out_reviews,
)
from gatekit.run import approvals_frame, decisions_frame, load_run, reviewed_args
from gatekit.policy import decide, parse_policy

from .conftest import check_golden

T0 = datetime(2026, 10, 5, 9, 0, tzinfo=timezone.utc)  # a Monday, in business hours


def approvals(rows: list[dict]) -> pl.DataFrame:
    """A frame shaped like `approvals_frame`'s; each row gives what it needs, the rest is defaulted."""
    base = {"tool": "payment.refund", "agent": "bot", "session": "s", "user": "u-x", "outcome": "executed",
            "label": None, "evidence_hash": "e", "executed_hash": "e", "approval_index": 0, "reviewer": "r1",
            "role": "finance", "review": "approve", "break_glass": False, "reason": None, "approval": "{}"}
    out = []
    for i, row in enumerate(rows):
        rec = {**base, "seq": i + 1, "action_id": f"x-{i + 1}", **row}
        rec.setdefault("ts", T0 + timedelta(minutes=i))
        rec.setdefault("requested_at", rec["ts"])
        rec.setdefault("decided_at", rec["requested_at"] + timedelta(seconds=rec.pop("latency", 60)))
        out.append(rec)
    frame = pl.DataFrame(out, schema_overrides={c: pl.Datetime("us", "UTC") for c in ("ts", "requested_at",
                                                                                        "decided_at")})
    return frame.with_columns(
        latency_s=(pl.col("decided_at") - pl.col("requested_at")).dt.total_microseconds() / 1e6)


# ---- planted signals on the sample ---------------------------------------------------------------------
def test_reviewer_stats_reproduce_the_generators_numbers_for_every_reviewer(store, planted) -> None:
    stats = {r["reviewer"]: r for r in reviewer_stats(approvals_frame(store)).to_dicts()}
    for name, want in planted["reviewers"]["all"].items():
        got = stats[name]
        assert got["reviews"] == want["reviews"], name
        assert round(got["reviews_per_day"], 2) == want["reviews_per_day"], name
        assert round(got["approve_rate"], 4) == want["approval_rate"], name
        assert round(got["latency_median_s"], 1) == want["median_latency_s"], name
        assert got["longest_approval_streak"] == want["longest_approval_streak"], name
        assert round(got["after_hours_share"], 4) == want["after_hours_share"], name


def test_the_planted_rubber_stamp_is_the_only_one_flagged(store, planted) -> None:
    want = planted["reviewers"]["rubber_stamp"]
    stats = reviewer_stats(approvals_frame(store))
    assert stats.filter(pl.col("rubber_stamp"))["reviewer"].to_list() == [want["reviewer"]]
    tom = stats.filter(pl.col("reviewer") == want["reviewer"]).row(0, named=True)
    assert tom["fast_share"] > 0.9 and tom["latency_median_s"] < 10
    assert tom["longest_approval_streak"] == want["longest_approval_streak"]


def test_the_planted_overloaded_reviewer_is_the_only_one_flagged(store, planted) -> None:
    want = planted["reviewers"]["overloaded"]
    stats = reviewer_stats(approvals_frame(store))
    assert stats.filter(pl.col("overloaded"))["reviewer"].to_list() == [want["reviewer"]]
    omar = stats.filter(pl.col("reviewer") == want["reviewer"]).row(0, named=True)
    others = stats.filter(pl.col("reviewer") != want["reviewer"])["reviews_per_day"].max()
    assert omar["reviews_per_day"] >= 2 * others
    assert round(others, 2) == want["others_max_reviews_per_day"]


def test_every_planted_timeout_of_the_overloaded_reviewer_is_found(store, planted) -> None:
    want = planted["reviewers"]["overloaded"]
    timed = timed_out_reviews(approvals_frame(store), decisions_frame(store, "starter"))
    mine = set(timed.filter(pl.col("reviewer") == want["reviewer"])["action_id"])
    assert set(want["timed_out"]) <= mine
    # and the approvals that came after the timeout on actions that ran anyway; nothing else
    assert set(planted["approved_after_timeout"]) <= set(timed.filter(pl.col("late"))["action_id"])
    assert planted["counts"]["by_outcome"]["timed_out"] == len(want["timed_out"])
    assert set(timed["action_id"]) == set(want["timed_out"]) | set(planted["approved_after_timeout"])


def test_every_planted_sla_breach_is_found(store, planted) -> None:
    want = planted["reviewers"]["overloaded"]
    breaches = sla_breaches(approvals_frame(store))
    assert sorted(breaches.filter(pl.col("reviewer") == want["reviewer"])["action_id"]) == want["sla_breaches"]
    assert (breaches["latency_s"] > 3600).all()


def test_the_planted_promotion_candidate_is_found_with_its_counts(store, planted) -> None:
    want = planted["promotion_candidates"][0]
    found = promotion_candidates(approvals_frame(store), reviewed_args(store))
    (field, test), = want["when"].items()
    (op, operand), = test.items()
    row = found.filter((pl.col("tool") == want["tool"]) & (pl.col("agent") == want["agent"])
                       & (pl.col("field") == field) & (pl.col("op") == op))
    assert row.height == 1
    got = row.row(0, named=True)
    assert float(got["operand"]) == operand
    assert (got["reviewed"], got["approved"], got["denied"]) == (want["reviewed"], want["approved"], want["denied"])
    assert (found["denied"] == 0).all() and (found["approved"] >= 30).all()


def test_promotion_rules_are_a_valid_policy_that_allows_exactly_the_pattern(store) -> None:
    found = promotion_candidates(approvals_frame(store), reviewed_args(store))
    policy = parse_policy(promotion_policy(found))
    assert [r.id for r in policy.rules] == found["rule_id"].to_list()
    refund = found.filter(pl.col("op") == "lt").row(0, named=True)
    call = {"tool": refund["tool"], "agent": refund["agent"], "args": {"amount": 49.99}}
    assert refund["rule_id"] in decide(policy, call).rules
    assert refund["rule_id"] not in decide(policy, {**call, "args": {"amount": 50}}).rules
    assert refund["rule_id"] not in decide(policy, {**call, "agent": "other-bot"}).rules
    assert {r.action for r in policy.rules} == {"allow"}


def test_promotion_rules_quote_any_name_and_value() -> None:
    odd = 'bot "7": \n #x'
    rows = [{"agent": odd, "tool": "db.update"} for _ in range(3)]
    args = pl.DataFrame({"seq": [1, 2, 3], "field": ["args.note"] * 3, "number": [None] * 3,
                         "text": ["it's: {a} - [b] \\ \u00e9"] * 3}, schema_overrides={"number": pl.Float64})
    found = promotion_candidates(approvals(rows), args, min_approved=3)
    assert found.height == 1
    policy = parse_policy(promotion_policy(found))
    call = {"tool": "db.update", "agent": odd, "args": {"note": "it's: {a} - [b] \\ \u00e9"}}
    assert list(decide(policy, call).rules) == [found["rule_id"][0]]


def test_a_denial_caps_the_threshold_below_it_and_few_approvals_propose_nothing() -> None:
    amounts = [5.0, 12.0, 30.0, 140.0, 260.0]
    rows = [{"review": "deny" if a == 260.0 else "approve"} for a in amounts]
    args = pl.DataFrame({"seq": list(range(1, 6)), "field": ["args.amount"] * 5, "number": amounts,
                         "text": [None] * 5}, schema_overrides={"text": pl.String})
    found = promotion_candidates(approvals(rows), args, min_approved=4)
    assert found.select("op", "operand", "approved").rows() == [("lt", "200", 4)]
    assert promotion_candidates(approvals(rows), args, min_approved=5).is_empty()
    never = promotion_candidates(approvals([{} for _ in amounts]), args, min_approved=5)
    assert never.select("operand", "approved").rows() == [("500", 5)]  # above every value seen


@pytest.mark.parametrize("denied, threshold", [
    (1000.0, "1000"), (999.99, "500"), (0.3, "0.2"), (5.0, "5"), (20000.0, "20000"), (1e-3, "0.001"), (70.0, "50"),
])
def test_the_threshold_is_the_largest_round_number_at_most_the_smallest_denial(denied: float, threshold: str) -> None:
    amounts = [denied / 10**k for k in range(1, 4)] + [denied, denied * 2]
    rows = [{"review": "deny" if a >= denied else "approve"} for a in amounts]
    args = pl.DataFrame({"seq": list(range(1, 6)), "field": ["args.amount"] * 5, "number": amounts,
                         "text": [None] * 5}, schema_overrides={"text": pl.String})
    found = promotion_candidates(approvals(rows), args, min_approved=1)
    assert found.select("operand", "approved", "denied").rows() == [(threshold, 3, 0)]


# ---- small frames --------------------------------------------------------------------------------------
def test_load_after_hours_follow_the_business_hours_timezone() -> None:
    late = datetime(2026, 10, 5, 20, 30, tzinfo=timezone.utc)  # Monday 20:30 UTC: Tuesday 02:00 in Kolkata
    frame = approvals([{"requested_at": late, "ts": late}, {"requested_at": T0, "ts": T0}])
    monday, tuesday = datetime(2026, 10, 5).date(), datetime(2026, 10, 6).date()
    assert reviewer_load(frame).select("day", "reviews", "after_hours").rows() == [(monday, 2, 1)]
    kolkata = reviewer_load(frame, hours=BusinessHours(timezone="Asia/Kolkata"))  # T0 is 14:30 there
    assert kolkata.select("day", "reviews", "after_hours").rows() == [(monday, 1, 0), (tuesday, 1, 1)]
    weekend = reviewer_load(frame, hours=BusinessHours(start=0, end=24, weekdays=(6, 7)))
    assert weekend["after_hours"].to_list() == [2]


def test_streaks_fast_approvals_and_rates_on_a_known_sequence() -> None:
    reviews = ["approve", "approve", "deny", "approve", "approve", "approve", "deny"]
    frame = approvals([{"review": r, "latency": 5 if i < 2 else 100} for i, r in enumerate(reviews)])
    row = reviewer_stats(frame, min_reviews=1).row(0, named=True)
    assert row["longest_approval_streak"] == 3
    assert row["fast_approvals"] == 2 and row["fast_share"] == pytest.approx(2 / 5)
    assert row["approve_rate"] == pytest.approx(5 / 7) and not row["rubber_stamp"]


def test_a_review_with_unreadable_times_counts_but_has_no_latency_day_or_hours() -> None:
    frame = approvals([{}, {}]).with_columns(
        requested_at=pl.when(pl.col("seq") == 2).then(None).otherwise(pl.col("requested_at")),
        latency_s=pl.when(pl.col("seq") == 2).then(None).otherwise(pl.col("latency_s")))
    row = reviewer_stats(frame, min_reviews=1).row(0, named=True)
    assert (row["reviews"], row["after_hours"], row["sla_breaches"], row["days_active"]) == (2, 0, 0, 1)
    assert reviewer_load(frame).select("day", "reviews").rows() == [(T0.date(), 1), (None, 1)]
    assert queue_depth(frame)["requested"].sum() == 1


def test_break_glass_approvals_are_not_reviews() -> None:
    frame = approvals([{}, {"break_glass": True, "latency": 99999}])
    row = reviewer_stats(frame, min_reviews=1).row(0, named=True)
    assert (row["reviews"], row["break_glass"], row["sla_breaches"]) == (1, 1, 0)
    assert sla_breaches(frame).is_empty() and queue_depth(frame)["requested"].sum() == 1


def test_latency_by_tier_uses_the_runs_tier() -> None:
    frame = approvals([{"latency": 10}, {"latency": 30}, {"latency": 7200}])
    decisions = pl.DataFrame({"seq": [1, 2, 3], "tier": ["critical", "critical", None]})
    out = decision_latency(frame, decisions)
    assert out.rows() == [("critical", 2, 20.0, 28.0, 0), (None, 1, 7200.0, 7200.0, 1)]


def test_timeouts_follow_the_tier_and_the_recorded_outcome() -> None:
    frame = approvals([{"latency": 1900}, {"latency": 1900}, {"latency": 60, "outcome": "timed_out"}])
    decisions = pl.DataFrame({"seq": [1, 2, 3], "tier": ["critical", "standard", "standard"]})
    out = timed_out_reviews(frame, decisions)
    assert out.select("action_id", "late", "timeout_s").rows() == [("x-1", True, 1800.0), ("x-3", False, 14400.0)]


_interval = st.tuples(st.integers(0, 6 * 3600), st.integers(0, 3 * 3600))


@given(st.lists(_interval, min_size=1, max_size=30))
def test_queue_depth_counts_the_requests_open_at_each_hour(intervals: list[tuple[int, int]]) -> None:
    frame = approvals([{"requested_at": T0 + timedelta(seconds=s), "latency": d} for s, d in intervals])
    q = queue_depth(frame)
    spans = [(T0 + timedelta(seconds=s), T0 + timedelta(seconds=s + d)) for s, d in intervals]
    assert q["requested"].sum() == q["decided"].sum() == len(spans)
    assert q["start"].diff().drop_nulls().eq(timedelta(hours=1)).all()
    for start, carried, peak in q.select("start", "open_at_start", "peak_open").rows():
        end = start + timedelta(hours=1)
        assert carried == sum(1 for a, b in spans if a < start <= b)  # requested before, still open at start
        events = [t for a, b in spans for t in (a, b) if start <= t < end]
        assert peak == max([carried] + [sum(1 for a, b in spans if a <= t < b) for t in events])


# ---- the report entry ----------------------------------------------------------------------------------
def test_reviewer_fatigue_to_dict_is_json(store) -> None:
    fatigue = reviewer_fatigue(load_run(store, "starter"))
    out = json.loads(json.dumps(fatigue.to_dict()))
    assert out["rubber_stamps"] == ["u-tom"] and out["overloaded"] == ["u-omar"]
    assert out["reviews"] == sum(r["reviews"] for r in out["reviewers"])
    assert out["promotion_candidates"] == len(out["promotions"]) >= 1
    assert sum(d["reviews"] for d in out["load"]) == out["reviews"]
    short = fatigue.to_dict(limit=5)
    assert len(short["sla_breach_reviews"]) == 5 and short["sla_breaches"] == out["sla_breaches"] > 5


def test_golden_fatigue(store) -> None:
    a, d = approvals_frame(store), decisions_frame(store, "starter")
    check_golden("fatigue_reviewers", reviewer_stats(a))
    check_golden("fatigue_latency_by_tier", decision_latency(a, d))
    check_golden("fatigue_latency_by_role_tier", decision_latency(a, d, ["role", "tier"]))
    check_golden("fatigue_queue_daily", queue_depth(a, every="1d"))
    check_golden("fatigue_timed_out", timed_out_reviews(a, d))
    check_golden("fatigue_promotions", promotion_candidates(a, reviewed_args(store)).drop("rule_yaml"))


def test_promotion_policy_is_the_dumpers_own_output(store) -> None:
    from gatekit.policy.dump import dump_policy, dump_yaml, rule_dict

    found = promotion_candidates(approvals_frame(store), reviewed_args(store))
    text = promotion_policy(found)
    policy = parse_policy(text)
    assert found.height and dump_policy(policy) == text
    assert found["rule_yaml"].to_list() == [dump_yaml([rule_dict(r)]) for r in policy.rules]
    assert dump_policy(parse_policy(promotion_policy(found.head(0)))) == promotion_policy(found.head(0))
