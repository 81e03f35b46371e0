"""`gatekit test`: case files and a policy's own `examples:`, run through `decide`, with JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.authoring import collect_cases, junit_xml, run_case, run_cases
from gatekit.errors import InputError, PolicyError
from gatekit.policy import decide, dump_policy, load_policy, parse_policy
from gatekit.policy.load import load_cases, parse_cases

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "policies" / "starter.yaml"
STARTER_CASES = REPO / "policies" / "cases" / "starter.yaml"

POLICY = """\
version: 1
name: pay
tiers:
  standard: {approvals: 1}
rules:
  - id: big-payment
    tool: payment.send
    action: escalate
    tier: standard
    when: {args.amount: {gt: 100}}
  - id: burst
    tool: payment.send
    action: deny
    when: {rate: {per: agent, window: 10m, gt: 2}}
examples:
  - name: small
    tool: payment.send
    args: {amount: 5}
    expect: allow
  - name: big
    action: {tool: payment.send, args: {amount: 500}}
    expect: escalate
    rules: [big-payment]
    tier: standard
"""

CASES = """\
- name: right
  tool: payment.send
  args: {amount: 500}
  expect: escalate

- name: wrong decision
  tool: payment.send
  args: {amount: 5}
  expect: deny

- name: wrong rules
  tool: payment.send
  args: {amount: 500}
  expect: escalate
  rules: [burst]

- name: third in ten minutes
  tool: payment.send
  agent: bot
  ts: 2026-11-02T10:09:00Z
  args: {amount: 5}
  history:
    - {tool: payment.send, agent: bot, ts: 2026-11-02T10:00:00Z}
    - {tool: payment.send, agent: bot, ts: 2026-11-02T10:05:00Z}
  expect: deny
  rules: {includes: [burst]}
"""


@pytest.fixture
def policy():
    return parse_policy(POLICY, "pay.yaml")


def test_the_bundled_cases_pass_on_the_starter_policy() -> None:
    report = collect_cases(load_policy(STARTER), [STARTER_CASES])
    assert report.ok and report.passed == len(report.results) >= 10


def test_the_bundled_cases_catch_a_worse_starter_policy(tmp_path: Path) -> None:
    worse = tmp_path / "starter.yaml"
    worse.write_text(STARTER.read_text().replace("args.amount: {gt: 100}", "args.amount: {gt: 1000}"))
    report = collect_cases(load_policy(worse), [STARTER_CASES])
    failed = [r for r in report.results if not r.ok]
    assert [r.case.name for r in failed] == ["a payment over $100 needs one reviewer"]
    doc = (REPO / "docs" / "authoring.md").read_text(encoding="utf-8")  # the page shows this very failure
    assert failed[0].message.replace(str(STARTER_CASES), "policies/cases/starter.yaml") + "\n" in doc


def test_a_failure_names_the_file_line_and_case(policy) -> None:
    report = run_cases(policy, parse_cases(CASES, "cases.yaml"), "cases.yaml")
    by_name = {r.case.name: r for r in report.results}
    assert [r.ok for r in report.results] == [True, False, False, True]
    assert by_name["wrong decision"].message == \
        "cases.yaml:6: case `wrong decision`: expected deny, got allow (rules: none)"
    assert by_name["wrong rules"].message == \
        "cases.yaml:11: case `wrong rules`: expected rules `burst`, matched `big-payment`"
    assert report.failed == 2 and not report.ok


def test_history_feeds_the_windows(policy) -> None:
    case = parse_cases(CASES)[3]
    assert run_case(policy, case).ok
    alone = run_case(policy, type(case)(**{**case.__dict__, "history": ()}))
    assert not alone.ok and alone.decision.decision == "allow"


def test_a_policy_runs_its_own_examples(policy) -> None:
    report = collect_cases(policy)
    assert [(r.case.name, r.ok, r.where) for r in report.results] == [
        ("small", True, "pay.yaml:16"), ("big", True, "pay.yaml:20")]


def test_no_cases_at_all_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no `examples:`"):
        collect_cases(load_policy(STARTER))


def test_tier_and_errors_are_checked(policy) -> None:
    [case] = parse_cases("- {tool: payment.send, args: {amount: 500}, expect: escalate, tier: other, errors: []}")
    assert run_case(policy, case).failures == ("expected tier `other`, got `standard`",)
    [case] = parse_cases("- {tool: payment.send, args: {amount: nope}, expect: escalate, errors: [type_mismatch]}")
    assert run_case(policy, case).failures == ("expected errors `type_mismatch`, got `not_a_number`",)


@pytest.mark.parametrize("text, message", [
    ("- {tool: x, expect: maybe}", "c.yaml:1: `cases.0.expect`"),
    ("- {tool: x}", "c.yaml:1: missing required key `expect`"),
    ("- {tool: x, expect: allow, colour: red}", "c.yaml:1: unknown key `colour`"),
    ("- {expect: allow}", "c.yaml:1: case `case 1`: the call needs a string `tool`"),
    ("- {expect: allow, tool: x, action: {tool: x}}", "give the call as `action:` or as its keys"),
    ("- {expect: allow, tool: x, history: [{args: {}}]}", "each call of `history` needs a string `tool`"),
    ("[]", "the case file has no cases"),
    ("just text", "a case file must be a YAML list of cases"),
    ("- {tool: [", "c.yaml:1: invalid YAML"),
])
def test_a_bad_case_file_is_refused_at_its_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_cases(text, "c.yaml")
    assert err.value.what == "the case file" and message in str(err.value)


def test_examples_naming_unknown_rules_or_tiers_are_refused_by_the_loader() -> None:
    text = POLICY + "  - {tool: x, expect: deny, rules: [nope], tier: gold}\n"
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "pay.yaml")
    assert [p.msg for p in err.value.problems] == ["case `case 3`: no rule `nope` in the policy",
                                                   "case `case 3`: no tier `gold` in the policy"]


def test_examples_survive_a_dump(policy) -> None:
    again = parse_policy(dump_policy(policy))
    assert [(e.name, e.action, e.expect, e.rules, e.tier) for e in again.examples] == \
        [(e.name, e.action, e.expect, e.rules, e.tier) for e in policy.examples]
    assert dump_policy(again) == dump_policy(policy)


def test_junit_xml_has_a_testcase_per_case_and_a_failure_per_failing_one(policy) -> None:
    report = run_cases(policy, parse_cases(CASES, "cases.yaml"), "cases.yaml")
    root = ET.fromstring(junit_xml(report))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "2"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["right", "wrong decision", "wrong rules", "third in ten minutes"]
    failures = {c.get("name"): c.find("failure") for c in cases}
    assert failures["right"] is None
    assert failures["wrong decision"].get("message") == "expected deny, got allow (rules: none)"
    assert failures["wrong decision"].text.startswith("cases.yaml:6: ")


@given(amount=st.integers(min_value=-10**6, max_value=10**6))
def test_a_case_passes_exactly_when_decide_agrees(amount: int) -> None:
    """The law: a case expecting `decide`'s own decision passes; any other expectation fails."""
    policy = parse_policy(POLICY)
    got = decide(policy, {"tool": "payment.send", "args": {"amount": amount}}).decision
    for expect in ("allow", "escalate", "deny"):
        [case] = parse_cases(json.dumps([{"tool": "payment.send", "args": {"amount": amount}, "expect": expect}]))
        assert run_case(policy, case).ok == (expect == got)


