"""Would-be decision rates, Wilson intervals, rule firing, workload forecast and the smell test."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.run import approvals_frame, decisions_frame, load_run
from gatekit.metrics.rates import (
    BY_KEYS, DECISIONS, Z95, decision_rates, escalation_rate_by, routine_escalations, routine_tools, rule_firing,
    local_time, smell_test, summarize_rates, wilson, with_time_keys, workload_forecast,
)
from gatekit.policy import parse_policy

from .conftest import check_golden

# ---- generated decision frames -------------------------------------------------------------------------
_T0 = datetime(2026, 10, 3, 22, 0, tzinfo=timezone.utc)  # a Saturday evening: days, weekdays and weeks change
_row = st.tuples(
    st.sampled_from(DECISIONS),
    st.sampled_from(["pay.send", "db.query", "mail.send"]),
    st.sampled_from(["a1", "a2", None]),
    st.one_of(st.integers(0, 60 * 60 * 72), st.integers(0, 72).map(lambda h: h * 3600)),  # on the hour: boundaries
    st.lists(st.sampled_from(["r1", "r2", "r3"]), unique=True, max_size=3),
    st.sampled_from([None, "standard", "critical"]),
    st.integers(0, 2),
    st.sampled_from(["executed", "denied", "blocked"]),
)


def decision_frame(rows: list[tuple]) -> pl.DataFrame:
    """A frame shaped like `decisions_frame`'s, from generated rows."""
    return pl.DataFrame({
        "seq": list(range(1, len(rows) + 1)),
        "action_id": [f"x-{i}" for i in range(len(rows))],
        "ts": [_T0 + timedelta(seconds=r[3]) for r in rows],
        "agent": [r[2] for r in rows],
        "session": [f"s-{i // 3}" for i in range(len(rows))],
        "user": ["u"] * len(rows),
        "tool": [r[1] for r in rows],
        "outcome": [r[7] for r in rows],
        "approvals": [r[6] for r in rows],
        "decision": [r[0] for r in rows],
        "rules": [r[4] for r in rows],
        "errors": [[] for _ in rows],
        "tier": [r[5] if r[0] == "escalate" else None for r in rows],
    }, schema_overrides={"ts": pl.Datetime("us", "UTC"), "rules": pl.List(pl.String), "errors": pl.List(pl.String),
                         "approvals": pl.UInt64})


frames = st.lists(_row, min_size=1, max_size=40).map(decision_frame)


# ---- Wilson --------------------------------------------------------------------------------------------
def _wilson(x: int, n: int) -> tuple[float, float]:
    out = pl.DataFrame({"x": [x], "n": [n]}).select(*wilson("x", "n"))
    return out["lower"][0], out["upper"][0]


@pytest.mark.parametrize(("x", "n", "lower", "upper"), [
    (0, 10, 0.0, 0.277533),    # z^2 / (n + z^2)
    (5, 10, 0.236593, 0.763407),
    (10, 10, 0.722467, 1.0),
    (1, 1, 0.206549, 1.0),     # n / (n + z^2)
    (50, 100, 0.403832, 0.596168),
])
def test_wilson_known_values(x: int, n: int, lower: float, upper: float) -> None:
    lo, hi = _wilson(x, n)
    assert lo == pytest.approx(lower, abs=1e-6)
    assert hi == pytest.approx(upper, abs=1e-6)


@given(n=st.integers(1, 10**7), data=st.data())
def test_wilson_bounds_solve_the_score_equation_and_contain_the_estimate(n: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, n))
    lo, hi = _wilson(x, n)
    p = x / n
    assert 0.0 <= lo <= p <= hi <= 1.0
    # the Wilson bounds are the p with (p - phat)^2 = z^2 p (1 - p) / n, except where clamped to the end
    for bound in (lo, hi):
        if 0 < bound < 1:
            assert (bound - p) ** 2 == pytest.approx(Z95 ** 2 * bound * (1 - bound) / n, rel=1e-6, abs=1e-15)


def test_wilson_is_null_without_observations() -> None:
    assert _wilson(0, 0) == (None, None)


# ---- decision rates ------------------------------------------------------------------------------------
@given(frame=frames, key=st.sampled_from([k for k in BY_KEYS if k not in ("session", "user")] + ["session"]))
def test_rates_sum_to_one_overall_and_within_every_group(frame: pl.DataFrame, key: str) -> None:
    overall = decision_rates(frame)
    assert overall["decision"].cast(pl.String).to_list() == list(DECISIONS)
    assert overall["rate"].sum() == pytest.approx(1.0)
    assert overall["count"].sum() == frame.height
    rates = decision_rates(frame, key)
    sums = rates.group_by(key).agg(pl.col("rate").sum(), pl.len(), n=pl.col("count").sum(), t=pl.col("total").first())
    assert sums["len"].to_list() == [3] * sums.height  # every decision in every group, zeros included
    assert all(s == pytest.approx(1.0) for s in sums["rate"])
    assert (sums["n"] == sums["t"]).all()
    assert ((rates["lower"] <= rates["rate"]) & (rates["rate"] <= rates["upper"])).all()
    if key != "rule":  # by rule an action counts once per matched rule
        assert rates["count"].sum() == frame.height


