"""Policy tests: calls with the decision a policy must give them, run through `decide`, and JUnit XML for CI.

>>> policy = load_policy("policies/starter.yaml")
>>> report = run_cases(policy, load_cases("policies/starter-cases.yaml"))
>>> report.failed
0

A case is an `Example` (gatekit.policy): from a case file (`load_cases`) or from the policy's own
`examples:` (`policy.examples`). Pure: no store, no DuckDB, so it runs with the core install.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from gatekit.errors import InputError
from gatekit.policy import Decision, Example, Policy, decide
from gatekit.policy.load import load_cases

__all__ = ["CaseResult", "TestReport", "collect_cases", "junit_xml", "run_case", "run_cases"]


@dataclass(frozen=True)
class CaseResult:
    """One case run: the decision it got and what did not match (nothing: it passed)."""

    case: Example
    source: str
    decision: Decision
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def where(self) -> str:
        return f"{self.source}:{self.case.line}"

    @property
    def message(self) -> str:
        """`FILE:LINE: case `name`: expected deny, got allow (rules: a, b)`; empty for a pass."""
        if self.ok:
            return ""
        return f"{self.where}: case `{self.case.name}`: {'; '.join(self.failures)}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.case.name, "file": self.source, "line": self.case.line, "passed": self.ok,
                "expect": self.case.expect, "decision": self.decision.decision,
                "rules": list(self.decision.rules), "tier": self.decision.tier,
                "errors": [e.code for e in self.decision.error_details], "failures": list(self.failures)}


@dataclass(frozen=True)
class TestReport:
    """Every case of a `gatekit test` run, in order."""

    __test__ = False  # not a pytest class

    policy: str
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "cases": len(self.results), "passed": self.passed, "failed": self.failed,
                "results": [r.to_dict() for r in self.results]}


def _shown(ids: Iterable[str]) -> str:
    return ", ".join(f"`{i}`" for i in ids) or "none"


def run_case(policy: Policy, case: Example, source: str = "<cases>") -> CaseResult:
    """Decide the case's call (its `history` before it) and compare with what it expects."""
    decision = decide(policy, case.action, case.history)
    failures: list[str] = []
    matched = set(decision.rules)
    if decision.decision != case.expect:
        failures.append(f"expected {case.expect}, got {decision.decision} (rules: {_shown(decision.rules)})")
    if case.rules is not None:
        known = {r.id for r in policy.rules}
        unknown = [r for r in case.rules if r not in known]
        if unknown:
            failures.append(f"no rule {_shown(unknown)} in policy `{policy.name}`")
        want = set(case.rules)
        if case.rules_match == "exact" and want != matched:
            failures.append(f"expected rules {_shown(sorted(want))}, matched {_shown(decision.rules)}")
        elif case.rules_match == "includes" and not want <= matched:
            failures.append(f"expected rules including {_shown(sorted(want - matched))}, "
                            f"matched {_shown(decision.rules)}")
    if case.tier is not None and decision.tier != case.tier:
        failures.append(f"expected tier `{case.tier}`, got " + (f"`{decision.tier}`" if decision.tier else "none"))
    if case.errors is not None:
        got = sorted({e.code for e in decision.error_details})
        if set(case.errors) != set(got):
            failures.append(f"expected errors {_shown(sorted(case.errors))}, got {_shown(got)}")
    return CaseResult(case, source, decision, tuple(failures))


def run_cases(policy: Policy, cases: Sequence[Example], source: str = "<cases>") -> TestReport:
    """Run `cases` (all from `source`) against `policy`."""
    return TestReport(policy.name, tuple(run_case(policy, c, source) for c in cases))


def collect_cases(policy: Policy, files: Sequence[str | Path] = ()) -> TestReport:
    """Run the cases of `files` against `policy`, or, with no files, the policy's own `examples:`.

    Raises `PolicyError` for a case file that cannot be read or is invalid, `InputError` when there is
    nothing to run.
    """
    results: list[CaseResult] = []
    if files:
        for f in files:
            results.extend(run_cases(policy, load_cases(f), str(f)).results)
    else:
        if not policy.examples:
            raise InputError(f"policy `{policy.name}` has no `examples:` and no case file was given: "
                             f"`gatekit test POLICY CASES.yaml`")
        results.extend(run_cases(policy, policy.examples, policy.source).results)
    return TestReport(policy.name, tuple(results))


def junit_xml(report: TestReport) -> str:
    """The report as JUnit XML (one `testsuite`, one `testcase` per case, a `failure` per failing case)."""
    suites = ET.Element("testsuites", name="gatekit test", tests=str(len(report.results)),
                        failures=str(report.failed))
    suite = ET.SubElement(suites, "testsuite", name=f"policy {report.policy}", tests=str(len(report.results)),
                          failures=str(report.failed), errors="0", skipped="0")
    for r in report.results:
        case = ET.SubElement(suite, "testcase", name=r.case.name, classname=r.source, file=r.source,
                             line=str(r.case.line))
        if not r.ok:
            failure = ET.SubElement(case, "failure", message="; ".join(r.failures), type="PolicyTestFailure")
            failure.text = r.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
