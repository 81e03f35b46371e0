"""Which tools `--hide-denied` leaves out of `tools/list`: those the policy denies whatever the call.

>>> always_denied(load_policy("policy.yaml"))("db.drop_table")
True
"""

from __future__ import annotations

from collections.abc import Callable

from gatekit.policy.conditions import All
from gatekit.policy.model import Policy
from gatekit.policy.names import variants
from gatekit.policy.values import compile_re2

_EMPTY = All(())  # a rule's `when` when it has none


def always_denied(policy: Policy) -> Callable[[str], bool]:
    """Which tool names the policy denies whatever the call (for `--hide-denied`).

    A tool is always denied when an enforced `deny` rule names it with no `when`, when the policy's
    default is `deny` and no enforced rule that could allow or escalate names it, or when its name imitates
    one of the policy's by case or Unicode form (the gate refuses those).
    """
    unconditional = [compile_re2(r.tool_regex) for r in policy.rules
                     if r.enforced and r.action == "deny" and r.when == _EMPTY]
    lenient = [compile_re2(r.tool_regex) for r in policy.rules if r.enforced and r.action != "deny"]
    check = variants(policy)

    def denied(tool: str) -> bool:
        if any(p.fullmatch(tool) is not None for p in unconditional):
            return True
        if policy.default == "deny" and not any(p.fullmatch(tool) is not None for p in lenient):
            return True
        return check.of(tool) is not None

    return denied
