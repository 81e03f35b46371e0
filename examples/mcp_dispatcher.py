"""An MCP-style tool server whose `tools/call` goes through a gatekit gate (asyncio, enforce mode).

    python examples/mcp_dispatcher.py            # a scripted session, printed as JSON-RPC
    python examples/mcp_dispatcher.py --stdio    # newline-delimited JSON-RPC on stdin/stdout (MCP's stdio)

MCP reports a tool that fails as a *result* with `isError: true`, so the model sees why: a gatekit
denial becomes exactly that, with the deciding rules in `_meta` (`code`: `policy` when the policy denies,
`denied` when a reviewer does). An escalation is filed with the approvals service and waits for a reviewer
without blocking the event loop (`Gate.arun`); other requests keep being served meanwhile. The example
starts its own service (`gatekit serve`) in a temporary directory and a stand-in reviewer that answers
with its own credential, and stops both when the session ends.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from _service import approvals_service, reviewing

from gatekit import Denied, Gate, load_policy

POLICY = """
version: 1
name: mcp-example
default: allow
rules:
  - {id: big-refund, tool: refund, action: escalate, when: {args.amount: {gt: 500}}, reason: Refunds over 500 need approval}
  - {id: no-drop, tool: sql, action: deny, when: {args.query: {matches: "(?i)\\\\bdrop\\\\s+table\\\\b"}}, reason: No DROP TABLE}
"""


@dataclass
class Tool:
    fn: Callable[..., Awaitable[Any] | Any]
    description: str
    schema: dict[str, Any]


class GatedDispatcher:
    """Answers JSON-RPC 2.0 messages: `initialize`, `tools/list`, `tools/call` (gated)."""

    def __init__(self, gate: Gate, tools: dict[str, Tool], session: str = "mcp-session") -> None:
        self.gate, self.tools, self.session = gate, tools, session

    async def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        mid, method, params = message.get("id"), message.get("method"), message.get("params") or {}
        if mid is None:
            return None  # a notification: no answer
        if method == "initialize":
            return _ok(mid, {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "gatekit-example", "version": "0.1"}})
        if method == "tools/list":
            return _ok(mid, {"tools": [{"name": n, "description": t.description, "inputSchema": t.schema}
                                       for n, t in self.tools.items()]})
        if method != "tools/call":
            return _error(mid, -32601, f"method not found: {method}")
        name, arguments = params.get("name"), params.get("arguments") or {}
        tool = self.tools.get(name)
        if tool is None or not isinstance(arguments, dict):
            return _error(mid, -32602, f"unknown tool or bad arguments: {name}")
        call = {"tool": name, "args": arguments, "session": self.session}
        try:
            result = await self.gate.arun(call, lambda action: tool.fn(**action.args))
        except Denied as exc:
            return _ok(mid, {"content": [{"type": "text", "text": f"gatekit: {exc}"}], "isError": True,
                             "_meta": {"gatekit": {"code": exc.code, "decision": exc.decision.decision,
                                                   "rules": list(exc.decision.rules)}}})
        return _ok(mid, {"content": [{"type": "text", "text": json.dumps(result)}], "isError": False})


def _ok(mid: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": mid, "result": result}


def _error(mid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": mid, "error": {"code": code, "message": message}}


async def refund(order: str, amount: float) -> dict[str, Any]:
    await asyncio.sleep(0)  # an async tool: a call to the payments API
    return {"refunded": amount, "order": order}


def sql(query: str) -> dict[str, Any]:
    return {"rows": 0, "query": query}


TOOLS = {
    "refund": Tool(refund, "Refund an order", {"type": "object", "properties": {
        "order": {"type": "string"}, "amount": {"type": "number"}}, "required": ["order", "amount"]}),
    "sql": Tool(sql, "Run a SQL statement", {"type": "object", "properties": {"query": {"type": "string"}},
                                             "required": ["query"]}),
}


@contextmanager
def dispatcher(workdir: Path, approve_up_to: float = 1000.0) -> Iterator[GatedDispatcher]:
    """A dispatcher gated through a fresh approvals service, whose reviewer approves refunds up to
    `approve_up_to` and denies larger ones."""
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    with approvals_service(workdir / "approvals-state", policy) as (url, add_principal):
        agent = add_principal("agent", "support-bot")
        lead = add_principal("reviewer", "u-sam", "support-lead")
        gate = Gate(load_policy(policy), mode="enforce", approvals=url, credential=agent, agent="support-bot",
                    user="u-carol", timeout=60)

        def answer(request: dict[str, Any]) -> tuple[str, str]:
            try:
                amount = float(request["action"]["args"]["amount"])
            except (KeyError, TypeError, ValueError):
                return "deny", "no readable amount"
            return ("approve", "within the refund limit") if amount <= approve_up_to else ("deny", "over the limit")

        with reviewing(url, lead, answer):
            yield GatedDispatcher(gate, TOOLS)


SESSION = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "refund", "arguments": {"order": "o-1", "amount": 80}}},
    {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "refund", "arguments": {"order": "o-2", "amount": 700}}},
    {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "refund", "arguments": {"order": "o-3", "amount": 5000}}},
    {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "sql", "arguments": {"query": "DROP TABLE users"}}},
]


async def scripted() -> list[dict[str, Any]]:
    # the service starts before the loop serves anything, so blocking while it starts delays no request
    with tempfile.TemporaryDirectory() as tmp, dispatcher(Path(tmp)) as d:
        answers = await asyncio.gather(*(d.handle(m) for m in SESSION))  # concurrently, as a server would
    return [a for a in answers if a is not None]


async def serve_stdio() -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp, dispatcher(Path(tmp)) as d:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip():
                answer = await d.handle(json.loads(line))
                if answer is not None:
                    sys.stdout.write(json.dumps(answer) + "\n")
                    sys.stdout.flush()


if __name__ == "__main__":
    if "--stdio" in sys.argv:
        asyncio.run(serve_stdio())
    else:
        for answer in asyncio.run(scripted()):
            print(json.dumps(answer))
