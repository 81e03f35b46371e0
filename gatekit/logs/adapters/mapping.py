"""Any JSON Lines (or Parquet) as actions, through a small mapping file that says where each field is.

```yaml
# events.mapping.yaml: which field of each line holds each action field
tool: event.name             # required
args: event.arguments        # an object, or JSON text of one
ts: time                     # ISO 8601 text, or an epoch number in `ts_unit`
ts_unit: ms                  # s (default), ms, us or ns
agent: agent.name
session: [trace, "id.v2"]    # a list of keys, for keys that hold dots
user: user_id                # a number is written as text
context:                     # names to paths (or one path to an object)
  env: deploy.env
  team: {value: payments}    # a constant
where:                       # only lines that match become actions; the others are skipped, not quarantined
  kind: tool_call            # the value at this path is this
  phase: [start, retry]      # or one of these
```

Every action field can be mapped (`action_id ts agent session user tool args context evidence_hash
executed_hash outcome approvals label`), each to a path (dotted; a whole-number segment also indexes a
list), a list of keys, or `{value: ...}`. A path that leads nowhere leaves the field out; the record then
goes through ingest's checks like any line (no `tool`: quarantined, with the path it was looked for at).
Fields not mapped are not kept. docs/actions.md has the whole format and worked mappings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from gatekit.action import FIELDS, format_ts
from gatekit.errors import LogFormatError
from gatekit.logs.contract import Rejected

__all__ = ["FieldMapping", "load_mapping", "parse_mapping"]

UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_IDENTITY = ("action_id", "agent", "session", "user")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MISSING = object()

Getter = Callable[[Any], Any]


@dataclass(frozen=True)
class _Spec:
    label: str  # how the problem names it: `event.name`, or the constant
    get: Getter


@dataclass(frozen=True)
class FieldMapping:
    """Where each action field is in a record of another shape; calling it maps one record.

    >>> m = parse_mapping("tool: event.name\\nargs: event.arguments\\nwhere: {kind: call}\\n")
    >>> m({"kind": "call", "event": {"name": "payment.send", "arguments": '{"amount": 250}'}})
    {'tool': 'payment.send', 'args': {'amount': 250}}
    >>> m({"kind": "result", "event": {"name": "payment.send"}}) is None  # skipped
    True
    """

    fields: dict[str, _Spec]
    context: dict[str, _Spec] | _Spec | None = None
    ts_unit: str = "s"
    where: tuple[tuple[_Spec, tuple[Any, ...]], ...] = ()

    def __call__(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The action of `record`, None when `where` leaves it out, `Rejected` when it cannot be one."""
        for spec, allowed in self.where:
            value = spec.get(record)
            if value is _MISSING or not any(_same(value, a) for a in allowed):
                return None
        out: dict[str, Any] = {}
        for name, spec in self.fields.items():
            value = spec.get(record)
            if value is _MISSING or value is None:
                if name == "tool":
                    raise Rejected(f"missing `tool` (mapped from `{spec.label}`)")
                continue
            out[name] = self._convert(name, value, spec)
        if isinstance(self.context, _Spec):
            value = self.context.get(record)
            if value is not _MISSING and value is not None:
                out["context"] = self._convert("context", value, self.context)
        elif self.context:
            context = {k: spec.get(record) for k, spec in self.context.items()}
            out["context"] = {k: v for k, v in context.items() if v is not _MISSING}
        return out

    def _convert(self, name: str, value: Any, spec: _Spec) -> Any:
        if name in ("args", "context", "approvals") and isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise Rejected(f"`{name}` (mapped from `{spec.label}`) is text that is not JSON") from None
        if name in _IDENTITY and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if name == "ts" and isinstance(value, (int, float)) and not isinstance(value, bool) and self.ts_unit != "s":
            if isinstance(value, int):
                per = UNITS[self.ts_unit]
                return format_ts(_EPOCH + timedelta(seconds=value // per, microseconds=(value % per) * 1_000_000 // per))
            return value / UNITS[self.ts_unit]
        return value


def load_mapping(path: Path | str) -> FieldMapping:
    """Read a mapping file (YAML or JSON). Raises `LogFormatError` listing every problem at `file:line`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LogFormatError(f"cannot read mapping `{path}`: {e}") from e
    return parse_mapping(text, str(path))


def parse_mapping(text: str, source: str = "<mapping>") -> FieldMapping:
    """A mapping from YAML text; `source` names it in problems."""
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as e:
        raise LogFormatError(f"{source}: invalid yaml: {e}") from e
    problems: list[str] = []

    def problem(key: Any, msg: str) -> None:
        line = data.lc.key(key)[0] + 1 if isinstance(data, CommentedMap) and key in data else 1
        problems.append(f"{source}:{line}: {msg}")

    if not isinstance(data, dict):
        raise LogFormatError(f"{source}:1: a mapping is an object of action fields to paths")
    fields: dict[str, _Spec] = {}
    context: dict[str, _Spec] | _Spec | None = None
    unit = "s"
    where: list[tuple[_Spec, tuple[Any, ...]]] = []
    for key, value in data.items():
        if key == "where":
            if not isinstance(value, dict) or not value:
                problem(key, "`where` is an object of paths to a value or a list of values")
                continue
            for path, allowed in value.items():
                spec = _spec(str(path))
                values = tuple(_plain(allowed)) if isinstance(allowed, list) else (_plain(allowed),)
                if isinstance(spec, str) or not values or any(isinstance(v, (dict, list)) for v in values):
                    problem(key, f"`where.{path}`: expected a value (text, number, true, false or null) "
                                 "or a list of values")
                else:
                    where.append((spec, values))
        elif key == "ts_unit":
            if value not in UNITS:
                problem(key, f"`ts_unit` must be one of {', '.join(UNITS)}, not `{value}`")
            else:
                unit = value
        elif key == "context" and isinstance(value, dict) and "value" not in value:
            context = {}
            for name, spec in value.items():
                parsed = _spec(spec)
                if isinstance(parsed, str):
                    problem(key, f"`context.{name}`: {parsed}")
                else:
                    context[str(name)] = parsed
        elif key in FIELDS:
            parsed = _spec(value)
            if isinstance(parsed, str):
                problem(key, f"`{key}`: {parsed}")
            elif key == "context":
                context = parsed
            else:
                fields[key] = parsed
        else:
            problem(key, f"unknown field `{key}`, expected one of {', '.join((*FIELDS, 'ts_unit', 'where'))}")
    if "tool" not in fields and not problems:
        problems.append(f"{source}:1: `tool` must be mapped")
    if problems:
        raise LogFormatError("invalid mapping:\n" + "\n".join(problems))
    return FieldMapping(fields, context, unit, tuple(where))


def _spec(value: Any) -> _Spec | str:
    """A field's spec, or what is wrong with it."""
    if isinstance(value, dict):
        if set(value) != {"value"}:
            return "expected a path, a list of keys or `{value: ...}`"
        constant = _plain(value["value"])
        return _Spec(repr(constant), lambda record: constant)
    if isinstance(value, str):
        if not value:
            return "empty path"
        keys: list[str] = value.split(".")
    elif isinstance(value, list) and value and all(isinstance(k, (str, int)) for k in value):
        keys = [str(k) for k in value]
    else:
        return "expected a path, a list of keys or `{value: ...}`"
    label = ".".join(keys) if isinstance(value, str) else str(list(keys))
    return _Spec(label, lambda record: _follow(record, keys))


def _follow(value: Any, keys: list[str]) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and key.isdigit() and (key == "0" or not key.startswith("0")):
            index = int(key)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _same(value: Any, wanted: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return type(value) in (int, float, str, type(None)) and value == wanted


def _plain(value: Any) -> Any:
    """ruamel's round-trip types as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
