"""Why `matches` runs google-re2 in an Arrow UDF: Java's regex engine (Spark's RLIKE) is not RE2 on patterns
the policy loader accepts, and the Spark backend gives RE2's answer, decide's."""

from __future__ import annotations

from gatekit.policy import parse_policy
from gatekit.policy.values import compile_re2

from tests.policy.harness import run_python, run_spark

POLICY = """\
version: 1
name: regex
rules:
  - id: ends-in-a
    tool: t
    action: deny
    when: {args.memo: {matches: "a$"}}
"""


def test_java_regex_is_not_re2_and_spark_answers_as_re2(spark) -> None:
    # `$` in Java also matches before a final line terminator; in RE2 (without (?m)) only at the very end
    assert spark.sql("SELECT 'a\\n' RLIKE 'a$' AS hit").collect()[0]["hit"] is True
    assert compile_re2("a$").search("a\n") is None
    policy = parse_policy(POLICY)
    log = [{"tool": "t", "args": {"memo": "a\n"}}, {"tool": "t", "args": {"memo": "ba"}},
           {"tool": "t", "args": {"memo": 1}}]
    assert run_spark(policy, log, spark) == run_python(policy, log) == [
        ("allow", (), (), None), ("deny", ("ends-in-a",), (), None), ("escalate", (), ("ends-in-a",), None)]
