"""The `Decision` value: what a policy decides for one call, which rules decided it, and every error.

An error is a value too (`RuleError`: rule, field, test, code, message), as Cedar's responses carry them.
Both evaluators produce the same codes and messages: `decide` from the value it looked at, the SQL compiler
from the same value's kind, both through `error_message` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BAD_NUMBER", "CODES", "INTERNAL_ERROR", "KIND_NAMES", "NOT_A_NUMBER", "TYPE_MISMATCH", "Decision", "RuleError",
           "error_message"]

# The stable error codes, from the semantics table (DESIGN.md): a present value a test cannot use.
BAD_NUMBER = "bad_number"  # NaN, an infinity, or a number (or numeric string) out of float range
NOT_A_NUMBER = "not_a_number"  # an ordering test or a `sum` on a string that is not a JSON number
TYPE_MISMATCH = "type_mismatch"  # a kind of value the test cannot use (a list for `gt`, a number for `matches`)
INTERNAL_ERROR = "internal_error"  # an evaluator bug, reported as an error, never an allow (decide only)
CODES = (BAD_NUMBER, NOT_A_NUMBER, TYPE_MISMATCH, INTERNAL_ERROR)

# Kinds of value as messages name them (the SQL compiler maps its type tags to the same words).
KIND_NAMES = ("number", "string", "boolean", "list", "object")


def error_message(field: str, test: str, code: str, kind: str) -> str:
    """The message of an evaluation error: the same text from both evaluators (no value is quoted).

    >>> error_message("args.amount", "gt", "not_a_number", "string")
    '`args.amount` gt: a string that is not a number'
    """
    if code == BAD_NUMBER:
        what = "NaN, an infinity or a number out of range"
    elif code == NOT_A_NUMBER:
        what = "a string that is not a number"
    else:
        what = f"cannot use a {kind}"
    return f"`{field}` {test}: {what}"


@dataclass(frozen=True, slots=True)
class RuleError:
    """Why one rule could not be evaluated: the first test of the rule (document order) that errored.

    `test` is the test's name (`gt`, `in`, ...) or `sum` for a window; `field` the field it read; `code`
    one of `CODES`.
    """

    rule: str
    field: str
    test: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "field": self.field, "test": self.test, "code": self.code,
                "message": self.message}

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decides for one call, and why.

    `rules` lists every matched rule id (shadow rules included) in policy order, `errors` every rule that
    could not be evaluated, `tier` the strictest tier among the escalating rules, `reasons` why.
    `error_details` holds one `RuleError` per errored rule, in the order of `errors`; `details` the same as
    text (`rule-id: what went wrong`), plus what went wrong outside the rules (a call the gate cannot read).
    """

    decision: str
    rules: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    tier: str | None = None
    reasons: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    error_details: tuple[RuleError, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "rules": list(self.rules), "errors": list(self.errors),
                "tier": self.tier, "reasons": list(self.reasons), "details": list(self.details),
                "error_details": [e.to_dict() for e in self.error_details]}
