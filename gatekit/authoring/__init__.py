"""Writing the policy from evidence: the action catalog, policy tests, CI checks and the tuner.

Above metrics in the layers (it replays and scores); below the CLI. Names are imported on first use, so
`gatekit test` and `gatekit validate --catalog` (cases, catalog checks: the policy core only) run with the
core install, while `check` and `tune` load the shadow layer.

>>> from gatekit.authoring import run_cases
"""

from __future__ import annotations

import importlib
import typing

__all__ = ["CaseResult", "Catalog", "Change", "CheckResult", "Counts", "GateResult", "TestReport", "Tuning",
           "build_catalog", "catalog_warnings", "check_policy", "collect_cases", "dump_catalog", "junit_xml",
           "harm_bound", "load_catalog", "run_case", "run_cases", "tune", "unseen_harm"]

_MODULES = {
    **dict.fromkeys(("CaseResult", "TestReport", "collect_cases", "junit_xml", "run_case", "run_cases"), "cases"),
    **dict.fromkeys(("Catalog", "build_catalog", "catalog_warnings", "dump_catalog", "load_catalog"), "catalog"),
    **dict.fromkeys(("CheckResult", "GateResult", "check_policy"), "check"),
    **dict.fromkeys(("Change", "Counts", "Tuning", "harm_bound", "tune", "unseen_harm"), "tuning"),
}


def __getattr__(name: str) -> typing.Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"gatekit.authoring.{_MODULES[name]}"), name)
    raise AttributeError(f"module `gatekit.authoring` has no attribute `{name}`")
