"""Control failures: every one the sample generator planted is found, and nothing else where it is exact."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from gatekit.logs.store import Store
from gatekit.metrics.controls import (
    break_glass_by_reviewer, break_glass_by_week, break_glass_uses, bypass_attempts, control_failures,
    executed_without_approval, expired_approvals, reused_approvals, self_approvals,
)
from gatekit.run import approvals_frame, decisions_frame, load_run
from gatekit.policy import parse_policy
from gatekit.replay import replay

from .conftest import check_golden
from .test_fatigue import approvals

# The recorded world's own approval process (PLANTED.json `recorded_world.review_rules`) as a policy, less the
# one rule the language cannot say (infra.scale to more than twice the replicas).
RECORDED_WORLD = r"""
version: 1
name: recorded-world
tiers:
  standard: {approvals: 1, timeout: 4h}
  critical: {approvals: 2, timeout: 30m}
rules:
  - {id: payments, tool: payment.send, action: escalate, tier: standard, when: {args.amount: {gt: 500}}}
  - {id: payments-large, tool: payment.send, action: escalate, tier: critical, when: {args.amount: {gt: 10000}}}
  - {id: refunds, tool: payment.refund, action: escalate, tier: standard}
  - {id: prod-writes, tool: [db.update, db.delete], action: escalate, tier: standard, when: {context.env: prod}}
  - {id: prod-drops, tool: db.drop_table, action: escalate, tier: critical, when: {context.env: prod}}
  - {id: prod-deploys, tool: "deploy.*", action: escalate, tier: standard, when: {context.env: prod}}
  - {id: grants, tool: infra.iam.grant, action: escalate, tier: standard}
  - {id: admin-grants, tool: infra.iam.grant, action: escalate, tier: critical, when: {args.role: {in: [admin, owner]}}}
  - id: exports
    tool: data.export
    action: escalate
    tier: standard
    when:
      any:
        - not:
            args.destination:
              matches: "^(s3://corp-warehouse/exports/|bq://corp-analytics\\.reports\\.|s3://corp-finance/archive/)"
        - args.rows: {gt: 50000}
  - {id: exports-huge, tool: data.export, action: escalate, tier: critical, when: {args.rows: {gt: 100000}}}
  - {id: campaigns, tool: email.campaign.send, action: escalate, tier: standard, when: {args.recipients: {gt: 5000}}}
"""


@pytest.fixture(scope="module")
def recorded_store(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample store plus run `recorded`: the process the logs were recorded under, replayed."""
    path = tmp_path_factory.mktemp("recorded") / "sample.duckdb"
    shutil.copy(sample_store, path)
    with Store(path) as store:
        replay(store, parse_policy(RECORDED_WORLD), "recorded")
    return path


@pytest.fixture
def recorded(recorded_store: Path):
    with Store(recorded_store, read_only=True) as s:
        yield s


# ---- planted signals on the sample ---------------------------------------------------------------------
def test_every_planted_self_approval_is_found_by_user_and_by_agent(store, planted) -> None:
    found = self_approvals(approvals_frame(store))
    by = {kind: sorted(found.filter(pl.col("kind") == kind)["action_id"]) for kind in ("user", "agent")}
    assert by == {"user": planted["self_approvals"]["by_user"], "agent": planted["self_approvals"]["by_agent"]}


def test_every_planted_break_glass_is_found_and_counted(store, planted) -> None:
    a = approvals_frame(store)
    assert sorted(break_glass_uses(a)["action_id"]) == planted["break_glass"]
    per = break_glass_by_reviewer(a)
    assert per["uses"].sum() == len(planted["break_glass"])
    weeks = break_glass_by_week(a)
    assert weeks["uses"].sum() == len(planted["break_glass"]) and weeks.height == 4  # four weeks, zeros kept
    assert weeks.filter(pl.col("uses") == 0).height >= 1
    cited = {i for inc in planted["incidents"] for i in inc["action_ids"]}
    assert set(planted["break_glass"]) <= cited  # each cites its incident
    assert break_glass_uses(a)["reason"].str.contains("INC-").all()


