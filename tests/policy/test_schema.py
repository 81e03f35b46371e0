"""The loader accepts exactly what the JSON Schema (`gatekit schema`) accepts, except where a schema cannot say.

The property runs over generated documents, valid ones (the agreement test's policies) and near-valid ones
(one or two mistakes a schema can see: an unknown key, a missing required key, a wrong type or enum, an
unknown field or test). `EXCEPTIONS` lists, one document each, the exact places where they cannot agree:
the schema accepts and the loader rejects, because the check needs more than a schema can express.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekit.errors import PolicyError
from gatekit.policy import parse_policy
from gatekit.policy.conditions import FIELD_PATTERN, OPERAND_TYPES, OPS, PER_KEYS, Field
from gatekit.policy.schema import json_schema

from .test_agreement import policy_dicts

VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def schema_accepts(doc: Any) -> bool:
    return VALIDATOR.is_valid(doc)


def loader_accepts(doc: Any) -> bool:
    try:
        parse_policy(json.dumps(doc, ensure_ascii=False, indent=1))
    except PolicyError:
        return False
    return True


# ---- near-valid documents: one mistake a schema can see, at a place the document has ----------------
def _rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["rules"]


def _a_when(doc: dict[str, Any]) -> dict[str, Any] | None:
    for rule in _rules(doc):
        if isinstance(rule.get("when"), dict):
            return rule["when"]
    return None


def _mutate(doc: dict[str, Any], how: str, pick: int) -> None:
    rule = _rules(doc)[pick % len(_rules(doc))]
    when = _a_when(doc)
    if how == "unknown top key":
        doc["colour"] = "red"
    elif how == "unknown rule key":
        rule["priority"] = 1
    elif how == "unknown tier key":
        doc.setdefault("tiers", {"t": {}})
        next(iter(doc["tiers"].values()))["quorum"] = 2
    elif how == "missing version":
        doc.pop("version")
    elif how == "missing name":
        doc.pop("name")
    elif how in ("missing id", "missing tool", "missing action"):
        rule.pop(how.split()[1])
    elif how == "bad version":
        doc["version"] = 2
    elif how == "bad action":
        rule["action"] = "permit"
    elif how == "bad default":
        doc["default"] = "maybe"
    elif how == "bad on_error":
        doc["on_error"] = "allow"
    elif how == "bad mode":
        rule["mode"] = "off"
    elif how == "bad id":
        rule["id"] = "has space"
    elif how == "empty name":
        doc["name"] = ""
    elif how == "name not a string":
        doc["name"] = 5
    elif how == "rules not a list":
        doc["rules"] = {"r": 1}
    elif how == "tool not a string":
        rule["tool"] = 5
    elif how == "reason not a string":
        rule["reason"] = ["x"]
    elif how == "when a list":
        rule["when"] = [{"agent": "a"}]
    elif how == "approvals out of range":
        doc["tiers"] = {"t": {"approvals": 0}}
    elif how == "approvals not an integer":
        doc["tiers"] = {"t": {"approvals": "2"}}
    elif how == "roles not a list":
        doc["tiers"] = {"t": {"roles": "finance"}}
    elif how == "timezone not a string":
        doc["timezone"] = 3
    elif when is None:
        rule["when"] = {"agent.name": "x"}  # an unknown field, for the condition mistakes below
    elif how == "unknown field":
        when["session_id"] = "x"
    elif how == "empty field path":
        when["args..a"] = 1
    elif how == "unknown test":
        when["args.zz"] = {"between": [1, 2]}
    elif how == "in not a list":
        when["args.zz"] = {"in": "abc"}
    elif how == "exists not a boolean":
        when["args.zz"] = {"exists": "yes"}
    elif how == "matches not a string":
        when["args.zz"] = {"matches": 5}
    elif how == "bad per":
        when["rate"] = {"per": "org", "window": "1m", "gt": 1}
    elif how == "window missing":
        when["rate"] = {"gt": 1}
    elif how == "sum without field":
        when["sum"] = {"window": "1m", "gt": 1}
    elif how == "unknown window key":
        when["rate"] = {"window": "1m", "gt": 1, "every": 2}
    elif how == "not a list of all":
        when["all"] = {"agent": "a"}
    else:  # pragma: no cover
        raise AssertionError(how)


MISTAKES = ["unknown top key", "unknown rule key", "unknown tier key", "missing version", "missing name",
            "missing id", "missing tool", "missing action", "bad version", "bad action", "bad default",
            "bad on_error", "bad mode", "bad id", "empty name", "name not a string", "rules not a list",
            "tool not a string", "reason not a string", "when a list", "approvals out of range",
            "approvals not an integer", "roles not a list", "timezone not a string", "unknown field",
            "empty field path", "unknown test", "in not a list", "exists not a boolean", "matches not a string",
            "bad per", "window missing", "sum without field", "unknown window key", "not a list of all"]


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(policy_dicts()))
    for how in draw(st.lists(st.sampled_from(MISTAKES), max_size=2, unique=True)):
        if not isinstance(doc.get("rules"), list):
            break
        _mutate(doc, how, draw(st.integers(0, 5)))
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents())
def test_the_loader_accepts_exactly_what_the_schema_accepts(doc: dict[str, Any]) -> None:
    assert schema_accepts(doc) == loader_accepts(doc), json.dumps(doc, indent=1)


@settings(max_examples=50, deadline=None)
@given(doc=policy_dicts())
def test_every_generated_policy_is_valid_for_both(doc: dict[str, Any]) -> None:
    assert schema_accepts(doc) and loader_accepts(doc)


@pytest.mark.parametrize("how", MISTAKES)
def test_each_mistake_is_rejected_by_both(how: str) -> None:
    doc = {"version": 1, "name": "m", "tiers": {"t": {}},
           "rules": [{"id": "r", "tool": "x", "action": "deny", "when": {"agent": "a"}}]}
    _mutate(doc, how, 0)
    assert not schema_accepts(doc) and not loader_accepts(doc), how


# ---- where a schema cannot agree: the schema accepts, the loader rejects --------------------------------
def _rule(**rule: Any) -> dict[str, Any]:
    return {"version": 1, "name": "x", "rules": [{"id": "r", "tool": "t", "action": "deny", **rule}]}


EXCEPTIONS = {
    "an invalid RE2 pattern": _rule(when={"args.a": {"matches": "("}}),
    "a duplicate rule id": {"version": 1, "name": "x", "rules": [{"id": "r", "tool": "t", "action": "deny"}] * 2},
    "an unknown tier": _rule(action="escalate", tier="nope"),
    "a tier on a rule that does not escalate": {**_rule(tier="t"), "tiers": {"t": {}}},
    "more required roles than approvals": {"version": 1, "name": "x", "tiers": {"t": {"roles": ["a", "b"]}}},
    "an unknown time zone": {"version": 1, "name": "x", "timezone": "Mars/Olympus"},
    "a duration that does not parse": {"version": 1, "name": "x", "tiers": {"t": {"timeout": "soon"}}},
    "a window that does not parse": _rule(when={"rate": {"window": "1 fortnight", "gt": 1}}),
    "an ordering test on a string that is not a date": _rule(when={"args.a": {"gt": "ten"}}),
    "a date test that is not a date": _rule(when={"time.date": {"gt": "tomorrow"}}),
    "a weekday that is not a weekday": _rule(when={"time.weekday": "someday"}),
    "an hour out of 0-23": _rule(when={"time.hour": 24}),
    "a null operand of eq": _rule(when={"args.a": {"eq": None}}),  # a bare null the schema rejects too
    "a field with no test": _rule(when={"args.a": {}}),
    "an empty all": _rule(when={"all": []}),
    "a window without gt or gte": _rule(when={"rate": {"window": "1m"}}),
    "a window with both gt and gte": _rule(when={"rate": {"window": "1m", "gt": 1, "gte": 1}}),
    "a sum over a field that is not args or context": _rule(when={"sum": {"window": "1m", "gt": 1,
                                                                          "field": "agent"}}),
    "an empty tool list": _rule(tool=[]),
    "a string with NUL": _rule(when={"args.a": "a\x00"}),
    # the key pattern's `$` also matches before a final newline in Python's `re`, as jsonschema applies it
    "a field name with a final newline": _rule(when={"tool\n": "x"}),
    # examples: which rules and tiers exist, and which of two ways the call is given, are the loader's
    "an example naming an unknown rule": {**_rule(), "examples": [{"tool": "t", "expect": "deny", "rules": ["nope"]}]},
    "an example naming an unknown tier": {**_rule(), "examples": [{"tool": "t", "expect": "deny", "tier": "nope"}]},
    "an example with no call": {**_rule(), "examples": [{"expect": "deny"}]},
    "an example with both action and tool": {**_rule(), "examples": [{"tool": "t", "action": {"tool": "t"},
                                                                       "expect": "deny"}]},
    "an example whose history has no tool": {**_rule(), "examples": [{"tool": "t", "expect": "deny",
                                                                       "history": [{"args": {}}]}]},
}


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_the_exceptions_are_exactly_these(name: str) -> None:
    doc = EXCEPTIONS[name]
    assert schema_accepts(doc), f"{name}: the schema now rejects it: drop it from EXCEPTIONS"
    assert not loader_accepts(doc), f"{name}: the loader now accepts it: drop it from EXCEPTIONS"


# ---- the schema is derived from conditions.py ---------------------------------------------------------
def test_the_schema_lists_every_test_and_per_key() -> None:
    when = json_schema()["$defs"]["When"]
    test = when["patternProperties"][FIELD_PATTERN]["anyOf"][0]
    assert set(test["properties"]) == set(OPS) == set(OPERAND_TYPES)
    assert when["properties"]["rate"]["properties"]["per"]["enum"] == list(PER_KEYS)


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.text(alphabet="argsctxonemiu.hdywl_ 1é", max_size=14),  # no newline: see EXCEPTIONS
                     st.sampled_from(["args.a", "args..a", "args.", "context.a.b", "time.hour", "time.x",
                                      "tool", "tools", "args.a.", ".args.a", "args.a b"])))
def test_the_field_pattern_is_what_field_parse_accepts(key: str) -> None:
    try:
        Field.parse(key)
        parsed = True
    except ValueError:
        parsed = False
    assert parsed == (re.search(FIELD_PATTERN, key) is not None), key  # as jsonschema applies a pattern
