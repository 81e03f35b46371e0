"""The policy language: schema, loader, dumper, and the scalar evaluator."""

from gatekit.policy.decide import decide
from gatekit.policy.decision import Decision, RuleError
from gatekit.policy.dump import dump_policy, policy_dict
from gatekit.policy.load import load_policy, parse_policy
from gatekit.policy.model import Example, Policy, Rule, Tier

__all__ = ["Decision", "Example", "Policy", "Rule", "RuleError", "Tier", "decide", "dump_policy", "load_policy",
           "parse_policy", "policy_dict"]
