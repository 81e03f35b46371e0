"""gatekit: decide which AI-agent actions need a human.

The core (this import) is light: policy loading, the scalar evaluator and enforce mode (`Gate`). Shadow mode
(`gatekit.replay`, `gatekit.logs`) pulls in DuckDB and polars only when imported.

>>> from gatekit import load_policy, decide
>>> decide(load_policy("policies/starter.yaml"), {"tool": "payment.send", "args": {"amount": 250}}).decision
"""

from gatekit.action import Action
from gatekit.enforce.gate import Denied, Gate, Pending
from gatekit.enforce.tokens import TokenRefused, verify_approval
from gatekit.errors import ApprovalError, GatekitError, LogFormatError, PolicyError, Problem, StoreError
from gatekit.policy import Decision, Policy, Rule, Tier, decide, load_policy, parse_policy

__all__ = [
    "Action",
    "ApprovalError",
    "Decision",
    "Denied",
    "Gate",
    "GatekitError",
    "LogFormatError",
    "Pending",
    "Policy",
    "PolicyError",
    "Problem",
    "Rule",
    "StoreError",
    "Tier",
    "TokenRefused",
    "decide",
    "load_policy",
    "parse_policy",
    "verify_approval",
]
