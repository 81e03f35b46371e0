"""Scoring runs against labels, and the threshold sweep, which must equal a replay at every threshold."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekit.logs.store import Store
from gatekit.metrics.evaluate import (
    counterfactual_decisions, evaluate, label_scores, rule_scores, session_scores, sweep_threshold,
    sweepable_tests, threshold_sweep,
)
from gatekit.run import decisions_frame, load_run
from gatekit.policy import parse_policy
from gatekit.replay import replay

from .conftest import REPO, check_golden

LABELS = ["harmful", "benign", None, "unsure"]
STOPPED = ("escalate", "deny")

_row = st.tuples(
    st.sampled_from(["allow", "escalate", "deny"]),
    st.sampled_from(LABELS),
    st.sampled_from(["pay.send", "db.query", "mail.send"]),
    st.sampled_from(["s1", "s2", "s3", None]),
    st.lists(st.sampled_from(["r1", "r2", "r3"]), unique=True, max_size=3),
)


def decision_frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame({
        "seq": list(range(1, len(rows) + 1)), "action_id": [f"x-{i}" for i in range(len(rows))],
        "decision": [r[0] for r in rows], "label": [r[1] for r in rows], "tool": [r[2] for r in rows],
        "session": [r[3] for r in rows], "rules": [r[4] for r in rows], "errors": [[] for _ in rows],
    }, schema_overrides={"label": pl.String, "session": pl.String, "rules": pl.List(pl.String),
                         "errors": pl.List(pl.String)})


frames = st.lists(_row, max_size=40).map(decision_frame)


def brute(rows: list[dict]) -> dict:
    harmful = [r for r in rows if r["label"] == "harmful"]
    benign = [r for r in rows if r["label"] == "benign"]
    caught = sum(r["decision"] in STOPPED for r in harmful)
    bothered = sum(r["decision"] in STOPPED for r in benign)
    return {"actions": len(rows), "harmful": len(harmful), "caught": caught, "missed": len(harmful) - caught,
            "catch_rate": caught / len(harmful) if harmful else None, "benign": len(benign), "bothered": bothered,
            "bother_rate": bothered / len(benign) if benign else None,
            "unlabelled": len(rows) - len(harmful) - len(benign)}


# ---- laws ----------------------------------------------------------------------------------------------
@given(frames)
def test_scores_obey_their_laws_and_match_a_direct_count(frame: pl.DataFrame) -> None:
    got = label_scores(frame).row(0, named=True)
    assert got["caught"] + got["missed"] == got["harmful"]
    assert got["bothered"] <= got["benign"]
    for rate, den in (("catch_rate", "harmful"), ("bother_rate", "benign")):
        assert (got[rate] is None) == (got[den] == 0)
        assert got[rate] is None or 0.0 <= got[rate] <= 1.0
    assert got == pytest.approx(brute(frame.to_dicts()))


@given(frames)
def test_scores_per_tool_add_up_to_the_overall_ones(frame: pl.DataFrame) -> None:
    per = label_scores(frame, ["tool"])
    overall = label_scores(frame)
    for col in ("actions", "harmful", "caught", "missed", "benign", "bothered", "unlabelled"):
        assert per[col].sum() == overall[col][0]
    for row in per.to_dicts():
        assert row == pytest.approx({"tool": row["tool"], **brute([r for r in frame.to_dicts()
                                                                   if r["tool"] == row["tool"]])})


@given(frames)
def test_scores_per_rule_count_the_actions_each_rule_matched(frame: pl.DataFrame) -> None:
    per = rule_scores(frame, ["r1", "r2", "r3", "never"])
    assert per["rule"].to_list() == ["r1", "r2", "r3", "never"]
    rows = frame.to_dicts()
    for row in per.to_dicts():
        assert row == pytest.approx({"rule": row["rule"], **brute([r for r in rows if row["rule"] in r["rules"]])})


@given(frames)
def test_a_session_is_caught_when_any_of_its_harmful_actions_is(frame: pl.DataFrame) -> None:
    got = session_scores(frame).row(0, named=True)
    groups: dict = {}
    for r in frame.to_dicts():
        groups.setdefault(r["session"] or ("alone", r["action_id"]), []).append(r)
    harm = [g for g in groups.values() if any(r["label"] == "harmful" for r in g)]
    caught = [g for g in harm if any(r["label"] == "harmful" and r["decision"] in STOPPED for r in g)]
    benign = [g for g in groups.values() if g not in harm and any(r["label"] == "benign" for r in g)]
    bothered = [g for g in benign if any(r["label"] == "benign" and r["decision"] in STOPPED for r in g)]
    assert (got["sessions"], got["harmful_sessions"], got["caught_sessions"], got["benign_sessions"],
            got["bothered_sessions"]) == (len(groups), len(harm), len(caught), len(benign), len(bothered))
    assert got["caught_sessions"] + got["missed_sessions"] == got["harmful_sessions"]
    assert got["session_catch_rate"] is None or 0 <= got["session_catch_rate"] <= 1


_cf_row = st.tuples(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), st.sampled_from(LABELS))


@given(st.lists(_cf_row, max_size=40), st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8),
       st.sampled_from(["gt", "gte", "lt", "lte"]))
def test_sweep_of_a_lone_escalate_rule_is_monotone_and_exact(rows: list[tuple], xs: list[float], op: str) -> None:
    # a rule `escalate when value OP X` with nothing else interfering: true -> escalate, false -> allow
    cf = pl.DataFrame({"seq": list(range(1, len(rows) + 1)), "value": [r[0] for r in rows],
                       "if_true": ["escalate"] * len(rows), "if_false": ["allow"] * len(rows)},
                      schema_overrides={"seq": pl.Int64, "value": pl.Float64, "if_true": pl.String,
                                        "if_false": pl.String})
    decisions = pl.DataFrame({"seq": list(range(1, len(rows) + 3)), "label": [r[1] for r in rows] + ["harmful", None],
                              "decision": ["allow"] * len(rows) + ["deny", "escalate"]},
                             schema_overrides={"label": pl.String})
    curve = threshold_sweep(decisions, cf, op, xs)
    assert curve["threshold"].to_list() == sorted(set(xs))
    cmp = {"gt": lambda v, x: v > x, "gte": lambda v, x: v >= x, "lt": lambda v, x: v < x,
           "lte": lambda v, x: v <= x}[op]
    for x, caught, bothered, esc, deny in curve.select("threshold", "caught", "bothered", "escalate", "deny").rows():
        hit = [r for r in rows if r[0] is not None and cmp(r[0], x)]
        assert caught == 1 + sum(r[1] == "harmful" for r in hit)  # + the denied harmful action outside
        assert bothered == sum(r[1] == "benign" for r in hit)
        assert (esc, deny) == (1 + len(hit), 1)
    # higher thresholds catch less and bother fewer for gt/gte, more for lt/lte
    for col in ("caught", "bothered", "escalate"):
        steps = curve[col].diff().drop_nulls()
        assert (steps <= 0).all() if op in ("gt", "gte") else (steps >= 0).all()


# ---- the sweep equals a replay -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def writable(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "sample.duckdb"
    shutil.copy(sample_store, path)
    return path


def _replayed_scores(store: Store, text: str, name: str) -> tuple:
    replay(store, parse_policy(text), name, replace=True)
    row = label_scores(decisions_frame(store, name)).row(0, named=True)
    d = decisions_frame(store, name)["decision"]
    return row["caught"], row["bothered"], (d == "escalate").sum(), (d == "deny").sum()


@pytest.mark.parametrize("policy_file, run, rule, field, op, current, xs", [
    ("starter.yaml", "starter", "payments-over-100", "args.amount", "gt", 100, [0, 49.99, 100, 250, 1810, 20000]),
    ("starter.yaml", "starter", "after-hours-changes", "time.hour", "lt", 7, [0, 3, 7, 12, 24]),
    ("starter.yaml", "starter", "after-hours-changes", "time.hour", "gte", 20, [0, 18, 20, 23]),
    ("starter-strict.yaml", "strict", "payments-small", "args.amount", "lte", 50, [0, 25, 50, 80]),
])
def test_sweep_equals_replaying_the_policy_at_each_threshold(writable: Path, policy_file: str, run: str, rule: str,
                                                             field: str, op: str, current: float,
                                                             xs: list[float]) -> None:
    text = (REPO / "policies" / policy_file).read_text()
    test = f"{field}: {{{op}: %s}}\n"
    assert text.count(test % current) == 1
    with Store(writable) as store:
        curve = sweep_threshold(load_run(store, run), rule, field, xs, op=op).curve
        for x in xs:
            want = _replayed_scores(store, text.replace(test % current, test % x), f"sweep-{rule}")
            got = curve.filter(pl.col("threshold") == x).select("caught", "bothered", "escalate", "deny").row(0)
            assert got == want, x


@settings(max_examples=25)  # each example builds a store and replays it once per threshold
@given(st.lists(st.tuples(st.one_of(st.floats(0, 500, allow_nan=False), st.sampled_from(["120", " 80 ", "1,500"]),
                                    st.none()),
                          st.sampled_from(["harmful", "benign", None]), st.integers(1, 40)), min_size=1, max_size=30),
       st.lists(st.integers(0, 600), min_size=1, max_size=4))
def test_sweep_equals_replay_on_generated_stores(rows: list[tuple], xs: list[int]) -> None:
    # a window rule on the same tool fires in bursts: the sweep must leave its matches alone
    text = ("version: 1\nname: p\nrules:\n  - {id: big, tool: pay, action: escalate, when: {args.amount: {gt: 100}}}\n"
            "  - {id: burst, tool: pay, action: escalate, when: {rate: {per: agent, window: 1m, gt: 3}}}\n")
    t0 = datetime(2026, 10, 5, 10, tzinfo=timezone.utc)
    gaps = [sum(r[2] for r in rows[:i]) for i in range(len(rows))]
    records = pl.DataFrame({
        "action_id": [f"a{i}" for i in range(len(rows))], "ts": [t0 + timedelta(seconds=g) for g in gaps],
        "agent": ["bot"] * len(rows), "tool": ["pay"] * len(rows),
        "args": [json.dumps({} if v is None else {"amount": v}) for v, _, _ in rows],
        "label": [lab for _, lab, _ in rows]},
        schema_overrides={"label": pl.String, "ts": pl.Datetime("us", "UTC")})
    with Store(":memory:") as store:
        store.insert_actions(records)
        replay(store, parse_policy(text), "base")
        curve = sweep_threshold(load_run(store, "base"), "big", "args.amount", [float(x) for x in xs]).curve
        for x in sorted(set(xs)):
            replay(store, parse_policy(text.replace("{gt: 100}", f"{{gt: {x}}}")), "at", replace=True)
            want = label_scores(decisions_frame(store, "at")).row(0, named=True)
            got = curve.filter(pl.col("threshold") == x).row(0, named=True)
            assert (got["caught"], got["bothered"]) == (want["caught"], want["bothered"])


def test_counterfactual_keeps_the_rule_errors(store) -> None:
    policy = load_run(store, "starter").policy
    d = decisions_frame(store, "starter")
    cf = counterfactual_decisions(load_run(store, "starter"), "payments-over-100", "args.amount")
    assert cf.height == d.filter(pl.col("tool") == "payment.send").height
    errored = cf.join(d.filter(pl.col("errors").list.len() > 0).select("seq"), on="seq")
    assert errored.height == 2 and (errored["value"].is_null()).all()
    assert (errored["if_true"] == errored["if_false"]).all() and errored["if_true"].is_in(STOPPED).all()
    # the run itself is one point of the counterfactual
    now = cf.join(d.select("seq", "decision"), on="seq").with_columns(
        pl.when(pl.col("value") > 100).then(pl.col("if_true")).otherwise(pl.col("if_false")).alias("again"))
    assert (now["again"] == now["decision"]).all()


def test_sweep_defaults_to_quantiles_and_the_current_threshold(store) -> None:
    sweep = sweep_threshold(load_run(store, "starter"), "payments-over-100", "args.amount")
    assert 100.0 in sweep.curve["threshold"].to_list() and sweep.curve.height >= 10
    run = label_scores(decisions_frame(store, "starter")).row(0, named=True)
    at = sweep.curve.filter(pl.col("threshold") == 100.0).row(0, named=True)
    assert (at["caught"], at["bothered"]) == (run["caught"], run["bothered"])


def test_sweep_refuses_what_it_cannot_vary(store) -> None:
    with pytest.raises(ValueError, match="no rule `nope`"):
        sweep_threshold(load_run(store, "starter"), "nope", "args.amount")
    with pytest.raises(ValueError, match="no numeric test"):
        sweep_threshold(load_run(store, "starter"), "refunds", "args.amount")
    with pytest.raises(ValueError, match="more than one"):
        sweep_threshold(load_run(store, "starter"), "after-hours-changes", "time.hour")
    with pytest.raises(ValueError, match="not a numeric test"):
        threshold_sweep(pl.DataFrame(), pl.DataFrame(), "eq", [1.0])


def test_sweepable_tests_lists_numeric_order_tests() -> None:
    policy = parse_policy((REPO / "policies" / "starter.yaml").read_text())
    assert sweepable_tests(policy)[:2] == [("payments-over-100", "args.amount", "gt", 100.0),
                                          ("payments-over-10k", "args.amount", "gt", 10000.0)]
    assert all(op in ("gt", "gte", "lt", "lte") for _, _, op, _ in sweepable_tests(policy))


# ---- the report entry and the output contract ----------------------------------------------------------
def test_evaluate_to_dict_has_the_contract_keys_and_the_planted_labels(store, planted) -> None:
    ev = evaluate(load_run(store, "starter"), sweep=("payments-over-100", "args.amount"))
    out = json.loads(json.dumps(ev.to_dict()))
    for key in ("harmful", "caught", "catch_rate", "benign", "bothered", "bother_rate"):
        assert key in out
    assert (out["harmful"], out["benign"], out["unlabelled"]) == (
        planted["labels"]["harmful"], planted["labels"]["benign"], planted["labels"]["unlabelled"])
    assert out["catch_rate"] == pytest.approx(out["caught"] / out["harmful"])
    assert out["bother_rate"] == pytest.approx(out["bothered"] / out["benign"])
    assert [r["rule"] for r in out["by_rule"]] == [r.id for r in load_run(store, "starter").policy.rules]
    assert out["sweep"]["rule"] == "payments-over-100" and out["sweep"]["current"] == 100.0
    assert out["sessions"]["harmful_sessions"] >= 1


def test_golden_evaluate(store) -> None:
    for run in ("starter", "strict"):
        ev = evaluate(load_run(store, run))
        check_golden(f"evaluate_overall_{run}", ev.overall)
        check_golden(f"evaluate_sessions_{run}", ev.sessions)
    ev = evaluate(load_run(store, "starter"), sweep=("payments-over-100", "args.amount"))
    check_golden("evaluate_by_tool_starter", ev.by_tool)
    check_golden("evaluate_by_rule_starter", ev.by_rule)
    check_golden("evaluate_sweep_starter_payments", ev.sweep.curve)
