"""Writing the policy from evidence: the action catalog, policy tests, CI checks and the tuner.

Above metrics in the layers (it replays and scores); below the CLI.
"""

from __future__ import annotations

from gatekit.authoring.cases import CaseResult, TestReport, collect_cases, junit_xml, run_case, run_cases
from gatekit.authoring.check import CheckResult, GateResult, check_policy

__all__ = ["CaseResult", "CheckResult", "GateResult", "TestReport", "check_policy", "collect_cases", "junit_xml",
           "run_case", "run_cases"]
