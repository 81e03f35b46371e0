"""The policy dumper: load, dump, load is stable, and what it writes is a file the loader and the schema accept."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings

from gatekit.policy import Policy, load_policy, parse_policy
from gatekit.policy.conditions import All, Any_, Cond, Not, Test, Window
from gatekit.policy.dump import condition, dump_policy, duration, policy_dict
from gatekit.policy.schema import json_schema
from gatekit.policy.values import parse_duration

from .test_agreement import policy_dicts, to_policy

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def _bare(cond: Cond) -> Cond:
    if isinstance(cond, (Test, Window)):
        return dataclasses.replace(cond, line=0)
    if isinstance(cond, Not):
        return Not(_bare(cond.item))
    return type(cond)(tuple(_bare(c) for c in cond.items))


def bare(policy: Policy) -> Policy:
    """The policy without what depends on its text: line numbers, the text itself, its fingerprint."""
    rules = tuple(dataclasses.replace(r, line=0, when=_bare(r.when)) for r in policy.rules)
    return dataclasses.replace(policy, rules=rules, text="", source="", fingerprint="")


def assert_stable(policy: Policy) -> None:
    text = dump_policy(policy)
    again = parse_policy(text)
    assert bare(again) == bare(policy), text
    assert dump_policy(again) == text
    VALIDATOR.validate(policy_dict(policy))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=policy_dicts())
def test_load_dump_load_is_stable(doc: dict[str, Any]) -> None:
    assert_stable(to_policy(doc))


@pytest.mark.parametrize("path", sorted((REPO / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_the_starter_policies_dump_and_load_back(path: Path) -> None:
    assert_stable(load_policy(path))


def test_an_all_of_one_and_repeated_fields_keep_their_shape() -> None:
    policy = parse_policy("""
version: 1
name: shapes
rules:
  - id: a
    tool: x
    action: deny
    when:
      all: [{args.a: 1}]
      any: [{args.b: {gt: 1, lt: 5}}, {not: {}}]
      args.c: {in: [1, [2, "3"]], ne: 2.5}
""")
    assert_stable(policy)
    assert isinstance(policy.rules[0].when, All) and isinstance(policy.rules[0].when.items[1], Any_)


@pytest.mark.parametrize("us", [1, 999, 1_000, 1_000_000, 90_000_000, 3_600_000_000 + 1, 604_800_000_000 * 3])
def test_a_duration_parses_back_to_itself(us: int) -> None:
    assert parse_duration(duration(us)) == us


def test_condition_is_the_when_mapping() -> None:
    policy = parse_policy("version: 1\nname: c\nrules:\n  - {id: a, tool: x, action: deny, "
                          "when: {args.a: {gt: 100}, rate: {per: agent, window: 10m, gt: 20}}}\n")
    assert condition(policy.rules[0].when) == {"args.a": {"gt": 100},
                                                "rate": {"per": "agent", "window": "10m", "gt": 20}}