def test_every_planted_reused_approval_is_found(store, planted) -> None:
    found = reused_approvals(approvals_frame(store), decisions_frame(store, "starter"))
    assert sorted(found.select("first_action_id", "action_id").rows()) == [tuple(p) for p in planted["approval_reused"]]
    assert found["kind"].to_list() == ["same_approval"] * len(planted["approval_reused"])


def test_every_planted_late_approval_is_found_and_nothing_else(store, recorded, planted) -> None:
    for s, run in ((store, "starter"), (recorded, "recorded")):
        found = expired_approvals(approvals_frame(s), decisions_frame(s, run))
        assert sorted(found["action_id"]) == planted["approved_after_timeout"], run
        assert (found["latency_s"] > found["limit_s"]).all()


def test_executed_without_approval_under_the_recorded_process_is_exactly_the_planted(recorded, planted) -> None:
    found = executed_without_approval(decisions_frame(recorded, "recorded"), approvals_frame(recorded))
    assert found["action_id"].to_list() == planted["executed_without_approval"]


def test_executed_without_approval_under_a_stricter_policy_includes_the_planted(store, planted) -> None:
    found = executed_without_approval(decisions_frame(store, "strict"), approvals_frame(store))
    assert set(planted["executed_without_approval"]) <= set(found["action_id"])
    assert (found["approvals"] == 0).all()


def test_execution_drift_is_a_bypass_and_matches_the_planted(store, planted) -> None:
    found = bypass_attempts(decisions_frame(store, "starter"))
    assert sorted(found.filter(pl.col("kind") == "execution_drift")["action_id"]) == planted["execution_drift"]
    retries = found.filter(pl.col("kind") == "retry_after_refusal")
    assert retries["prior_outcome"].is_in(["denied", "blocked"]).all()
    assert (retries["gap_s"] <= 600).all()


def test_control_failures_on_the_recorded_process_find_every_planted_failure(recorded, planted) -> None:
    ids = control_failures(load_run(recorded, "recorded")).action_ids
    assert ids["self_approval"] == sorted(planted["self_approvals"]["by_user"] + planted["self_approvals"]["by_agent"])
    assert ids["expired_approval"] == planted["approved_after_timeout"]
    assert ids["reused_approval"] == sorted(b for _, b in planted["approval_reused"])
    assert ids["executed_without_approval"] == planted["executed_without_approval"]
    assert ids["break_glass"] == planted["break_glass"]
    assert set(planted["execution_drift"]) <= set(ids["bypass_attempt"])


# ---- small frames --------------------------------------------------------------------------------------
T0 = datetime(2026, 10, 5, 9, 0, tzinfo=timezone.utc)


def decisions(rows: list[dict]) -> pl.DataFrame:
    base = {"agent": "bot", "session": "s", "user": "u-x", "tool": "payment.send", "outcome": "executed",
            "label": None, "evidence_hash": None, "executed_hash": None, "approvals": 0, "decision": "allow",
            "rules": [], "errors": [], "tier": None}
    out = [{**base, "seq": i + 1, "action_id": f"x-{i + 1}", "ts": T0 + timedelta(minutes=i), **r}
           for i, r in enumerate(rows)]
    return pl.DataFrame(out, schema_overrides={"ts": pl.Datetime("us", "UTC"), "approvals": pl.UInt64,
                                               "rules": pl.List(pl.String), "errors": pl.List(pl.String)})


def test_same_evidence_executed_again_without_its_own_approval_is_a_reuse() -> None:
    d = decisions([{"evidence_hash": "h1", "approvals": 1}, {"evidence_hash": "h1"}, {"evidence_hash": "h2"},
                   {"evidence_hash": "h3", "outcome": "failed"}, {"evidence_hash": "h1", "approvals": 1}])
    found = reused_approvals(approvals([{}]).head(0), d)
    assert found.select("action_id", "first_action_id", "kind").rows() == [("x-2", "x-1", "same_evidence")]


