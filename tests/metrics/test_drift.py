"""Drift: behaviour between windows, execution drift, coverage and rule drift."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.metrics.drift import (
    _ks_pvalue, argument_values, coverage, escalation_rate_change, execution_drift, execution_drift_actions,
    in_window, numeric_drift, numeric_fields, rule_drift, rule_rate_change, split_halves, split_weeks,
    summarize_drift, tool_mix_psi,
)
from gatekit.run import approvals_frame, decisions_frame, load_run
from gatekit.policy import parse_policy

from .conftest import check_golden
from .test_rates import decision_frame, frames

UTC = timezone.utc


def _values(rows: list[tuple[str, float]]) -> pl.DataFrame:
    return pl.DataFrame({"field": ["args.x"] * len(rows), "tool": [t for t, _ in rows], "value": [v for _, v in rows]},
                        schema={"field": pl.String, "tool": pl.String, "value": pl.Float64})


values = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([0.0, 1.0, 2.5, 2.5, 100.0, -3.0])),
                  min_size=1, max_size=30).map(_values)


# ---- a window against itself ---------------------------------------------------------------------------
@given(frame=frames, sample=values)
def test_drift_of_a_window_against_itself_is_zero(frame: pl.DataFrame, sample: pl.DataFrame) -> None:
    mix = tool_mix_psi(frame, frame)
    assert mix["psi"].sum() == 0.0 and set(mix["status"]) == {"both"}
    assert tool_mix_psi(frame, frame, by="agent")["psi"].sum() == 0.0
    for by in ((), "tool"):
        change = escalation_rate_change(frame, frame, by)
        assert (change["z"] == 0.0).all() and (change["p_value"] == 1.0).all() and (change["change"] == 0.0).all()
    rules = rule_rate_change(frame, frame)
    assert (rules["z"] == 0.0).all() and (rules["p_value"] == 1.0).all()
    shift = numeric_drift(sample, sample)
    assert (shift["ks"] == 0.0).all() and (shift["ks_p"] == 1.0).all()
    assert (shift["p50_a"] == shift["p50_b"]).all() and (shift["n_a"] == shift["n_b"]).all()


# ---- known values --------------------------------------------------------------------------------------
def test_psi_known_value_with_epsilon_for_a_new_tool() -> None:
    a = pl.DataFrame({"tool": ["x"] * 50 + ["y"] * 50})
    b = pl.DataFrame({"tool": ["x"] * 25 + ["y"] * 50 + ["z"] * 25})
    mix = tool_mix_psi(a, b, epsilon=1e-4)
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + 0.0 + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    assert mix["psi"].sum() == pytest.approx(expected)
    assert dict(zip(mix["tool"], mix["status"])) == {"x": "both", "y": "both", "z": "new"}
    assert tool_mix_psi(b, a)["status"].to_list() == ["both", "both", "vanished"]
    assert tool_mix_psi(a, a.head(0))["psi"].is_null().all()  # no shares in an empty window


def _brute_ks(a: list[float], b: list[float]) -> float:
    return max(abs(sum(x <= v for x in a) / len(a) - sum(x <= v for x in b) / len(b)) for v in a + b)


@given(a=values, b=values)
def test_ks_statistic_matches_a_brute_force_computation(a: pl.DataFrame, b: pl.DataFrame) -> None:
    shift = numeric_drift(a, b)
    for row in shift.iter_rows(named=True):
        xs = a.filter(pl.col("tool") == row["tool"])["value"].to_list()
        ys = b.filter(pl.col("tool") == row["tool"])["value"].to_list()
        assert (row["n_a"], row["n_b"]) == (len(xs), len(ys))
        if xs and ys:
            assert row["ks"] == pytest.approx(_brute_ks(xs, ys))
            assert 0.0 <= row["ks_p"] <= 1.0
        else:
            assert row["ks"] is None and row["ks_p"] is None


def test_ks_pvalue_known_values() -> None:
    # Q_KS(lambda): 0.05 at about 1.358, 0.01 at about 1.628; both series agree where they meet
    big = 10**8
    assert _ks_pvalue(1.3581 / math.sqrt(big / 2), big, big) == pytest.approx(0.05, abs=2e-4)
    assert _ks_pvalue(1.6276 / math.sqrt(big / 2), big, big) == pytest.approx(0.01, abs=1e-4)
    below, above = (_ks_pvalue(lam / math.sqrt(big / 2), big, big) for lam in (1.18 - 1e-9, 1.18 + 1e-9))
    assert below == pytest.approx(above, abs=1e-7)
    assert _ks_pvalue(0.0, 10, 10) == 1.0 and _ks_pvalue(1.0, 1000, 1000) < 1e-12


def test_two_proportion_z_test_known_value() -> None:
    a = decision_frame([("escalate" if i < 45 else "allow", "t", None, i, [], None, 0, "executed") for i in range(100)])
    b = decision_frame([("escalate" if i < 60 else "allow", "t", None, i, [], None, 0, "executed") for i in range(100)])
    row = escalation_rate_change(a, b).row(0, named=True)
    # pooled p = 0.525, se = sqrt(.525 * .475 * .02) = 0.070622, z = 0.15 / se
    assert row["z"] == pytest.approx(2.12398, abs=1e-5)
    assert row["p_value"] == pytest.approx(0.033672, abs=1e-5)
    assert (row["rate_a"], row["rate_b"], row["change"]) == pytest.approx((0.45, 0.6, 0.15))


# ---- windows -------------------------------------------------------------------------------------------
def test_windows_on_the_sample(store) -> None:
    frame = decisions_frame(store, "starter")
    halves = split_halves(frame)
    assert halves == [(datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 19, tzinfo=UTC)),
                      (datetime(2026, 10, 19, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))]
    weeks = split_weeks(frame)
    assert [w[0].date() for w in weeks] == [date(2026, 10, d) for d in (5, 12, 19, 26)]
    assert sum(in_window(frame, w).height for w in weeks) == frame.height
    assert sum(in_window(frame, w).height for w in halves) == frame.height


@given(frame=frames)
def test_windows_partition_any_frame(frame: pl.DataFrame) -> None:
    for tz in ("UTC", "America/New_York"):
        for windows in (split_halves(frame, timezone=tz), split_weeks(frame, timezone=tz)):
            assert all(s < e for s, e in windows) and all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
            assert sum(in_window(frame, w).height for w in windows) == frame.height


def test_a_window_holds_its_start_and_not_its_end() -> None:
    frame = decision_frame([("allow", "t", None, s, [], None, 0, "executed") for s in (7199, 7200, 7201)])
    midnight = datetime(2026, 10, 4, tzinfo=UTC)  # 7200 s after the generated frames' first instant
    assert in_window(frame, (midnight, datetime(2026, 10, 5, tzinfo=UTC)))["seq"].to_list() == [2, 3]
    assert in_window(frame, (datetime(2026, 10, 3, tzinfo=UTC), midnight))["seq"].to_list() == [1]


def test_procure_bot_is_a_new_agent_in_the_second_half(store) -> None:
    frame = decisions_frame(store, "starter")
    first, second = (in_window(frame, w) for w in split_halves(frame))
    agents = tool_mix_psi(first, second, by="agent")
    assert agents.filter(pl.col("status") != "both").select("agent", "status").rows() == [("procure-bot", "new")]
    assert agents["psi"].sum() > 0.25  # a major shift by the usual reading
    assert tool_mix_psi(first, second)["psi"].sum() < 0.1  # the tool mix itself is stable


# ---- numeric arguments ---------------------------------------------------------------------------------
def test_numeric_fields_of_the_starter(store) -> None:
    assert numeric_fields(load_run(store, "starter").policy) == {
        "args.amount": ["payments-over-100", "payments-over-10k", "payments-hourly-total"],
        "args.rows_affected": ["prod-updates"],
        "args.recipients": ["campaign-large"],
    }
    policy = parse_policy('{"version": 1, "name": "p", "rules": [{"id": "r", "tool": "x", "action": "deny", "when": '
                          '{"args.n": {"in": [1, 2]}, "args.s": {"in": ["a"]}, "args.b": true, '
                          '"time.hour": {"gt": 3}}}]}')
    assert numeric_fields(policy) == {"args.n": ["r"]}


def test_argument_values_read_numeric_strings_and_only_the_rules_tools(store, planted) -> None:
    frame = decisions_frame(store, "starter")
    values = argument_values(load_run(store, "starter"))
    assert set(values.select("field", "tool").unique().rows()) == {
        ("args.amount", "payment.send"), ("args.rows_affected", "db.update"),
        ("args.recipients", "email.campaign.send")}
    amounts = values.filter(pl.col("field") == "args.amount")
    ids = set(frame.filter(pl.col("seq").is_in(amounts["seq"].to_list()))["action_id"])
    assert set(planted["amount_strings"]["numeric"]) <= ids  # "1810.00" is a number
    assert not set(planted["amount_strings"]["malformed"]) & ids  # "1,810" is not
    shift = numeric_drift(*(in_window(values, w) for w in split_halves(frame)))
    assert shift.height == 3 and (shift["n_a"] + shift["n_b"]).sum() == values.height


# ---- execution drift -----------------------------------------------------------------------------------
def test_execution_drift_finds_exactly_the_planted_actions(store, planted) -> None:
    approvals = approvals_frame(store)
    assert execution_drift_actions(approvals)["action_id"].to_list() == sorted(planted["execution_drift"])
    overall = execution_drift(approvals).row(0, named=True)
    assert overall["drifted"] == len(planted["execution_drift"])
    assert overall["lower"] < overall["share"] < overall["upper"]
    for by in ("tool", "agent", "day"):
        per = execution_drift(approvals, by)
        assert per["drifted"].sum() == overall["drifted"] and per["approved"].sum() == overall["approved"]


def test_execution_drift_counts_approved_executed_actions_once() -> None:
    rows = [  # seq, review, outcome, evidence, executed
        (1, "approve", "executed", "h1", "h1"), (1, "approve", "executed", "h1", "h1"),  # two approvals, one action
        (2, "approve", "executed", "h2", "zz"),
        (3, "deny", "denied", "h3", None),
        (4, "approve", "timed_out", "h4", None),
        (5, "approve", "executed", None, "h5"),
    ]
    approvals = pl.DataFrame({
        "seq": [r[0] for r in rows], "action_id": [f"a{r[0]}" for r in rows],
        "ts": [datetime(2026, 1, 1, tzinfo=UTC)] * len(rows), "agent": ["b"] * len(rows), "tool": ["t"] * len(rows),
        "review": [r[1] for r in rows], "outcome": [r[2] for r in rows], "reviewer": ["u"] * len(rows),
        "evidence_hash": [r[3] for r in rows], "executed_hash": [r[4] for r in rows]})
    row = execution_drift(approvals).row(0, named=True)
    assert (row["approved"], row["verifiable"], row["drifted"], row["share"]) == (3, 2, 1, 0.5)
    assert execution_drift_actions(approvals)["action_id"].to_list() == ["a2"]


# ---- coverage ------------------------------------------------------------------------------------------
def test_coverage_finds_tools_and_agents_no_rule_looks_at(store) -> None:
    frame = decisions_frame(store, "starter")
    assert coverage(frame, load_run(store, "starter").policy)["covered"].all()
    payments_only = parse_policy('{"version": 1, "name": "p", "rules": [{"id": "pay", "tool": "payment.*", '
                                 '"action": "escalate"}, {"id": "mail", "tool": "email.send", "action": "allow", '
                                 '"mode": "shadow"}]}')
    cov = coverage(frame, payments_only)
    tools = cov.filter(pl.col("dimension") == "tool")
    assert set(tools.filter("covered")["name"]) == {"payment.send", "payment.refund", "email.send"}
    agents = {r["name"]: r for r in cov.filter(pl.col("dimension") == "agent").iter_rows(named=True)}
    assert not agents["audit-bot"]["covered"] and agents["audit-bot"]["rules"] == []  # reads only
    assert agents["billing-bot"]["covered"] and agents["billing-bot"]["rules"] == ["pay", "mail"]
    assert 0 < agents["billing-bot"]["uncovered_share"] < 1
    assert sum(r["actions"] for r in agents.values()) == frame.height


# ---- rule drift ----------------------------------------------------------------------------------------
def test_rule_drift_shows_the_burst_days_and_weekend_deploys(store, planted) -> None:
    frame = decisions_frame(store, "starter")
    drift = rule_drift(frame, load_run(store, "starter").policy)
    days = frame.select(pl.col("ts").dt.date().n_unique()).item()
    assert drift.height == 20 * days  # every rule on every day, zeros included
    bursts = drift.filter((pl.col("rule") == "email-burst") & (pl.col("fired") > 0))
    assert [str(d) for d in bursts["period"]] == [b["start"][:10] for b in planted["email_bursts"]]
    weekend = drift.filter((pl.col("rule") == "weekend-deploys") & (pl.col("fired") > 0))
    assert {d.weekday() for d in weekend["period"]} == {5, 6}
    assert weekend["fired"].sum() == len(planted["weekend_deploys"])
    weekly = rule_drift(frame, every="week")
    assert weekly["period"].n_unique() == 4 and weekly["fired"].sum() == drift["fired"].sum()


# ---- the summary ---------------------------------------------------------------------------------------
def test_summary_to_dict(store, planted) -> None:
    summary = summarize_drift(load_run(store, "starter"))
    doc = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert doc["windows"][0] == {"start": "2026-10-05T00:00:00+00:00", "end": "2026-10-19T00:00:00+00:00"}
    assert doc["behaviour"]["psi_band"] == "stable" and doc["behaviour"]["new_agents"] == ["procure-bot"]
    assert doc["behaviour"]["new_tools"] == [] and doc["behaviour"]["vanished_tools"] == []
    assert 0 <= doc["behaviour"]["escalation"]["p_value"] <= 1
    assert [a["action_id"] for a in doc["execution"]["actions"]] == sorted(planted["execution_drift"])
    assert doc["coverage"]["uncovered_tools"] == [] and doc["coverage"]["uncovered_agents"] == []
    assert len(doc["rules"]["change"]) == 20


# ---- golden files --------------------------------------------------------------------------------------
def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).list.join(" ") for c, t in frame.schema.items() if isinstance(t, pl.List))


def test_golden_drift(store) -> None:
    frame = decisions_frame(store, "starter")
    policy = load_run(store, "starter").policy
    first, second = split_halves(frame)
    a, b = in_window(frame, first), in_window(frame, second)
    values = argument_values(load_run(store, "starter"))
    approvals = approvals_frame(store)
    check_golden("drift_tool_mix", tool_mix_psi(a, b))
    check_golden("drift_agent_mix", tool_mix_psi(a, b, by="agent"))
    check_golden("drift_numeric", numeric_drift(in_window(values, first), in_window(values, second)))
    check_golden("drift_escalation", escalation_rate_change(a, b))
    check_golden("drift_escalation_by_tool", escalation_rate_change(a, b, "tool"))
    check_golden("drift_execution_by_tool", execution_drift(approvals, "tool"))
    check_golden("drift_execution_by_agent", execution_drift(approvals, "agent"))
    check_golden("drift_coverage", _flat(coverage(frame, policy)))
    check_golden("drift_rules_by_week", rule_drift(frame, policy, every="week"))
    check_golden("drift_rule_change", rule_rate_change(a, b, policy))


def test_arguments_are_read_as_numbers_exactly_as_the_policy_reads_them(tmp_path) -> None:
    """`arg_frame` (what drift and the reports read) goes through the policy's numeric reading: the strings
    the policy errors on are no numbers here either (issue 13: it read "1_000", "+5", "NaN", ".5")."""
    from gatekit.logs.ingest import ingest
    from gatekit.logs.store import Store
    from gatekit.run import arg_frame

    raw = ['"1_000"', '"+5"', '"NaN"', '".5"', '"1e400"', '"Infinity"', '" 2e3 "', '"1810.00"', "7", "true", '"x"']
    want = [None, None, None, None, None, None, 2000.0, 1810.0, 7.0, None, None]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(f'{{"tool": "t", "ts": "2026-01-15T12:00:{i:02d}Z", "args": {{"amount": {v}}}}}\n'
                           for i, v in enumerate(raw)))
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [log])
        got = arg_frame(store, ["args.amount"])
    assert got["args.amount"].to_list() == want
    policy = parse_policy("version: 1\nname: p\nrules:\n  - {id: r, tool: t, action: deny, when: {args.amount: {gt: 0}}}\n")
    from tests.policy.harness import run_python
    outcomes = run_python(policy, [{"tool": "t", "args": {"amount": json.loads(v)}} for v in raw])
    assert [o[1] == ("r",) for o in outcomes] == [w is not None for w in want], "a number exactly where the policy reads one"
