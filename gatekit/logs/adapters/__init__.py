"""The formats ingest reads: one registry, the contract's own JSON Lines and Parquet among them.

| format | what | one action per |
|---|---|---|
| `jsonl` | the action contract, one object a line (with `mapping`: any JSON Lines) | line |
| `parquet` | the action contract, one row an action (with `mapping`: any columns) | row |
| `agentdojo` | AgentDojo run files (`<model>/<suite>/<user_task>/<attack>/<injection_task>.json`) | tool call |
| `otel` | OTLP JSON as the OpenTelemetry file exporters write it (JSON Lines of TracesData) | `execute_tool` span |
| `openai-agents` | OpenAI Agents SDK trace exports (JSON Lines of exported traces and spans) | function span |

A format (`Format`) has a name, the file names it takes in a directory, `detect` (from the file's name
and first JSON value) and a reader, and declares its options (`mapping` for the contract's formats,
`labels` for AgentDojo). Every format's lines or records go through the contract's checks
(`gatekit.logs.contract`), so they get its reasons, stable ids and quarantine. docs/formats.md says what
each reads; adding one is a module with a `FORMAT`, a `register` call below, a section there and a test.

>>> detect("runs/gpt-4o/banking/user_task_0/none/none.json")
'agentdojo'
"""

from __future__ import annotations

import pathlib

from gatekit.logs.adapters import agentdojo, jsonl, openai_agents, otel, parquet
from gatekit.logs.adapters.format import Format, Head, Reader

__all__ = ["FORMATS", "Format", "Head", "Reader", "detect", "register"]

FORMATS: dict[str, Format] = {}


def register(format: Format) -> None:
    """Add (or replace) a format; detection asks formats in registration order."""
    FORMATS[format.name] = format


# The contract first: a record with a string `tool` is an action, whatever else it holds.
for _module in (jsonl, parquet, agentdojo, otel, openai_agents):
    register(_module.FORMAT)


def detect(path: pathlib.Path | str) -> str | None:
    """The name of the first format that recognises a file, or None when none does.

    `parquet` by the name (`.parquet`, `.pq`); the others by the first JSON value (its first line, or the
    whole file when that is one document): `jsonl` an object with a string `tool`; `agentdojo`
    `suite_name`, `user_task_id` and a `messages` list; `otel` `resourceSpans`; `openai-agents` `object`
    `trace` or `trace.span`, or a `data` list of those.
    """
    head = Head(pathlib.Path(path))
    return next((f.name for f in FORMATS.values() if f.detect(head)), None)
