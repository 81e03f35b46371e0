"""The policy language: schema, loader, and the scalar evaluator."""

from gatekit.policy.decide import decide
from gatekit.policy.decision import Decision, RuleError
from gatekit.policy.load import load_policy, parse_policy
from gatekit.policy.model import Policy, Rule, Tier

__all__ = ["Decision", "Policy", "RuleError", "Rule", "Tier", "decide", "load_policy", "parse_policy"]
