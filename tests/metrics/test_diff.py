"""Policy A vs B: transition matrix, the rules behind it, examples, and the structural policy diff."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.logs.store import Store
from gatekit.metrics.diff import (
    policy_diff, replay_policies, summarize_diff, transition_matrix, transition_rules,
)
from gatekit.run import decisions_frame, load_run
from gatekit.metrics.rates import DECISIONS
from gatekit.policy import load_policy, parse_policy

from .conftest import REPO, check_golden
from .test_rates import frames

STARTER, STRICT = REPO / "policies" / "starter.yaml", REPO / "policies" / "starter-strict.yaml"


def _b_side(frame: pl.DataFrame, data: st.DataObject) -> pl.DataFrame:
    """Another run over (most of) the same actions: other decisions and rules, rows shuffled, some missing."""
    n = frame.height
    decisions = data.draw(st.lists(st.sampled_from(DECISIONS), min_size=n, max_size=n))
    rules = data.draw(st.lists(st.lists(st.sampled_from(["r1", "r2", "r4"]), unique=True, max_size=3),
                               min_size=n, max_size=n))
    keep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) if data.draw(st.booleans()) else [True] * n
    other = frame.with_columns(decision=pl.Series(decisions), rules=pl.Series(rules, dtype=pl.List(pl.String)))
    other = other.filter(pl.Series(keep))
    if data.draw(st.booleans()):
        other = other.sample(fraction=1.0, shuffle=True, seed=data.draw(st.integers(0, 9)))
    return other


# ---- transition matrix ---------------------------------------------------------------------------------
@given(frame=frames)
def test_a_run_against_itself_is_all_diagonal(frame: pl.DataFrame) -> None:
    matrix = transition_matrix(frame, frame)
    assert matrix.height == 9
    assert matrix.filter("changed")["count"].sum() == 0
    diagonal = matrix.filter(~pl.col("changed"))
    counts = frame["decision"].value_counts()
    assert dict(zip(diagonal["from"].cast(pl.String), diagonal["count"])) == {
        d: int(counts.filter(pl.col("decision") == d)["count"].sum()) for d in DECISIONS}
    assert all(r == [] for r in matrix["rules_added"].to_list() + matrix["rules_removed"].to_list())
    assert transition_rules(frame, frame).height == 0


@given(frame=frames, data=st.data())
def test_transition_counts_rules_and_examples_agree_with_the_pairs(frame: pl.DataFrame, data: st.DataObject) -> None:
    other = _b_side(frame, data)
    k = data.draw(st.integers(1, 4))
    matrix = transition_matrix(frame, other, examples=k)
    pairs = frame.select("seq", "action_id", "decision", "rules").join(
        other.select("action_id", to="decision", rules_b="rules"), on="action_id").sort("seq")
    assert matrix.height == 9 and matrix["count"].sum() == pairs.height
    for row in matrix.iter_rows(named=True):  # nine cells
        cell = pairs.filter((pl.col("decision") == row["from"]) & (pl.col("to") == row["to"]))
        assert row["count"] == cell.height
        assert row["share"] == pytest.approx(cell.height / pairs.height) if pairs.height else row["share"] is None
        assert row["examples"] == cell["action_id"].head(k).to_list()  # the first k in log order
        added = {r for a, b in zip(cell["rules"], cell["rules_b"]) for r in set(b) - set(a)}
        removed = {r for a, b in zip(cell["rules"], cell["rules_b"]) for r in set(a) - set(b)}
        assert (set(row["rules_added"]), set(row["rules_removed"])) == (added, removed)
    rules = transition_rules(frame, other)
    assert (rules["count"] > 0).all()


def test_aligned_and_joined_runs_give_the_same_matrix(store) -> None:
    a, b = decisions_frame(store, "starter"), decisions_frame(store, "strict")
    aligned = transition_matrix(a, b)
    joined = transition_matrix(a, b.sample(fraction=1.0, shuffle=True, seed=3))  # forces the join
    assert aligned.equals(joined)


def test_starter_to_strict_on_the_sample(store) -> None:
    matrix = transition_matrix(decisions_frame(store, "starter"), decisions_frame(store, "strict"))
    cell = {(r["from"], r["to"]): r for r in matrix.iter_rows(named=True)}
    # strict never relaxes: nothing moves to a milder decision
    assert all(cell[(f, t)]["count"] == 0 for f, t in [("escalate", "allow"), ("deny", "allow"), ("deny", "escalate")])
    assert cell[("escalate", "deny")]["rules_added"][:1] == ["campaigns"]
    assert "weekend-deploys" in cell[("allow", "allow")]["rules_removed"]  # the shadow canary left strict's allows
    # prod db updates are all reviewed in strict, only big ones in starter
    assert cell[("allow", "escalate")]["rules_added"][0] == "prod-updates"


# ---- policy diff ---------------------------------------------------------------------------------------
_rule = st.fixed_dictionaries({
    "tool": st.sampled_from(["pay.send", "db.*", ["a", "b?"]]),
    "action": st.sampled_from(["allow", "deny", "escalate"]),
}, optional={
    "when": st.sampled_from([{"args.amount": {"gt": 100}}, {"args.amount": 5}, {"context.env": {"in": ["prod"]}},
                             {"any": [{"args.x": {"lt": 1}}, {"args.y": {"exists": True}}]},
                             {"rate": {"per": "agent", "window": "10m", "gt": 3}}]),
    "mode": st.just("shadow"),
    "reason": st.sampled_from(["a", "b"]),
})
policy_docs = st.builds(
    lambda rules, default, tier: {"version": 1, "name": "gen", "default": default,
                                  "tiers": {"t1": {"approvals": 1, "timeout": tier}},
                                  "rules": [{"id": f"r{i}", **r} for i, r in enumerate(rules)]},
    st.lists(_rule, min_size=1, max_size=5), st.sampled_from(["allow", "escalate"]),
    st.sampled_from(["1h", "60m", 3600]))


@given(doc=policy_docs, indent=st.sampled_from([None, 1, 4]))
def test_a_policy_diffed_with_itself_changes_nothing(doc: dict, indent: int | None) -> None:
    policy = parse_policy(json.dumps(doc))
    again = parse_policy("\n\n# the same policy, laid out differently\n" + json.dumps(doc, indent=indent))
    assert policy_diff(policy, policy).height == 0
    assert policy_diff(policy, again).height == 0  # line numbers differ, meaning does not


@given(doc=policy_docs, data=st.data())
def test_policy_diff_names_the_changed_key(doc: dict, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(doc["rules"]) - 1))
    changed = json.loads(json.dumps(doc))
    rule = changed["rules"][i]
    rule["action"] = {"allow": "deny", "deny": "escalate", "escalate": "allow"}[rule["action"]]
    diff = policy_diff(parse_policy(json.dumps(doc)), parse_policy(json.dumps(changed)))
    assert diff.select("section", "id", "change", "key").rows() == [("rule", rule["id"], "changed", "action")]
    removed = json.loads(json.dumps(doc))
    gone = removed["rules"].pop(i)
    removed["rules"].append({"id": "new-one", "tool": "x", "action": "deny"})
    diff = policy_diff(parse_policy(json.dumps(doc)), parse_policy(json.dumps(removed)))
    assert diff.select("id", "change").rows() == [(gone["id"], "removed"), ("new-one", "added")]


def test_equivalent_spellings_are_not_changes() -> None:
    a = parse_policy('{"version": 1, "name": "p", "tiers": {"s": {"timeout": "1h"}}, "rules": [{"id": "r", '
                     '"tool": "x", "action": "escalate", "when": {"args.a": 1, "args.b": {"gt": 2}}}]}')
    b = parse_policy('{"version": 1, "name": "p", "tiers": {"s": {"timeout": 3600}}, "rules": [{"id": "r", '
                     '"tool": ["x"], "action": "escalate", "when": {"all": [{"args.b": {"gt": 2.0}}, '
                     '{"args.a": {"eq": 1}}]}}]}')
    assert policy_diff(a, b).height == 0


def test_starter_to_strict_policy_diff() -> None:
    diff = policy_diff(load_policy(STARTER), load_policy(STRICT))
    rows = {(r["section"], r["id"], r["change"], r["key"]): r for r in diff.iter_rows(named=True)}
    assert rows[("policy", "policy", "changed", "default")]["after"] == '"escalate"'
    assert rows[("tier", "standard", "changed", "timeout")]["before"] == '"4h"'
    assert rows[("rule", "email-burst", "changed", "when")]["after"] == \
        '{"rate": {"gt": 10, "per": "agent", "window": "10m"}}'
    assert ("rule", "payments-over-100", "removed", None) in rows
    assert ("rule", "low-nonprod", "added", None) in rows
    assert ("rule", "weekend-deploys", "changed", "mode") in rows
    assert ("rule", "refunds", "changed", "when") not in rows  # same rule in both


# ---- runs ----------------------------------------------------------------------------------------------
@pytest.fixture
def writable(sample_store: Path, tmp_path: Path):
    path = tmp_path / "copy.duckdb"
    shutil.copy(sample_store, path)
    with Store(path) as s:
        yield s


def test_replay_policies_names_and_reuses_runs(writable: Store) -> None:
    a, b = replay_policies(writable, STARTER, STRICT)
    assert a.startswith("starter@") and b.startswith("starter-strict@")
    first = load_run(writable, a).created_at
    again = replay_policies(writable, load_policy(STARTER), STRICT)
    assert again == (a, b) and load_run(writable, a).created_at == first  # the same policy text is not replayed
    diff = summarize_diff(load_run(writable, a), load_run(writable, b))
    assert diff.to_dict()["decisions"] == summarize_diff(load_run(writable, "starter"), load_run(writable, "strict")).to_dict()["decisions"]


def test_summary_to_dict(store) -> None:
    summary = summarize_diff(load_run(store, "starter"), load_run(store, "strict"))
    doc = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert (doc["actions"], doc["only_a"], doc["only_b"]) == (20000, 0, 0)
    assert doc["decisions"]["a"] == load_run(store, "starter").decisions
    assert doc["decisions"]["b"] == load_run(store, "strict").decisions
    assert doc["changed"] == sum(c["count"] for c in doc["matrix"] if c["from"] != c["to"])
    assert sum(doc["decisions"]["delta"].values()) == 0
    assert len(doc["matrix"]) == 9 and all(len(c["examples"]) <= 5 for c in doc["matrix"])


# ---- golden files --------------------------------------------------------------------------------------
def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).list.join(" ") for c, t in frame.schema.items() if isinstance(t, pl.List))


def test_golden_diff(store) -> None:
    a, b = decisions_frame(store, "starter"), decisions_frame(store, "strict")
    check_golden("diff_matrix", _flat(transition_matrix(a, b)))
    check_golden("diff_rules", transition_rules(a, b))
    check_golden("diff_policy", policy_diff(load_policy(STARTER), load_policy(STRICT)))
