"""The condition tree of a rule's `when`: leaves (tests, windows) under all / any / not.

Both evaluators walk these node types through a dispatch table each; tests check the tables are complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from gatekit.policy.semantics import WEEKDAYS

__all__ = ["ORDER_OPS", "WEEKDAYS", "All", "Any_", "Cond", "Field", "Not", "Test", "Window", "leaves"]

TOP_FIELDS = ("tool", "agent", "session", "user")
TIME_FIELDS = ("time.hour", "time.weekday", "time.date")
PER_KEYS = ("agent", "session", "user", "tool")
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "matches",
       "startswith", "endswith", "exists")
ORDER_OPS = ("gt", "gte", "lt", "lte")
WINDOW_KINDS = ("rate", "sum")
WINDOW_OPS = ("gt", "gte")  # a window's threshold test
# The JSON type of each test's operand in a policy file (None: any type); the loader checks the rest
# (a number for an ordering test, except a date for `time.date`; weekdays; hours; a valid RE2 pattern).
OPERAND_TYPES: dict[str, list[str] | None] = {
    "eq": None, "ne": None, "contains": None,
    **{op: ["number", "string"] for op in ORDER_OPS},
    "in": ["array"], "not_in": ["array"],
    **{op: ["string"] for op in ("matches", "startswith", "endswith")},
    "exists": ["boolean"],
}
# Every field name `Field.parse` accepts, as one regular expression (the JSON Schema's key pattern).
FIELD_PATTERN = ("^(" + "|".join(re.escape(f) for f in TOP_FIELDS + TIME_FIELDS)
                 + r"|(args|context)(\.[^.]+)+)$")


@dataclass(frozen=True)
class Field:
    """Where a test looks: `root` is tool/agent/session/user/args/context/time, `path` the rest."""

    root: str
    path: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return ".".join((self.root, *self.path))

    @classmethod
    def parse(cls, text: str) -> Field:
        """Parse `args.amount`, `context.env`, `time.hour`, `agent`. Raises ValueError."""
        if text in TOP_FIELDS:
            return cls(text)
        if text in TIME_FIELDS:
            return cls("time", (text.split(".", 1)[1],))
        root, _, rest = text.partition(".")
        if root in ("args", "context") and rest:
            path = tuple(rest.split("."))
            if all(path):
                return cls(root, path)
        raise ValueError(
            f"unknown field `{text}` (use tool, agent, session, user, args.<path>, context.<path>, "
            "time.hour, time.weekday or time.date)"
        )


@dataclass(frozen=True)
class Test:
    __test__ = False  # a policy test, not a pytest one

    field: Field
    op: str
    operand: Any
    line: int = 0


@dataclass(frozen=True)
class Window:
    """`rate` (count) or `sum` over earlier calls of the rule's tools with the same `per` key."""

    kind: str  # "rate" | "sum"
    window_us: int
    op: str  # "gt" | "gte"
    threshold: float
    per: str | None = None
    field: Field | None = None  # for sum
    line: int = 0


@dataclass(frozen=True)
class All:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not:
    item: Cond


Cond = Union[Test, Window, All, Any_, Not]


def leaves(cond: Cond) -> list[Test | Window]:
    """Every leaf of a condition, in document order."""
    if isinstance(cond, (Test, Window)):
        return [cond]
    if isinstance(cond, Not):
        return leaves(cond.item)
    return [leaf for item in cond.items for leaf in leaves(item)]