@given(frame=frames)
def test_rates_by_two_keys_and_by_rule_count_each_match(frame: pl.DataFrame) -> None:
    rates = decision_rates(frame, ["tool", "weekday"])
    assert rates.group_by("tool", "weekday").agg(pl.col("rate").sum())["rate"].to_list() == pytest.approx(
        [1.0] * (rates.height // 3))
    by_rule = decision_rates(frame, "rule")
    matches = sum(max(len(r), 1) for r in frame["rules"].to_list())  # no match: one row under a null rule
    assert by_rule["count"].sum() == matches


def test_time_keys_follow_the_timezone() -> None:
    frame = decision_frame([("escalate", "pay.send", "a1", 0, [], None, 0, "executed")])  # Sat 22:00 UTC
    assert decision_rates(frame, ["hour", "weekday", "day"])["hour"][0] == 22
    kolkata = decision_rates(frame, ["hour", "weekday", "day"], timezone="Asia/Kolkata")
    assert (kolkata["hour"][0], str(kolkata["weekday"][0]), str(kolkata["day"][0])) == (3, "sun", "2026-10-04")


_ZONES = ["UTC", "America/Vancouver", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe", "America/Sao_Paulo",
          "Pacific/Chatham", "Africa/Casablanca"]


@given(st.lists(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2400, 1, 1),
                             timezones=st.just(timezone.utc)), min_size=1, max_size=50),
       st.sampled_from(_ZONES))
def test_local_time_is_the_policys_local_time(instants: list[datetime], name: str) -> None:
    """Hours, days and business hours in the metrics read local time as decide does: the pinned tzdata."""
    from gatekit.policy.timezones import zone

    frame = pl.DataFrame({"ts": instants}, schema={"ts": pl.Datetime("us", "UTC")})
    got = frame.select(local_time(pl.col("ts"), name)).to_series().to_list()
    assert got == [t.astimezone(zone(name)).replace(tzinfo=None) for t in instants]


def test_hours_in_a_zone_whose_rules_changed_recently_follow_the_pinned_database() -> None:
    """America/Vancouver in late 2026: the pinned tzdata says UTC-7 where polars' own zone data says UTC-8;
    the hour the report counts must be the hour a policy's `hour` test sees."""
    from gatekit.policy import decide

    at = datetime(2026, 12, 17, 20, 30, tzinfo=timezone.utc)
    policy = parse_policy(json.dumps({"version": 1, "name": "h", "timezone": "America/Vancouver", "default": "allow",
                                      "rules": [{"id": "at-13", "tool": "t", "action": "deny",
                                                 "when": {"time.hour": 13}}]}))
    seen = decide(policy, {"tool": "t", "ts": at.isoformat()}).decision
    keyed = with_time_keys(pl.DataFrame({"ts": [at]}), "America/Vancouver", ("hour",))["hour"].item()
    assert seen == "deny" and keyed == 13  # UTC-7: 13:30 local (polars' own data would say 12)


def test_unknown_group_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot group by `colour`"):
        decision_rates(decision_frame([("allow", "x", None, 0, [], None, 0, "executed")]), "colour")


def test_escalation_rate_by_ranks_groups(store) -> None:
    ranked = escalation_rate_by(decisions_frame(store, "starter"), "tool")
    assert ranked["escalations"].to_list() == sorted(ranked["escalations"].to_list(), reverse=True)
    assert ranked["tool"][0] == "payment.send"  # payments dominate the starter's reviews
    assert ranked["escalations"].sum() == load_run(store, "starter").escalate


# ---- rule firing ---------------------------------------------------------------------------------------
def test_rule_firing_lists_every_rule_and_the_ones_that_never_fire(store) -> None:
    frame = decisions_frame(store, "strict")
    policy = load_run(store, "strict").policy
    firing = rule_firing(frame, policy)
    assert firing["rule"].to_list() == [r.id for r in policy.rules]
    exploded = frame.select(pl.col("rules").explode()).drop_nulls()["rules"].value_counts()
    counts = dict(zip(exploded["rules"], exploded["count"]))
    assert dict(zip(firing["rule"], firing["fired"])) == {r.id: counts.get(r.id, 0) for r in policy.rules}
    assert firing.filter("never_fired")["rule"].to_list() == [r.id for r in policy.rules if r.id not in counts]
    assert (firing["fired_allow"] + firing["fired_escalate"] + firing["fired_deny"] == firing["fired"]).all()


