"""The policy language: schema, loader, and the scalar evaluator."""

from gatekit.policy.decide import Decision, decide
from gatekit.policy.load import load_policy, parse_policy
from gatekit.policy.model import Policy, Rule, Tier

__all__ = ["Decision", "Policy", "Rule", "Tier", "decide", "load_policy", "parse_policy"]
