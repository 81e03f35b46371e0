"""OpenAI Agents SDK traces: the items its tracing exports, as JSON Lines.

Each line is one exported item (`Trace.export()`: `{"object": "trace", "id", "workflow_name", "group_id",
"metadata"}`; `Span.export()`: `{"object": "trace.span", "id", "trace_id", "parent_id", "started_at",
"ended_at", "span_data", "error"}`), or a batch as the SDK's backend exporter posts it (`{"data": [...]}`);
a file that is one such JSON document is read too. A processor that writes `item.export()` per line, or the
batches, makes such a file.

Each function span (`span_data.type == "function"`) becomes an action, ordered by start time:

| action | from |
|---|---|
| `tool` | `span_data.name` |
| `args` | `span_data.input`, JSON text of an object (none: `{}`) |
| `agent` | the name of the nearest enclosing agent span |
| `session` | the trace's `group_id` (the conversation), else the trace id |
| `ts` | `started_at` (else `ended_at`) |
| `outcome` | `failed` when the span has an `error`, else `executed` |
| `context` | `trace_id`, `span_id`, `workflow` (the trace's name), `mcp_server` (MCP tools), trace `metadata` |
| `action_id` | the span id |

Spans are exported as they end (a function span before the agent span around it), so a whole file is read
before its actions are made. A function span this cannot read is quarantined with its reason and JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekit.action import format_ts, parse_ts
from gatekit.logs.adapters._files import JSON_SUFFIXES, json_items
from gatekit.logs.adapters.format import Format
from gatekit.logs.contract import Record, Rejected

__all__ = ["FORMAT", "Reader", "claims"]

_OBJECTS = ("trace", "trace.span")


def claims(value: Any) -> bool:
    """An exported trace or span (`object` `trace` / `trace.span`), or a `data` batch of them."""
    if not isinstance(value, dict):
        return False
    if value.get("object") in _OBJECTS:
        return True
    data = value.get("data")
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and data[0].get("object") in _OBJECTS


@dataclass
class _Item:
    line: int
    order: int
    value: dict[str, Any]


class Reader:
    """Reads Agents SDK trace exports. `Reader()(path)` yields the file's records.

    >>> records = list(Reader()(Path("agents-trace.jsonl")))
    """

    def __call__(self, path: Path) -> Iterator[Record]:
        traces: dict[str, dict[str, Any]] = {}
        spans: dict[str, dict[str, Any]] = {}
        functions: list[_Item] = []
        order = 0
        for line, value, raw in json_items(path):
            if isinstance(value, Rejected):
                yield line, value, raw
                continue
            if isinstance(value, dict) and value.get("object") in _OBJECTS:
                items = [value]
            elif isinstance(value, dict) and isinstance(value.get("data"), list):
                items = value["data"]
            elif isinstance(value, list):
                items = value
            else:
                yield line, Rejected("not an Agents SDK trace export: expected `object` `trace` or `trace.span`, "
                                     "or a `data` list of them"), raw
                continue
            for item in items:
                order += 1
                if not isinstance(item, dict):
                    continue
                if item.get("object") == "trace" and isinstance(item.get("id"), str):
                    traces[item["id"]] = item
                elif item.get("object") == "trace.span":
                    if isinstance(item.get("id"), str):
                        spans[item["id"]] = item
                    if _data(item).get("type") == "function":
                        functions.append(_Item(line, order, item))
        functions.sort(key=lambda f: (_started(f.value) or "", f.order))
        for f in functions:
            yield f.line, _record(f.value, traces, spans), json.dumps(f.value, ensure_ascii=False, default=str)


def _data(span: dict[str, Any]) -> dict[str, Any]:
    data = span.get("span_data")
    return data if isinstance(data, dict) else {}


def _started(span: dict[str, Any]) -> str | None:
    """The span's start as UTC ISO text (sortable), else its end; None when neither parses."""
    for key in ("started_at", "ended_at"):
        value = span.get(key)
        if isinstance(value, str):
            try:
                return format_ts(parse_ts(value))
            except (ValueError, OverflowError):
                continue
    return None


def _agent(span: dict[str, Any], spans: dict[str, dict[str, Any]]) -> str | None:
    node, seen = spans.get(span.get("parent_id") or ""), 0
    while node is not None and seen < 1000:
        data = _data(node)
        if data.get("type") == "agent" and isinstance(data.get("name"), str):
            return data["name"]
        node, seen = spans.get(node.get("parent_id") or ""), seen + 1
    return None


def _record(span: dict[str, Any], traces: dict[str, dict[str, Any]],
            spans: dict[str, dict[str, Any]]) -> dict[str, Any] | Rejected:
    data = _data(span)
    tool = data.get("name")
    if not isinstance(tool, str) or not tool:
        return Rejected("function span without a `name`")
    span_id, trace_id = span.get("id"), span.get("trace_id")
    if not isinstance(span_id, str) or not span_id:
        return Rejected(f"function span `{tool}` without an `id`")
    text = data.get("input")
    if text is None or text == "":
        args: Any = {}
    elif isinstance(text, str):
        try:
            args = json.loads(text)
        except ValueError as e:
            return Rejected(f"`input` of `{tool}` is not JSON: {e}")
    else:
        args = text
    if not isinstance(args, dict):
        return Rejected(f"`input` of `{tool}` is not a JSON object")
    started = _started(span)
    if started is None and (span.get("started_at") is not None or span.get("ended_at") is not None):
        return Rejected(f"bad `started_at` {json.dumps(span.get('started_at'))[:60]}")
    trace = traces.get(trace_id) if isinstance(trace_id, str) else None
    trace = trace or {}
    mcp = data.get("mcp_data")
    context = {
        "trace_id": trace_id, "span_id": span_id, "workflow": trace.get("workflow_name"),
        "mcp_server": mcp.get("server") if isinstance(mcp, dict) else None,
        "metadata": trace.get("metadata") if isinstance(trace.get("metadata"), dict) else None,
    }
    group = trace.get("group_id")
    record: dict[str, Any] = {
        "action_id": span_id, "tool": tool, "args": args, "agent": _agent(span, spans),
        "session": group if isinstance(group, str) and group else trace_id if isinstance(trace_id, str) else None,
        "outcome": "failed" if span.get("error") else "executed",
        "context": {k: v for k, v in context.items() if v is not None},
    }
    if started is not None:
        record["ts"] = started
    return record


FORMAT = Format("openai-agents", "OpenAI Agents SDK trace exports (JSON Lines of exported traces and spans)",
                "function span", JSON_SUFFIXES, lambda head: claims(head.value), Reader)
