"""Test-wide settings: Hypothesis profiles.

`dev` (the default) runs ~100 examples per property; `ci` runs at least 500, with no deadline (DuckDB's
first query in a process is slow) and prints a reproduction blob on failure. Pick one with
`HYPOTHESIS_PROFILE=ci`; `CI=true` selects `ci` on its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=500,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _profile() -> str:
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").lower() == "true" else "dev"


settings.load_profile(_profile())


@pytest.fixture
def gatekit_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `gatekit ARGS...` in-process as a user would type it: (exit code, stdout, stderr)."""
    from gatekit import cli

    def run(*args: object) -> tuple[int, str, str]:
        argv, sys.argv = sys.argv, ["gatekit", *map(str, args)]
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            sys.argv = argv
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture(scope="session")
def spark():  # type: ignore[no-untyped-def]
    """ONE local Spark session for the whole test run (local[2], small shuffles, no UI, quiet logs);
    the Spark tests skip only when pyspark is not installed (the `spark` extra; CI installs it)."""
    pytest.importorskip("pyspark")
    from gatekit.spark import session

    s = session("local[2]", app="gatekit-tests", conf={
        "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
        # tiny inputs and many distinct policies: compiling generated code costs more than it saves
        "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        # the driver keeps every query's plan for the UI's history even with the UI off: with the corpus,
        # the Hypothesis runs and the metrics on one session (large generated plans) 1g ran out of heap
        "spark.driver.memory": "3g", "spark.sql.ui.retainedExecutions": "20", "spark.ui.retainedJobs": "20",
        "spark.ui.retainedStages": "20", "spark.sql.adaptive.enabled": "true",
        "spark.python.worker.reuse": "true"})
    yield s
    s.stop()
