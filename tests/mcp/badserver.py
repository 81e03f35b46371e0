"""A misbehaving MCP server over stdio, written by hand on purpose: before every answer it writes a line that
is not JSON, and a JSON object that is not JSON-RPC. A gateway must skip both and keep relaying.

With `--hang-up`, a `tools/call` is answered with a forged id and junk, then half an answer, then the server
closes its stdout and stays alive (a server whose pipe broke, not one that exited).

    python tests/mcp/badserver.py [--hang-up]
"""

from __future__ import annotations

import json
import os
import sys
import time

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
        elif method == "tools/call" and "--hang-up" in sys.argv:
            send({"jsonrpc": "2.0", "id": 987654, "result": {"content": [], "isError": False}})  # nobody asked
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid})[:-1] + ', "result": {"content": [')
            sys.stdout.flush()
            os.close(sys.stdout.fileno())
            time.sleep(8)
            return
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": message["params"]["arguments"].get("text", "")}],
                      "isError": False}
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})
            continue
        send({"jsonrpc": "2.0", "id": mid, "result": result})


if __name__ == "__main__":
    main()