def test_rule_firing_without_a_policy_and_with_rules_the_policy_lacks() -> None:
    frame = decision_frame([("escalate", "pay.send", "a1", 0, ["r1", "r9"], None, 0, "executed"),
                            ("allow", "db.query", "a1", 5, [], None, 0, "executed")])
    policy = parse_policy('{"version": 1, "name": "p", "rules": [{"id": "r1", "tool": "pay.*", "action": "escalate"},'
                          ' {"id": "r2", "tool": "db.*", "action": "deny", "mode": "shadow"}]}')
    firing = rule_firing(frame, policy)
    assert firing.select("rule", "fired", "never_fired", "mode").rows() == [
        ("r1", 1, False, "enforce"), ("r2", 0, True, "shadow"), ("r9", 1, False, None)]
    assert rule_firing(frame)["rule"].to_list() == ["r1", "r9"]


def test_weekend_deploy_canary_fires_on_exactly_the_planted_weekend_deploys(store, planted) -> None:
    frame = decisions_frame(store, "starter")
    fired = frame.filter(pl.col("rules").list.contains("weekend-deploys"))
    assert set(fired["action_id"]) == set(planted["weekend_deploys"])
    # a shadow rule decides nothing: half of them are still allowed
    firing = rule_firing(frame, load_run(store, "starter").policy).filter(pl.col("rule") == "weekend-deploys")
    assert firing["mode"][0] == "shadow" and firing["fired_allow"][0] > 0
    by_day = decision_rates(fired, "weekday")
    assert set(by_day.filter(pl.col("count") > 0)["weekday"].cast(pl.String)) == {"sat", "sun"}


def test_email_burst_rule_fires_only_inside_the_planted_bursts(store, planted) -> None:
    frame = decisions_frame(store, "starter")
    firing = rule_firing(frame, load_run(store, "starter").policy).filter(pl.col("rule") == "email-burst")
    bursts = planted["email_bursts"]
    assert firing["fired"][0] == sum(b["count"] - 20 for b in bursts)  # rate > 20: all but the first 20
    fired = set(frame.filter(pl.col("rules").list.contains("email-burst"))["action_id"])
    assert fired <= {a for b in bursts for a in b["action_ids"]}


# ---- workload and smell test ---------------------------------------------------------------------------
def test_workload_forecast_on_the_sample(store) -> None:
    frame = decisions_frame(store, "starter")
    approvals = approvals_frame(store)
    policy = load_run(store, "starter").policy
    tiers = {t.name: t.approvals for t in policy.tiers.values()}
    row = workload_forecast(frame, approvals, tier_approvals=tiers).row(0, named=True)
    median = store.con.execute(
        "SELECT median(epoch(TRY_CAST(ap.value->>'decided_at' AS TIMESTAMPTZ)) - "
        "epoch(TRY_CAST(ap.value->>'requested_at' AS TIMESTAMPTZ))) "
        "FROM actions a, json_each(a.approvals) ap").fetchall()[0][0]
    assert row["days"] == 28
    assert row["escalations"] == load_run(store, "starter").escalate
    assert row["median_review_s"] == pytest.approx(median, rel=1e-9)
    critical = frame.filter((pl.col("decision") == "escalate") & pl.col("tier").str.starts_with("critical")).height
    assert row["reviews"] == row["escalations"] + critical  # critical tiers need two approvals
    assert row["reviewer_hours_per_week"] == pytest.approx(row["reviews"] / 4 * median / 3600)
    assert 8 <= row["peak_hour"] <= 18  # business hours carry most traffic
    assert str(row["busiest_day"]) == "2026-10-30"  # billing-bot's month-end payment run
    plain = workload_forecast(frame, approvals).row(0, named=True)
    assert plain["reviews"] == plain["escalations"]


def test_workload_forecast_without_approvals_or_escalations() -> None:
    frame = decision_frame([("allow", "db.query", "a1", s, [], None, 0, "executed") for s in (0, 90_000)])
    row = workload_forecast(frame, pl.DataFrame({"latency_s": []}, schema={"latency_s": pl.Float64})).row(0, named=True)
    assert (row["days"], row["escalations"], row["peak_hour"], row["median_review_s"]) == (2, 0, None, None)
    assert row["reviewer_hours_per_week"] is None


