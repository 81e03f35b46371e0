"""A loaded policy: validated, with parsed conditions and compiled patterns. Immutable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatekit.policy.conditions import Cond

__all__ = ["LEVEL", "VERDICTS", "Example", "Policy", "Rule", "Tier"]

from gatekit.policy.semantics import LEVEL, VERDICTS  # precedence: semantics.py


@dataclass(frozen=True)
class Tier:
    name: str
    approvals: int = 1
    roles: tuple[str, ...] = ()
    timeout_us: int | None = None
    approval_ttl_us: int | None = None

    @property
    def strictness(self) -> tuple[int, int, float]:
        """More approvals, then more required roles, then a shorter timeout is stricter."""
        timeout = self.timeout_us if self.timeout_us is not None else float("inf")
        return (self.approvals, len(self.roles), -timeout)


@dataclass(frozen=True)
class Rule:
    id: str
    tools: tuple[str, ...]
    tool_regex: str  # one RE2 pattern (full match) for all of `tools`
    action: str
    when: Cond
    tier: str | None = None
    reason: str | None = None
    mode: str = "enforce"
    line: int = 0

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"


@dataclass(frozen=True)
class Example:
    """A call with the decision a policy must give it: an item of a policy's `examples:` or of a case file.

    `action` is the call as the contract writes it (tool, args, context, agent, session, user, ts); `rules`
    the matched rule ids expected, exactly or (`rules_match="includes"`) at least; `tier` and `errors` (the set
    of error codes) are checked when not None; `history` holds the calls before it, for windows. Checked by
    `gatekit.authoring.run_cases`.
    """

    name: str
    action: dict[str, Any]
    expect: str
    rules: tuple[str, ...] | None = None
    rules_match: str = "exact"
    tier: str | None = None
    errors: tuple[str, ...] | None = None
    history: tuple[dict[str, Any], ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Policy:
    """A policy as both evaluators read it. Build one with `load_policy` or `parse_policy`."""

    name: str
    rules: tuple[Rule, ...]
    tiers: dict[str, Tier] = field(default_factory=dict)
    default: str = "allow"
    on_error: str = "escalate"
    timezone: str = "UTC"
    version: int = 1
    text: str = ""
    source: str = "<policy>"
    fingerprint: str = ""
    examples: tuple[Example, ...] = ()
    # What the evaluators compile from this policy, built on first use by their owner (decide's evaluator
    # under "evaluator"). A cache, not part of the value: not compared, shown or carried by
    # `dataclasses.replace` (a replaced policy compiles afresh).
    compiled: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def tier_rank(self) -> dict[str, int]:
        """Tier name -> rank, 0 the strictest; ties keep the file's order."""
        ordered = sorted(enumerate(self.tiers.values()), key=lambda it: (tuple(-x for x in it[1].strictness), it[0]))
        return {t.name: rank for rank, (_, t) in enumerate(ordered)}
