"""Tool names that differ from the policy's only by case or Unicode form.

Tool globs match case-sensitively (the contract), so `Payment.Send` or `payment.ｓｅｎｄ` is not
`payment.send` to a rule. A dispatcher that looks tools up loosely would still run it. Enforce mode
therefore refuses such a variant: a call whose tool, folded (NFKC, then casefold), matches a rule's tool
pattern, folded the same way, when the name as written does not match that rule.

>>> variant_of(policy, "Payment.Send")
'payment.send'
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from gatekit.policy.model import Policy
from gatekit.policy.values import compile_re2, glob_to_re2

__all__ = ["Variants", "fold", "variant_of", "variants"]


def fold(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


class Variants:
    """The check for one policy: which rules' patterns a folded tool name would match."""

    def __init__(self, policy: Policy) -> None:
        self.rules = [(rule, compile_re2(rule.tool_regex),
                       compile_re2("|".join(f"(?:{glob_to_re2(fold(t))})" for t in rule.tools)), rule.tools)
                      for rule in policy.rules if rule.tools]
        self.of = lru_cache(maxsize=4096)(self._of)

    def _of(self, tool: str) -> str | None:
        if tool.isascii() and tool == tool.lower() and tool.isprintable():
            folded = tool  # already in folded form: a variant only if a pattern is not
        else:
            folded = fold(tool)
        for rule, exact, loose, tools in self.rules:
            if loose.fullmatch(folded) is not None and exact.fullmatch(tool) is None:
                # the pattern it imitates: its own spelling if a rule names it, else the first glob it matches
                return next((t for t in tools if fold(t) == folded), None) or next(
                    t for t in tools if compile_re2(glob_to_re2(fold(t))).fullmatch(folded) is not None)
        return None


def variants(policy: Policy) -> Variants:
    """The policy's variant check, built once per policy object."""
    found = policy.__dict__.get("_variants")
    if found is None:
        found = Variants(policy)
        object.__setattr__(policy, "_variants", found)
    return found


def variant_of(policy: Policy, tool: str) -> str | None:
    """The policy's tool pattern that `tool` imitates by case or Unicode form, or None."""
    return variants(policy).of(tool)
