"""Dump a policy back to a policy file: `load_policy(dump_policy(policy))` is the same policy.

>>> text = dump_policy(load_policy("policies/starter.yaml"))

`policy_dict` is the same document as plain data (what `json.dumps` or a YAML writer takes); `condition`
and `duration` dump one condition tree and one duration, for code that shows parts of a policy (the diff).
What the model does not keep is not dumped: comments, descriptions, key order beyond the canonical one.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML

from gatekit.policy.conditions import All, Any_, Cond, Not, Test, Window
from gatekit.policy.model import Example, Policy, Rule, Tier

__all__ = ["condition", "dump_policy", "dump_yaml", "duration", "example_dict", "number", "policy_dict"]

_UNITS = (("w", 604_800_000_000), ("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000),
          ("s", 1_000_000), ("ms", 1_000), ("us", 1))


def duration(us: int | None) -> str | None:
    """Microseconds as the policy file writes a duration (`90_000_000` -> `1m30s`), None for None."""
    if us is None:
        return None
    if us == 0:
        return "0s"
    out = []
    for unit, size in _UNITS:
        if us >= size:
            out.append(f"{us // size}{unit}")
            us %= size
    return "".join(out)


def number(value: Any) -> Any:
    """An operand as a file writes it: whole floats as integers, lists for tuples, the rest unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, (list, tuple)):
        return [number(v) for v in value]
    return value


def condition(cond: Cond) -> dict[str, Any]:
    """A condition tree as the mapping a rule's `when` holds (loads back to the same tree)."""
    if isinstance(cond, Test):
        return {cond.field.name: {cond.op: number(cond.operand)}}
    if isinstance(cond, Window):
        spec: dict[str, Any] = {}
        if cond.field is not None:
            spec["field"] = cond.field.name
        if cond.per is not None:
            spec["per"] = cond.per
        spec["window"] = duration(cond.window_us)
        spec[cond.op] = number(cond.threshold)
        return {cond.kind: spec}
    if isinstance(cond, Not):
        return {"not": condition(cond.item)}
    items = [condition(item) for item in cond.items]
    if isinstance(cond, All):
        # two or more entries of one mapping load as `all` of them, in order: the short form when no two
        # entries share a key (one entry alone would load as itself, not as an `all` of one)
        keys = [key for item in items for key in item]
        if not items or (len(items) >= 2 and len(set(keys)) == len(keys) == len(items)):
            return {key: value for item in items for key, value in item.items()}
        return {"all": items}
    assert isinstance(cond, Any_)
    return {"any": items}


def _tier(tier: Tier) -> dict[str, Any]:
    out: dict[str, Any] = {"approvals": tier.approvals}
    if tier.roles:
        out["roles"] = list(tier.roles)
    if tier.timeout_us is not None:
        out["timeout"] = duration(tier.timeout_us)
    if tier.approval_ttl_us is not None:
        out["approval_ttl"] = duration(tier.approval_ttl_us)
    return out


def rule_dict(rule: Rule) -> dict[str, Any]:
    """One rule as an item of a policy file's `rules`."""
    out: dict[str, Any] = {"id": rule.id, "tool": rule.tools[0] if len(rule.tools) == 1 else list(rule.tools),
                           "action": rule.action}
    if rule.tier is not None:
        out["tier"] = rule.tier
    if rule.mode != "enforce":
        out["mode"] = rule.mode
    when = condition(rule.when)
    if when:
        out["when"] = when
    if rule.reason is not None:
        out["reason"] = rule.reason
    return out


def example_dict(example: Example) -> dict[str, Any]:
    """One example as an item of a policy's `examples:` (or of a case file): the call always as `action:`."""
    out: dict[str, Any] = {"name": example.name, "action": dict(example.action), "expect": example.expect}
    if example.rules is not None:
        out["rules"] = list(example.rules) if example.rules_match == "exact" else {"includes": list(example.rules)}
    if example.tier is not None:
        out["tier"] = example.tier
    if example.errors is not None:
        out["errors"] = list(example.errors)
    if example.history:
        out["history"] = [dict(h) for h in example.history]
    return out


def policy_dict(policy: Policy) -> dict[str, Any]:
    """The policy as a policy file's document, plain data (dicts, lists, strings, numbers, booleans)."""
    out: dict[str, Any] = {"version": policy.version, "name": policy.name, "default": policy.default,
                           "on_error": policy.on_error, "timezone": policy.timezone}
    if policy.tiers:
        out["tiers"] = {name: _tier(tier) for name, tier in policy.tiers.items()}
    out["rules"] = [rule_dict(rule) for rule in policy.rules]
    if policy.examples:
        out["examples"] = [example_dict(example) for example in policy.examples]
    return out


def dump_yaml(document: Any) -> str:
    """Plain data as YAML in the style of the policy files (block style, keys in the given order). A
    document of ruamel.yaml's commented containers (`CommentedMap`) keeps its comments."""
    from ruamel.yaml.comments import CommentedBase

    yaml = YAML(typ="rt" if isinstance(document, CommentedBase) else "safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    yaml.allow_unicode = True
    yaml.width = 4096  # long reasons and patterns stay on one line
    buf = io.StringIO()
    yaml.dump(document, buf)
    return buf.getvalue()


def dump_policy(policy: Policy) -> str:
    """The policy as policy-file YAML; `parse_policy(dump_policy(p))` decides exactly as `p` does."""
    return dump_yaml(policy_dict(policy))
