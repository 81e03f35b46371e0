"""The value semantics both evaluators share: kinds of values, numeric strings, globs, durations.

`decide` uses these functions directly; the SQL compiler emits the same rules as SQL. Keep the two in step:
tests/cases/ pins every cell of the semantics table.
"""

from __future__ import annotations

import math
import re
from typing import Any

import re2

__all__ = ["JSON_SPACE", "MAX_DURATION_US", "NUMERIC_STRING", "compile_re2", "glob_to_re2", "numeric_string",
           "parse_duration"]

# A string that is a JSON number, optionally with surrounding JSON white space, compares as that number.
# Defined once in semantics.py; public here too for SQL that reads stored values as numbers.
from gatekit.policy.semantics import JSON_SPACE, NUMERIC_STRING  # noqa: E402

_NUMERIC = re.compile(NUMERIC_STRING)

# Kinds of a looked-up value.
MISSING, NULL, BOOL, NUM, BADNUM, STR, LIST, OBJ = (
    "missing", "null", "bool", "num", "badnum", "str", "list", "obj",
)
_ABSENT = object()


def kind(value: Any) -> str:
    """The kind of a JSON value as the semantics table sees it (`_ABSENT` means missing)."""
    if value is _ABSENT:
        return MISSING
    if value is None:
        return NULL
    if value is True or value is False:
        return BOOL
    if isinstance(value, str):
        return STR
    if isinstance(value, (int, float)):
        return NUM if number(value) is not None else BADNUM
    if isinstance(value, (list, tuple)):
        return LIST
    if isinstance(value, dict):
        return OBJ
    return BADNUM  # anything else a caller smuggled in is unusable, never silently true


def number(value: int | float) -> float | None:
    """The value as a finite float, or None when it is NaN, infinite or out of float range."""
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def numeric_string(text: str) -> float | None | bool:
    """A JSON-number string as a float; None if it is not numeric; False if numeric but out of range."""
    if _NUMERIC.fullmatch(text) is None:
        return None
    out = float(text.strip(JSON_SPACE))
    return out if math.isfinite(out) else False


def glob_to_re2(pattern: str) -> str:
    """Translate a shell-style glob (`*`, `?`, `[...]`, `[!...]`) to an RE2 pattern for a full match.

    Written by hand (not `fnmatch.translate`) because Python's output uses constructs RE2 lacks; both
    evaluators then run this one regex, so they cannot disagree on a tool name.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("(?s:.*)")
        elif c == "?":
            out.append("(?s:.)")
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(_lit("["))
                continue
            body = pattern[i:j]
            i = j + 1
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            out.append("[" + ("^" if negate else "") + _class_body(body) + "]")
        else:
            out.append(_lit(c))
    return "".join(out)


def _lit(c: str) -> str:
    if c.isalnum() or c == "_" or ord(c) >= 128:
        return c
    return "\\x{%x}" % ord(c)


def _class_body(body: str) -> str:
    parts = []
    k = 0
    while k < len(body):
        c = body[k]
        if c == "-" and 0 < k < len(body) - 1:
            parts.append("-")
        else:
            parts.append("\\x{%x}" % ord(c) if ord(c) < 128 else c)
        k += 1
    return "".join(parts)


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported as a policy problem, not logged to stderr


def compile_re2(pattern: str) -> Any:
    """Compile with RE2's defaults, the options DuckDB's regexp functions use. Raises re2.error."""
    return re2.compile(pattern, _OPTIONS)


def re2_message(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else str(exc)
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


# The longest window: 36500 days (100 years). Timestamps span years 1..9999 (3.2e17 us), so a call's time
# minus a window stays far inside 64-bit microseconds on every engine.
MAX_DURATION_US = 36_500 * 86_400_000_000

_DURATION = re.compile(r"(\d+)(ms|us|s|m|h|d|w)")
_UNIT_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
            "d": 86_400_000_000, "w": 604_800_000_000}


def parse_duration(value: Any) -> int:
    """A duration (`30s`, `10m`, `1h30m`, `2d`, or a number of seconds) in microseconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"`{value}` is not a duration")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"duration must be positive, got `{value}`")
        return value * 1_000_000
    if not isinstance(value, str):
        raise ValueError(f"`{value}` is not a duration (use e.g. 30s, 10m, 4h, 1d)")
    text = value.strip()
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_US[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"`{value}` is not a duration (use e.g. 30s, 10m, 4h, 1d)")
    if total <= 0:
        raise ValueError(f"duration must be positive, got `{value}`")
    return total
