"""The MCP gateway (`gatekit mcp proxy`): the policy between an MCP client and any MCP server.

Built on the official `mcp` SDK (the `mcp` extra): a low-level `Server` faces the client, a `Client` holds
the connection to the real server, and `tools/call` goes through a `Gate` in between. Importing this package
imports nothing of the SDK; `gatekit.mcp.gateway` does.
"""

# No library API: the gateway is a command (`gatekit mcp proxy`), reached through gatekit.mcp.commands; the
# other modules are internal (tests/test_surface.py holds every import from outside to that).
__all__: list[str] = []