def test_routine_tools_are_those_no_human_ever_reviewed_or_denied(store) -> None:
    frame = decisions_frame(store, "starter")
    # email.send is only ever `blocked` by the recorded world's rate limiter: still routine
    assert routine_tools(frame) == ["crm.lookup", "db.query", "docs.search", "email.send", "kb.search",
                                    "tickets.read", "tickets.update"]


def test_routine_means_never_reviewed_and_never_denied() -> None:
    rows = [("allow", "read", "a1", 0, [], None, 0, "executed"),
            ("allow", "pay", "a1", 0, [], None, 0, "executed"), ("allow", "pay", "a1", 0, [], None, 1, "executed"),
            ("allow", "drop", "a1", 0, [], None, 0, "executed"), ("allow", "drop", "a1", 0, [], None, 0, "denied"),
            ("allow", "mail", "a1", 0, [], None, 0, "blocked"), ("allow", "mail", "a1", 0, [], None, 0, "failed")]
    assert routine_tools(decision_frame(rows)) == ["mail", "read"]


@given(frame=frames, threshold=st.sampled_from([0.0, 0.1, 0.5]))
def test_smell_test_flags_more_than_the_threshold_of_routine_escalations(frame: pl.DataFrame, threshold: float) -> None:
    routine = routine_tools(frame)
    row = smell_test(frame, threshold=threshold).row(0, named=True)
    subset = frame.filter(pl.col("tool").is_in(routine))
    escalated = subset.filter(pl.col("decision") == "escalate").height
    assert (row["routine_actions"], row["escalations"]) == (subset.height, escalated)
    assert row["flagged"] == (subset.height > 0 and escalated / subset.height > threshold)
    assert routine_escalations(frame)["escalations"].sum() == escalated


def test_smell_test_on_the_sample(store) -> None:
    starter = smell_test(decisions_frame(store, "starter")).row(0, named=True)
    assert not starter["flagged"] and starter["rate"] < 0.01
    noisy = decisions_frame(store, "starter").with_columns(
        decision=pl.when(pl.col("tool") == "kb.search").then(pl.lit("escalate")).otherwise("decision"))
    assert smell_test(noisy)["flagged"][0]  # kb.search alone is 15% of routine calls
    assert not smell_test(noisy, threshold=0.2)["flagged"][0]
    assert smell_test(noisy, routine=["kb.search"])["rate"][0] == 1.0


# ---- the summary ---------------------------------------------------------------------------------------
def test_summary_to_dict_is_json_and_matches_the_run(store) -> None:
    summary = summarize_rates(load_run(store, "starter"))
    doc = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    run = load_run(store, "starter")
    assert doc["decisions"] == run.decisions
    assert [r["rate"] for r in doc["rates"]] == pytest.approx([run.rate(d) for d in DECISIONS])
    assert set(doc["by"]) == {"tool", "agent", "rule", "tier", "hour", "weekday", "day"}
    assert doc["never_fired"] == [] and len(doc["rule_firing"]) == 20
    assert doc["smell_test"]["flagged"] is False and "email.send" in doc["smell_test"]["routine_tools"]
    assert doc["workload"]["busiest_day"] == "2026-10-30"
    assert summarize_rates(load_run(store, "strict")).never_fired == ("email-many-recipients",)
    assert math.isclose(sum(r["rate"] for r in doc["rates"]), 1.0)


# ---- golden files --------------------------------------------------------------------------------------
def test_golden_rates(store) -> None:
    runs = ("starter", "strict")
    frames_ = {run: decisions_frame(store, run) for run in runs}
    approvals = approvals_frame(store)
    check_golden("rates_overall", pl.concat([decision_rates(f).select(pl.lit(r).alias("run"), pl.all())
                                             for r, f in frames_.items()]))
    check_golden("rates_by_tool", decision_rates(frames_["starter"], "tool"))
    check_golden("rates_by_agent", decision_rates(frames_["starter"], "agent"))
    check_golden("rates_by_weekday", decision_rates(frames_["starter"], "weekday"))
    check_golden("rates_by_tier", decision_rates(frames_["strict"], "tier"))
    for run in runs:
        check_golden(f"rates_rule_firing_{run}", rule_firing(frames_[run], load_run(store, run).policy))
    policy = {run: load_run(store, run).policy for run in runs}
    check_golden("rates_workload", pl.concat([
        workload_forecast(f, approvals, tier_approvals={t.name: t.approvals for t in policy[r].tiers.values()})
        .select(pl.lit(r).alias("run"), pl.all()) for r, f in frames_.items()]))
    check_golden("rates_smell", pl.concat([smell_test(f).select(pl.lit(r).alias("run"), pl.all())
                                           for r, f in frames_.items()]))