def test_reused_approval_lists_every_later_use_once() -> None:
    same = {"requested_at": T0, "decided_at": T0 + timedelta(minutes=5), "reviewer": "r"}
    a = approvals([same, same, same, {"reviewer": "r"}])
    found = reused_approvals(a, decisions([{}] * 4))
    assert found.select("action_id", "first_action_id").rows() == [("x-2", "x-1"), ("x-3", "x-1")]


def test_stale_approvals_need_a_ttl() -> None:
    old = {"ts": T0 + timedelta(hours=1), "requested_at": T0, "decided_at": T0 + timedelta(minutes=1)}
    a = approvals([old, {"latency": 30}])
    assert expired_approvals(a).is_empty()
    found = expired_approvals(a, ttls_s={"critical": 600}, default_ttl_s=1800)
    assert found.select("action_id", "kind", "limit_s").rows() == [("x-1", "stale", 1800.0)]


def test_a_denied_or_unapproved_escalation_that_ran_is_flagged() -> None:
    d = decisions([{"decision": "escalate"}, {"decision": "escalate"}, {"decision": "escalate"},
                   {"decision": "escalate", "outcome": "blocked"}, {"decision": "allow"}])
    a = approvals([{"seq": 2, "action_id": "x-2", "review": "approve"},
                   {"seq": 3, "action_id": "x-3", "review": "deny"}])
    found = executed_without_approval(d, a)
    assert found.select("action_id", "denials").rows() == [("x-1", 0), ("x-3", 1)]


def test_retries_after_a_refusal_within_the_window_with_other_arguments() -> None:
    d = decisions([
        {"outcome": "denied", "evidence_hash": "a"},
        {"evidence_hash": "b"},                          # retried a minute later, other arguments: flagged
        {"outcome": "blocked", "evidence_hash": "c", "tool": "email.send"},
        {"evidence_hash": "c", "tool": "email.send"},    # the very same call again: not a bypass
        {"outcome": "denied", "evidence_hash": "d", "tool": "db.delete"},
        {"evidence_hash": "e", "tool": "db.delete", "ts": T0 + timedelta(hours=2)},  # too late
        {"outcome": "denied", "evidence_hash": "f", "tool": "deploy.service"},
        {"evidence_hash": "g", "tool": "deploy.service", "session": "other"},         # another session
        {"evidence_hash": "h", "executed_hash": "i", "tool": "infra.scale"},          # ran other arguments
    ])
    found = bypass_attempts(d)
    assert found.select("action_id", "kind", "prior_action_id").rows() == [
        ("x-2", "retry_after_refusal", "x-1"), ("x-9", "execution_drift", None)]


def test_control_failures_to_dict_is_json(store) -> None:
    failures = control_failures(load_run(store, "starter"))
    out = json.loads(json.dumps(failures.to_dict()))
    assert out["counts"] == {k: len(v) for k, v in out["action_ids"].items()}
    assert out["counts"]["break_glass"] == 8
    assert failures.summary()["actions"].sum() >= sum(out["counts"].values())
    short = failures.to_dict(limit=2)
    assert short["counts"] == out["counts"] and all(len(v) <= 2 for v in short["action_ids"].values())
    assert len(short["executed_without_approval"]) == 2


def test_golden_controls(store, recorded) -> None:
    check_golden("controls_summary_starter", control_failures(load_run(store, "starter")).summary())
    failures = control_failures(load_run(recorded, "recorded"))
    check_golden("controls_summary_recorded", failures.summary())
    check_golden("controls_offenders_recorded", failures.offenders())
    check_golden("controls_break_glass_by_week", failures.break_glass_by_week)
