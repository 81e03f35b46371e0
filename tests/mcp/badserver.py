"""A misbehaving MCP server over stdio, written by hand on purpose: before every answer it writes a line that
is not JSON, and a JSON object that is not JSON-RPC. A gateway must skip both and keep relaying.

    python tests/mcp/badserver.py
"""

from __future__ import annotations

import json
import sys

TOOLS = [{"name": "echo", "description": "Return the text.",
          "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}]


def send(message: dict) -> None:
    sys.stdout.write("this line is not JSON {{{\n")
    sys.stdout.write(json.dumps({"hello": "not JSON-RPC"}) + "\n")
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        method, mid = message.get("method"), message.get("id")
        if mid is None:
            continue
        if method == "initialize":
            result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "badserver", "version": "0"}}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": message["params"]["arguments"].get("text", "")}],
                      "isError": False}
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})
            continue
        send({"jsonrpc": "2.0", "id": mid, "result": result})


if __name__ == "__main__":
    main()
