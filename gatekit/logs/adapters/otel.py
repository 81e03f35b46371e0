"""OpenTelemetry GenAI traces: OTLP JSON, as the OpenTelemetry file exporters write it.

A file is JSON Lines of `TracesData` (`{"resourceSpans": [{"resource", "scopeSpans": [{"scope", "spans"}]}]}`;
the Python `FileSpanExporter` and the Collector's `file` exporter write this). Field names may also be the
protobuf ones (`resource_spans`, `trace_id`, ...), trace and span ids hex (OTLP JSON) or base64 (protobuf's
JSON mapping), 64-bit integers numbers or strings.

Each span whose `gen_ai.operation.name` is `execute_tool` becomes an action, ordered by start time:

| action | from |
|---|---|
| `tool` | `gen_ai.tool.name` (else the span name after `execute_tool `) |
| `args` | `gen_ai.tool.call.arguments`, JSON text of an object (or a key/value list); none: `{}` |
| `agent` | `gen_ai.agent.name`, else `gen_ai.agent.id`, of the span or its nearest ancestor in the file |
| `session` | `gen_ai.conversation.id` (span or ancestor), else the trace id |
| `user` | `user.id` or `enduser.id` (span or ancestor) |
| `ts` | `startTimeUnixNano` |
| `outcome` | `failed` when the span's status is ERROR, else `executed` |
| `context` | `trace_id`, `span_id` (hex), `tool_call_id`, `tool_type`, `provider` (`gen_ai.provider.name` or `gen_ai.system`, span or ancestor), `service` (`service.name`) |
| `action_id` | `otel:<trace id>:<span id>` |

`source_line` is the line that held the span. A span this cannot read (bad ids, no tool name, arguments that
are not a JSON object) is quarantined with its reason and the span's JSON; a line that is not `TracesData`
with the line.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gatekit.action import format_ts
from gatekit.logs.adapters._files import JSON_SUFFIXES, json_items
from gatekit.logs.adapters.format import Format
from gatekit.logs.contract import Record, Rejected

__all__ = ["FORMAT", "Reader", "any_value", "attributes", "claims", "hex_id"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_HEX = re.compile(r"^[0-9a-fA-F]*$")


def claims(value: Any) -> bool:
    """OTLP JSON traces: an object with `resourceSpans` (or `resource_spans`)."""
    return isinstance(value, dict) and ("resourceSpans" in value or "resource_spans" in value)


def _get(obj: Any, camel: str, snake: str | None = None) -> Any:
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return obj.get(snake) if value is None and snake is not None else value


@functools.cache  # called per attribute per key: the names are few, the calls many
def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


def _field(obj: Any, camel: str) -> Any:
    return _get(obj, camel, _snake(camel))


def any_value(value: Any) -> Any:
    """An OTLP `AnyValue` as a plain JSON value."""
    if not isinstance(value, dict):
        return None
    for key, kind in (("stringValue", "s"), ("boolValue", "b"), ("intValue", "i"), ("doubleValue", "d"),
                      ("arrayValue", "a"), ("kvlistValue", "k"), ("bytesValue", "y")):
        v = _field(value, key)
        if v is None:
            continue
        if kind == "i":
            try:
                return int(v)
            except (TypeError, ValueError):
                return v
        if kind == "d":
            return float(v) if isinstance(v, str) else v
        if kind == "a":
            return [any_value(x) for x in (_get(v, "values") or [])]
        if kind == "k":
            return attributes(_get(v, "values"))
        return v
    return None


def attributes(items: Any) -> dict[str, Any]:
    """An OTLP key/value list as a dict."""
    out: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = any_value(item.get("value"))
    return out


def hex_id(value: Any, size: int) -> str | None:
    """A trace (`size` 16) or span (8) id, hex or base64, as lowercase hex; None when empty or absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    if len(value) == 2 * size and _HEX.match(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise ValueError(f"`{value[:40]}` is neither {2 * size} hex digits nor base64 of {size} bytes")
    return raw.hex()


@dataclass
class _Span:
    line: int
    order: int
    trace: str | None
    span: str | None
    parent: str | None
    raw: dict[str, Any]
    attrs: dict[str, Any]
    resource: dict[str, Any]
    error: str | None


class Reader:
    """Reads OTLP JSON trace files. `Reader()(path)` yields the file's records.

    >>> records = list(Reader()(Path("traces.jsonl")))
    """

    def __call__(self, path: Path) -> Iterator[Record]:
        spans: list[_Span] = []
        for line, value, raw in json_items(path):
            if isinstance(value, Rejected):
                yield line, value, raw
                continue
            if not claims(value):
                yield line, Rejected("not OTLP JSON traces: expected an object with `resourceSpans`"), raw
                continue
            spans += _spans(line, value, len(spans))
        inherited = {(s.trace, s.span): s for s in spans if s.span is not None and s.error is None}
        tools = [s for s in spans if s.attrs.get("gen_ai.operation.name") == "execute_tool"]
        tools.sort(key=lambda s: (_start_ns(s.raw) or 0, s.order))
        for s in tools:
            yield s.line, _record(s, inherited), _text(s.raw)


def _spans(line: int, data: dict[str, Any], order: int) -> Iterator[_Span]:
    for rs in _field(data, "resourceSpans") or ():
        resource = attributes(_get(_get(rs, "resource"), "attributes"))
        for ss in _field(rs, "scopeSpans") or _get(rs, "instrumentationLibrarySpans") or ():
            for raw in _get(ss, "spans") or ():
                if not isinstance(raw, dict):
                    continue
                order += 1
                attrs = attributes(_get(raw, "attributes"))
                try:
                    trace = hex_id(_field(raw, "traceId"), 16)
                    span = hex_id(_field(raw, "spanId"), 8)
                    parent = hex_id(_field(raw, "parentSpanId"), 8)
                    error = None if trace and span else "span without `traceId` or `spanId`"
                except ValueError as e:
                    trace = span = parent = None
                    error = f"bad span id: {e}"
                yield _Span(line, order, trace, span, parent, raw, attrs, resource, error)


def _start_ns(raw: dict[str, Any]) -> int | None:
    value = _field(raw, "startTimeUnixNano")
    try:
        ns = int(value)
    except (TypeError, ValueError):
        return None
    return ns if ns >= 0 else None


def _inherit(s: _Span, key: str, spans: dict[tuple[str | None, str | None], _Span]) -> Any:
    node: _Span | None = s
    seen = 0
    while node is not None and seen < 1000:
        value = node.attrs.get(key)
        if value is not None and value != "":
            return value
        node = spans.get((node.trace, node.parent)) if node.parent else None
        seen += 1
    return None


def _record(s: _Span, spans: dict[tuple[str | None, str | None], _Span]) -> dict[str, Any] | Rejected:
    if s.error is not None:
        return Rejected(s.error)
    attrs = s.attrs
    tool = attrs.get("gen_ai.tool.name")
    name = _get(s.raw, "name")
    if (tool is None or tool == "") and isinstance(name, str) and name.startswith("execute_tool "):
        tool = name.removeprefix("execute_tool ").strip()
    if not isinstance(tool, str) or not tool:
        return Rejected("execute_tool span without `gen_ai.tool.name`")
    args = attrs.get("gen_ai.tool.call.arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError as e:
            return Rejected(f"`gen_ai.tool.call.arguments` of `{tool}` is not JSON: {e}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return Rejected(f"`gen_ai.tool.call.arguments` of `{tool}` is not a JSON object")
    start = _start_ns(s.raw)
    if start is None:
        return Rejected(f"bad `startTimeUnixNano` {json.dumps(_field(s.raw, 'startTimeUnixNano'))[:60]}")
    ts = _EPOCH + timedelta(microseconds=start // 1000)
    agent = _inherit(s, "gen_ai.agent.name", spans) or _inherit(s, "gen_ai.agent.id", spans)
    session = _inherit(s, "gen_ai.conversation.id", spans) or s.trace
    user = _inherit(s, "user.id", spans) or _inherit(s, "enduser.id", spans)
    status = _get(s.raw, "status")
    code = _get(status, "code")
    context = {
        "trace_id": s.trace, "span_id": s.span, "tool_call_id": attrs.get("gen_ai.tool.call.id"),
        "tool_type": attrs.get("gen_ai.tool.type"),
        "provider": _inherit(s, "gen_ai.provider.name", spans) or _inherit(s, "gen_ai.system", spans),
        "service": s.resource.get("service.name"),
    }
    return {
        "action_id": f"otel:{s.trace}:{s.span}", "ts": format_ts(ts), "tool": tool, "args": args,
        "agent": _string(agent), "session": _string(session), "user": _string(user),
        "outcome": "failed" if code in (2, "2", "STATUS_CODE_ERROR") else "executed",
        "context": {k: v for k, v in context.items() if v is not None},
    }


def _string(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value)


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


FORMAT = Format("otel", "OTLP JSON as the OpenTelemetry file exporters write it (JSON Lines of TracesData)",
                "`execute_tool` span", JSON_SUFFIXES, lambda head: claims(head.value), Reader)
