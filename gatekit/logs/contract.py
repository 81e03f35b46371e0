"""Checking the action contract: a parsed record becomes a store row, or is rejected with a reason.

Every format ends here, so a bad record gets the same reason whatever file it came from: a Parquet row is
checked as the JSON object its line would hold, and an adapter's record as a line the stdlib parsed (NaN,
depth and lone surrogates checked). Records without an `action_id` get a stable one (`content_id`), so
re-ingesting a file finds the same ids and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from gatekit.action import FIELDS, MAX_EPOCH, canonical_json, parse_ts

__all__ = [
    "MAX_DEPTH", "TOO_DEEP", "Lines", "Parse", "Record", "Rejected", "Transform", "as_object", "check_lines",
    "check_record", "content_id", "kind", "loads_slow", "too_deep",
]

MAX_DEPTH = 64
TOO_DEEP = f"nesting too deep (more than {MAX_DEPTH} levels)"
_MAX_EPOCH = MAX_EPOCH  # epoch timestamps must fall in years 1970..9999, as gatekit.action.read_ts reads them
_KNOWN = frozenset(FIELDS)
_STRING_FIELDS = ("action_id", "agent", "session", "user", "evidence_hash", "executed_hash", "outcome")
_STRING_TYPES = frozenset((str, type(None)))
_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
# JSON text for the store. orjson is ~10x faster but writes NaN as null, so values the stdlib had to parse
# (the only ones that can hold NaN or Infinity) are written by the stdlib, with an encoder built once
# (json.dumps with options builds one per call). Both write compact text and keep UTF-8 as is.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode
_dumps = orjson.dumps

Row = tuple[Any, ...]  # an `actions` row in ACTION_BATCH order, without `ingested_at`
Bad = tuple[Any, ...]  # a `quarantine` row: (source, line, raw text, raw bytes, reason)


class Rejected(Exception):
    """A record that cannot become an action, and why: it is quarantined with `reason`.

    A format yields one (or a `transform` raises one) for what it cannot read; `undecodable` when the
    input is not even UTF-8 (the quarantine then keeps its bytes).
    """

    def __init__(self, reason: str, undecodable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.undecodable = undecodable


# (line number, the record or why there is none, the raw text or bytes it came from): what adapters yield.
Record = tuple[int, "dict[str, Any] | Rejected", "str | bytes"]
# A record of another shape as the contract's, or None for one to skip (a mapping's `where` left it out).
Transform = Callable[[dict[str, Any]], "dict[str, Any] | None"]
# A line of another shape (a Parquet row's JSON) parsed into a checked object, and whether it needs the
# stdlib's care (see `loads_slow`).
Parse = Callable[[bytes], "tuple[dict[str, Any], bool]"]


@dataclass(frozen=True, slots=True)
class Lines:
    """A batch of raw lines for the contract's checks, numbered from `first`; `done` bytes of the file are
    read. `parse` reads a line of another shape (default: a JSON Lines line, on the fast path); `transform`
    maps each parsed object to the contract (a mapping file), or to None: a line to skip."""

    first: int
    lines: list[bytes]
    done: int
    parse: Parse | None = None
    transform: Transform | None = None


def check_lines(batch: Lines, source: str, now: datetime, seen: dict[str, int],
                rows: list[Row], bad: list[Bad]) -> tuple[int, int]:
    """Check each non-empty line of `batch`, appending its row to `rows` or its rejection to `bad`;
    returns how many lines were read and how many of them the transform skipped. `seen` counts content
    hashes in the file (see `content_id`)."""
    parse, transform = batch.parse, batch.transform
    loads, JSONDecodeError, read, skipped = orjson.loads, orjson.JSONDecodeError, 0, 0
    for number, line in enumerate(batch.lines, batch.first):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.isspace():
            continue
        read += 1
        try:
            if parse is not None:
                record, slow = parse(line)
            else:
                try:
                    record, slow = loads(line), False
                except JSONDecodeError:
                    record, slow = loads_slow(line)
                # Inline the common case: an object with too few brackets to be nested too deep.
                if slow or type(record) is not dict or line.count(b"[") + line.count(b"{") > MAX_DEPTH:
                    record = as_object(record, slow)
            if transform is not None:
                mapped = transform(record)
                if mapped is None:
                    skipped += 1
                    continue
                record = as_object(mapped, slow)
            rows.append(_to_row(record, slow, now, seen, source, number))
        except Rejected as e:
            raw, raw_bytes = (None, line) if e.undecodable else (line.decode("utf-8"), None)
            bad.append((source, number, raw, raw_bytes, e.reason))
    return read, skipped


def check_record(item: Record, source: str, now: datetime, seen: dict[str, int],
                 rows: list[Row], bad: list[Bad]) -> None:
    """`check_lines` for one record a format made: checked as a line the stdlib parsed would be."""
    number, record, raw = item
    try:
        if isinstance(record, Rejected):
            raise record
        rows.append(_to_row(as_object(record, True), True, now, seen, source, number))
    except Rejected as e:
        text, data = _raw(raw)
        bad.append((source, number, text, data, e.reason))


def _raw(raw: str | bytes) -> tuple[str | None, bytes | None]:
    """Raw input as the quarantine keeps it: text when it is valid UTF-8, else the bytes."""
    if isinstance(raw, str):
        if not _has_lone_surrogate(raw):
            return raw, None
        raw = raw.encode("utf-8", "surrogatepass")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, raw


def loads_slow(data: bytes) -> tuple[Any, bool]:
    """Parse what orjson refused: not UTF-8, not JSON, or JSON only the stdlib reads (NaN, Infinity,
    lone surrogates, numbers beyond a double). The flag says the value needs the surrogate check."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(f"invalid utf-8 at byte offset {e.start}", undecodable=True) from None
    try:
        return json.loads(text), True
    except RecursionError:
        raise Rejected(TOO_DEEP) from None
    except json.JSONDecodeError as e:
        raise Rejected(f"invalid json: {e.msg[:1].lower()}{e.msg[1:]} at column {e.colno}") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise Rejected(f"invalid json: {e}") from None


