"""The policy dumper: load, dump, load is stable, and what it writes is a file the loader and the schema accept."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    examples = tuple(dataclasses.replace(e, line=0) for e in policy.examples)
    return dataclasses.replace(policy, rules=rules, examples=examples, text="", source="", fingerprint="")


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


_TEXT = st.text(alphabet="abAé🚀 0-:", max_size=5)
_SCALARS = st.one_of(st.integers(-10**6, 10**6), _TEXT, st.booleans(),
                     st.floats(allow_nan=False, allow_infinity=False, width=32))
_CALLS = st.fixed_dictionaries({"tool": st.sampled_from(["x", "db.query", "payment.send"])}, optional={
    "args": st.dictionaries(st.sampled_from(["a", "amount", "b.c"]), _SCALARS, max_size=3),
    "context": st.dictionaries(st.sampled_from(["env", "ip"]), _SCALARS, max_size=2),
    "agent": _TEXT, "user": _TEXT,
    "ts": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(timezone.utc)).map(lambda t: t.isoformat().replace("+00:00", "Z"))})


@st.composite
def examples(draw: st.DrawFn, rule_ids: list[str], tiers: list[str]) -> dict[str, Any]:
    call = draw(_CALLS)
    out: dict[str, Any] = {"action": call} if draw(st.booleans()) else dict(call)
    out["expect"] = draw(st.sampled_from(["allow", "escalate", "deny"]))
    if draw(st.booleans()):
        out["name"] = draw(_TEXT.filter(bool))
    if rule_ids and draw(st.booleans()):
        ids = draw(st.lists(st.sampled_from(rule_ids), max_size=3, unique=True))
        out["rules"] = {"includes": ids} if ids and draw(st.booleans()) else ids
    if tiers and draw(st.booleans()):
        out["tier"] = draw(st.sampled_from(tiers))
    if draw(st.booleans()):
        out["errors"] = draw(st.lists(st.sampled_from(["not_a_number", "type_mismatch"]), max_size=2, unique=True))
    if draw(st.booleans()):
        out["history"] = draw(st.lists(_CALLS, max_size=3))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), doc=policy_dicts())
def test_load_dump_load_is_stable_with_examples(data: st.DataObject, doc: dict[str, Any]) -> None:
    ids, tiers = [r["id"] for r in doc["rules"]], sorted(doc.get("tiers", {}))
    doc = {**doc, "examples": data.draw(st.lists(examples(ids, tiers), min_size=1, max_size=4))}
    policy = to_policy(doc)
    assert len(policy.examples) == len(doc["examples"])
    assert_stable(policy)


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