# ---- the command -----------------------------------------------------------------------------------------
def test_the_command_prints_failures_and_exits_1(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "pay.yaml").write_text(POLICY)
    (tmp_path / "cases.yaml").write_text(CASES)
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    code, out, err = gatekit_cli("test", tmp_path / "pay.yaml", tmp_path / "cases.yaml", "--junit", junit)
    assert code == 1
    assert out.splitlines() == [
        f"{tmp_path / 'cases.yaml'}:6: case `wrong decision`: expected deny, got allow (rules: none)",
        f"{tmp_path / 'cases.yaml'}:11: case `wrong rules`: expected rules `burst`, matched `big-payment`"]
    assert err.splitlines()[-1] == "error: 2 of 4 policy tests failed"
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "2"


def test_the_command_runs_the_policys_examples_and_passes(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "pay.yaml").write_text(POLICY)
    code, out, err = gatekit_cli("test", tmp_path / "pay.yaml")
    assert (code, out, err) == (0, "", "ok: 2 cases passed\n")
    code, out, _ = gatekit_cli("test", tmp_path / "pay.yaml", "--json")
    data = json.loads(out)
    assert code == 0 and (data["cases"], data["passed"], data["failed"]) == (2, 2, 0)


def test_a_bad_case_file_exits_3_naming_the_case_file(tmp_path: Path, gatekit_cli) -> None:
    (tmp_path / "cases.yaml").write_text("- {tool: x}\n")
    code, _, err = gatekit_cli("test", STARTER, tmp_path / "cases.yaml")
    assert code == 3
    assert err.splitlines() == [f"{tmp_path / 'cases.yaml'}:1: missing required key `expect`",
                                "error: the case file was refused (1 problem)"]


def test_the_bundled_case_file_loads_with_lines() -> None:
    cases = load_cases(STARTER_CASES)
    lines = STARTER_CASES.read_text().splitlines()
    assert all(lines[c.line - 1].startswith("- name: ") and c.name in lines[c.line - 1] for c in cases)