def as_object(value: Any, slow: bool) -> dict[str, Any]:
    """`value` when it can be an action (an object, not too deep, no lone surrogate), else `Rejected`."""
    if too_deep(value):
        raise Rejected(TOO_DEEP)
    if type(value) is not dict:
        raise Rejected(f"not a json object (got {kind(value)})")
    if slow and _has_lone_surrogate(value):  # orjson refuses lone surrogates: only the stdlib lets them by
        raise Rejected("lone surrogate in string")  # and DuckDB cannot store them
    return value


def _to_row(record: dict[str, Any], slow: bool, now: datetime, seen: dict[str, int], source: str,
            number: int) -> Row:
    get = record.get
    tool = get("tool")
    if type(tool) is not str:
        raise Rejected("missing `tool`" if tool is None else f"`tool` is not a string (got {kind(tool)})")
    if not tool.strip():
        raise Rejected("`tool` is empty")
    ts = get("ts")
    if ts is None:
        ts = now
    elif type(ts) is str:
        try:
            ts = parse_ts(ts)
        except (ValueError, OverflowError):
            raise Rejected(f"bad timestamp {_show(ts)}") from None
    elif type(ts) is int or type(ts) is float:
        if not 0 <= ts < _MAX_EPOCH:  # also false for NaN
            raise Rejected(f"bad timestamp {_show(ts)}: epoch seconds must fall in years 1970..9999")
        ts = datetime.fromtimestamp(ts, timezone.utc)
    else:
        raise Rejected(f"bad timestamp (got {kind(ts)})")
    args = _object(get("args"), "args", slow)
    context = _object(get("context"), "context", slow)
    strings = tuple(map(get, _STRING_FIELDS))
    if not _STRING_TYPES.issuperset(map(type, strings)):  # one C-level pass on the happy path
        name, value = next((n, v) for n, v in zip(_STRING_FIELDS, strings) if type(v) not in _STRING_TYPES)
        raise Rejected(f"`{name}` is not a string or null (got {kind(value)})")
    action_id, agent, session, user, evidence_hash, executed_hash, outcome = strings
    label = get("label")
    if label is not None and label not in ("harmful", "benign"):
        raise Rejected(f"`label` must be `harmful`, `benign` or null, not {_show(label)}")
    approvals = get("approvals")
    if approvals is not None:
        if type(approvals) is not list:
            raise Rejected(f"`approvals` is not a list of objects (got {kind(approvals)})")
        for i, approval in enumerate(approvals):
            if type(approval) is not dict:
                raise Rejected(f"`approvals` is not a list of objects (got {kind(approval)} at index {i})")
        approvals = _encode(approvals) if slow else _dumps(approvals).decode()
    extra = None
    if not _KNOWN.issuperset(record):  # unknown keys are kept, not refused: nothing is lost
        extra = {k: v for k, v in record.items() if k not in _KNOWN}
        extra = _encode(extra) if slow else _dumps(extra).decode()
    if not action_id:
        action_id = content_id(record, slow, seen)
    return (action_id, ts, agent, session, user, tool, args, context,
            evidence_hash, executed_hash, outcome, approvals, label, extra, source, number)


def content_id(record: dict[str, Any], slow: bool, seen: dict[str, int]) -> str:
    """`a-` and 24 hex digits of the sha256 of the record's canonical JSON, without `action_id` and nulls
    (so `"agent": null`, a missing agent and a null Parquet cell hash alike); `#n` on the n-th repeat of
    the same content in one file, so identical calls stay distinct and re-ingesting finds the same ids.

    >>> content_id({"tool": "t"}, False, {})
    'a-4bb3e267ff5ab04f41f5a9e5'
    """
    content = record
    if "action_id" in record or None in record.values():
        content = {k: v for k, v in record.items() if v is not None and k != "action_id"}
    text = None if slow else _dumps(content, option=orjson.OPT_SORT_KEYS)
    # orjson's sorted output is byte for byte canonical_json's (a property test checks), except that it
    # writes floats below 1e-4 without Python's exponent form (1e-5, not 1e-05): such text has one of these.
    if text is None or b"e-" in text or b"0.0000" in text:
        text = canonical_json(content).encode("utf-8")
    digest = hashlib.sha256(text).hexdigest()[:24]
    n = seen[digest] = seen.get(digest, 0) + 1
    return f"a-{digest}" if n == 1 else f"a-{digest}#{n}"


def _object(value: Any, name: str, slow: bool) -> str:
    if value is None:
        return "{}"
    if type(value) is not dict:
        raise Rejected(f"`{name}` is not an object (got {kind(value)})")
    # Decoded at once: orjson's bytes are over-allocated, and keeping 50k of them alive costs ~1 us each.
    return _encode(value) if slow else _dumps(value).decode()


def too_deep(value: Any) -> bool:
    """Depth over MAX_DEPTH, found without recursion (a 5,000-deep line must not blow the stack)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if type(node) is dict else node if type(node) is list else ():
            if type(child) is dict or type(child) is list:
                if depth == MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            stack += node.keys()
            stack += node.values()
        elif type(node) is list:
            stack += node
        elif type(node) is str and not node.isascii():
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def kind(value: Any) -> str:
    """A JSON value's kind as a reason names it: `object`, `array`, `string`, `number`, `boolean`, `null`."""
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else _encode(value)
    return f"`{text[:60]}…`" if len(text) > 60 else f"`{text}`"
