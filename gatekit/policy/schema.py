"""The policy file's schema (pydantic): what keys exist and what values they take.

It validates the file's shape and produces the JSON Schema editors use; `load` turns a valid file into a
`Policy` (model.py) with parsed conditions and compiled patterns.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from gatekit.policy.conditions import FIELD_PATTERN, OPERAND_TYPES, PER_KEYS, WINDOW_OPS

__all__ = ["CaseFile", "ExampleFile", "json_schema"]

Verdict = Literal["allow", "deny", "escalate"]
Duration = Union[str, int]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TierFile(_Strict):
    """What an escalation needs before the call may run."""

    approvals: int = Field(1, ge=1, le=100, description="distinct approvals needed (M of N)")
    roles: list[str] = Field(default_factory=list, description="roles that must each approve at least once")
    timeout: Duration | None = Field(None, description="no decision by then: deny (e.g. 4h, 30m)")
    approval_ttl: Duration | None = Field(None, description="an approval expires this long after it is given")
    description: str | None = None


class RuleFile(_Strict):
    """One rule: the tools it looks at, what it decides, and when."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:/@-]+$", description="unique, stable id")
    tool: str | list[str] = Field(description="tool name, shell-style glob (db.*), or a list of them")
    action: Verdict
    tier: str | None = Field(None, description="tier an escalation needs (escalate rules only)")
    when: dict[str, Any] | None = Field(None, description="conditions; every entry must hold")
    reason: str | None = None
    mode: Literal["enforce", "shadow"] = Field("enforce", description="shadow: recorded, never decides")
    description: str | None = None


class RulesIncluded(_Strict):
    """Rules that must be among the matched ones (others may match too)."""

    includes: list[str] = Field(min_length=1)


class ExampleFile(_Strict):
    """A call with the decision the policy must give it (`gatekit test` runs it): the call as `action:`, or
    its keys (`tool:`, `args:`, ...) at the top."""

    name: str | None = Field(None, min_length=1, description="shown when the case fails (default: case N)")
    description: str | None = None
    action: dict[str, Any] | None = Field(None, description="the call: tool, args, context, agent, user, ts...")
    tool: str | None = Field(None, min_length=1, description="shorthand for action.tool")
    args: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    agent: str | None = None
    session: str | None = None
    user: str | None = None
    ts: str | None = Field(None, description="ISO 8601 time of the call (windows and time.* fields)")
    expect: Verdict = Field(description="the decision the policy must give")
    rules: list[str] | RulesIncluded | None = Field(
        None, description="the matched rule ids, exactly (a list) or at least these ({includes: [...]})")
    tier: str | None = Field(None, description="the tier the escalation must need")
    errors: list[str] | None = Field(None, description="the error codes the rules raise, as a set ([]: none)")
    history: list[dict[str, Any]] = Field(default_factory=list,
                                          description="earlier calls, for rate and sum windows")


class CaseFile(_Strict):
    """A file of policy test cases (`gatekit test POLICY CASES.yaml`)."""

    cases: list[ExampleFile] = Field(default_factory=list)


class PolicyFile(_Strict):
    """A gatekit policy file (version 1)."""

    version: Literal[1]
    name: str = Field(min_length=1)
    description: str | None = None
    default: Verdict = Field("allow", description="decision when no enforce-mode rule matches")
    on_error: Literal["escalate", "deny"] = Field(
        "escalate", description="at least this when a matching rule cannot be evaluated"
    )
    timezone: str = Field("UTC", description="IANA time zone for time.* fields")
    tiers: dict[str, TierFile] = Field(default_factory=dict)
    rules: list[RuleFile] = Field(default_factory=list)
    examples: list[ExampleFile] = Field(default_factory=list,
                                        description="calls with the decision they must get (gatekit test)")


# The `when` language, derived from conditions.py (the tests, the `per` keys, the field names).
_TEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {op: ({} if types is None else {"type": types[0] if len(types) == 1 else types})
                   for op, types in OPERAND_TYPES.items()},
}
_WINDOW = {
    "type": "object",
    "additionalProperties": False,
    "required": ["window"],
    "properties": {
        "per": {"enum": list(PER_KEYS)},
        "window": {"type": ["string", "integer"]},
        **{op: {"type": "number"} for op in WINDOW_OPS},
    },
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, with the `when` language spelled out for editors."""
    schema = PolicyFile.model_json_schema()
    when = {
        "type": "object",
        "description": "field: value (eq) or field: {test: operand}; all / any / not; rate / sum windows",
        "properties": {
            "all": {"type": "array", "items": {"$ref": "#/$defs/When"}},
            "any": {"type": "array", "items": {"$ref": "#/$defs/When"}},
            "not": {"$ref": "#/$defs/When"},
            "rate": _WINDOW,
            "sum": {**_WINDOW, "required": ["window", "field"],
                    "properties": {**_WINDOW["properties"], "field": {"type": "string"}}},
        },
        "patternProperties": {
            FIELD_PATTERN: {
                "anyOf": [_TEST, {"type": ["string", "number", "boolean", "array"]}]
            }
        },
        "additionalProperties": False,
    }
    schema.setdefault("$defs", {})["When"] = when
    schema["$defs"]["RuleFile"]["properties"]["when"] = {"anyOf": [{"$ref": "#/$defs/When"}, {"type": "null"}]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gatekit policy"
    return schema
