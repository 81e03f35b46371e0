"""The Hypothesis agreement properties of tests/policy/test_agreement.py, decide vs Spark: any policy and logs
the strategies draw get the same decision, rules, errors and tier from both.

Spark costs seconds per job, so each example decides several logs in one job (`decide_frame(..., by=...)`),
and the example counts are modest; tests/policy/test_agreement.py holds DuckDB to the same outcomes with
many more examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.policy.harness import run_python, run_spark_many
from tests.policy.test_agreement import _show, dense_logs, logs, policy_dicts, to_policy, window_policies

_SETTINGS = settings(max_examples=6, deadline=None, derandomize=False,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.function_scoped_fixture])


def _agree(doc: dict[str, Any], many: list[list[dict[str, Any]]], spark: Any) -> None:
    policy = to_policy(doc)
    got = run_spark_many(policy, many, spark)
    for n, log in enumerate(many):
        _show(doc, log)
        want = run_python(policy, log)
        for i, (p, s) in enumerate(zip(want, got[n])):
            assert p == s, f"log {n} action {i}: decide {p} != spark {s}"


@_SETTINGS
@given(doc=policy_dicts(), many=st.lists(logs, min_size=4, max_size=4))
def test_decide_and_spark_agree(spark, doc: dict[str, Any], many: list[list[dict[str, Any]]]) -> None:
    _agree(doc, many, spark)


@_SETTINGS
@given(doc=window_policies(), many=st.lists(dense_logs(), min_size=4, max_size=4))
def test_windows_agree_on_spark(spark, doc: dict[str, Any], many: list[list[dict[str, Any]]]) -> None:
    _agree(doc, many, spark)
