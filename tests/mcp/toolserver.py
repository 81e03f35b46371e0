"""A small real MCP server (the SDK's `MCPServer`) for the gateway's tests and benchmark.

    python tests/mcp/toolserver.py                 # stdio
    python tests/mcp/toolserver.py --http          # Streamable HTTP on a free loopback port: first stdout line, its URL

Every tool that runs appends a line `TOOL JSON-ARGS` to the file named by `$TOOLSERVER_MARKER` (when set), so a
test can tell whether a call reached the server at all.
"""

from __future__ import annotations

import asyncio
import json
import warnings
import os
import socket
import sys
from typing import Any

from mcp import types
from mcp.server.mcpserver import Context, MCPServer

warnings.simplefilter("ignore")  # logging is deprecated in the 2026-07-28 protocol: used here on purpose
server = MCPServer("toolserver", version="1.0", instructions="tools for the gatekit gateway tests")


def _ran(tool: str, **args: Any) -> None:
    marker = os.environ.get("TOOLSERVER_MARKER")
    if marker:
        with open(marker, "a", encoding="utf-8") as f:
            f.write(f"{tool} {json.dumps(args, sort_keys=True)}\n")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    _ran("echo", text=text)
    return text


@server.tool()
def pay(amount: float, recipient: str) -> str:
    """Send a payment."""
    _ran("pay", amount=amount, recipient=recipient)
    return f"paid {amount:.2f} to {recipient}"


@server.tool()
def delete_rows(table: str) -> str:
    """Delete every row of a table."""
    _ran("delete_rows", table=table)
    return f"deleted every row of {table}"


@server.tool()
def crash() -> str:
    """Exit the server process at once, mid-call."""
    _ran("crash")
    os._exit(3)


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep, reporting progress."""
    _ran("slow", seconds=seconds)
    await ctx.report_progress(0, 1, "sleeping")
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def size(data: str) -> int:
    """The length of the data."""
    _ran("size")
    return len(data)


@server.tool()
async def announce(message: str, ctx: Context) -> str:
    """Log a message to the client and say the tool list changed (handshake-era notifications)."""
    _ran("announce", message=message)
    await ctx.info(message)
    await ctx.session.send_tool_list_changed()
    return "announced"


@server.tool()
async def ask(question: str, ctx: Context) -> str:
    """Ask the client's model (sampling/createMessage), through whatever sits between."""
    _ran("ask", question=question)
    result = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=question))],
        max_tokens=50, related_request_id=ctx.request_id)
    return f"the model said: {result.content.text}"


@server.tool()
async def confirm(question: str, ctx: Context) -> str:
    """Ask the user (elicitation/create) for a yes or no."""
    _ran("confirm", question=question)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    result = await ctx.session.elicit(question, schema, related_request_id=ctx.request_id)
    return f"{result.action}: {json.dumps(result.content, sort_keys=True)}"


@server.tool()
async def roots(ctx: Context) -> list[str]:
    """The client's roots (roots/list)."""
    _ran("roots")
    listed = await ctx.session.list_roots()
    return [str(r.uri) for r in listed.roots]


SUBSCRIBED: set[str] = set()


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.add(str(params.uri))
    return types.EmptyResult()


async def _unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.discard(str(params.uri))
    return types.EmptyResult()


# MCPServer serves `subscriptions/listen` (2026-07-28); the handshake era's resources/subscribe is added here
server._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)
server._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)


@server.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Change a resource: its subscribers get notifications/resources/updated, everyone resources/list_changed."""
    _ran("touch", uri=uri)
    subscribed = uri in SUBSCRIBED
    if subscribed:
        await ctx.session.send_resource_updated(uri)
    await ctx.session.send_resource_list_changed()
    return "updated" if subscribed else "not subscribed"


@server.resource("notes://readme", mime_type="text/plain")
def readme() -> str:
    """A note."""
    return "the toolserver readme"


@server.resource("notes://{name}")
def note(name: str) -> str:
    """A named note."""
    return f"note {name}"


@server.prompt()
def review(code: str) -> str:
    """Ask for a code review."""
    return f"Please review this code:\n{code}"


def main() -> None:
    if "--http" in sys.argv:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        app = server.streamable_http_app(host="127.0.0.1")
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        print(f"http://127.0.0.1:{port}/mcp", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    else:
        server.run()


if __name__ == "__main__":
    main()
