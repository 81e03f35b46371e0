"""`gatekit mcp proxy`: put the policy between an MCP client and any MCP server, without changing either.

    gatekit mcp proxy --policy policy.yaml --log calls.jsonl -- python server.py       # stdio both ways
    gatekit mcp proxy --policy policy.yaml --upstream http://127.0.0.1:8000/mcp         # an HTTP server
    gatekit mcp proxy --policy policy.yaml --listen 127.0.0.1:8471 -- python server.py  # serve HTTP

Thin, like the rest of the CLI: parse the options, build the gate and the gateway, run it. Errors are
`GatekitError`s, which `gatekit.cli.main` turns into a message and an exit code.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from gatekit.errors import GatekitError
from gatekit.options import broker_option, output_options, policy_option
from gatekit.server.commands import context_pairs

__all__ = ["mcp"]


@click.group()
def mcp() -> None:
    """The MCP gateway: enforce (or shadow) a policy on any MCP server's tools."""


@mcp.command(context_settings={"ignore_unknown_options": True})
@policy_option(help="the policy every tools/call is decided by")
@click.option("--approvals", metavar="URL", help="the approvals service (gatekit serve) escalations go to")
@click.option("--credential-env", default="GATEKIT_AGENT_TOKEN", show_default=True, metavar="VAR",
              help="environment variable holding the gateway's agent credential for --approvals "
                   "(kept from the upstream server's environment)")
@broker_option(help="a local approvals broker (SQLite) instead of the service: tests and single-user use only")
@click.option("--agent", help="the agent every call is for (with --approvals: the id its credential has); "
                              "default: the client's clientInfo.name")
@click.option("--user", help="the user every call is for")
@click.option("--context", "context", multiple=True, metavar="KEY=VALUE",
              help="context every call carries, e.g. env=prod (repeat); VALUE is JSON or text")
@click.option("--server-name", help="the upstream server's name in context.server (default: the name it gives)")
@click.option("--mode", type=click.Choice(["enforce", "shadow"]), default="enforce", show_default=True,
              help="shadow: forward every call and log what the policy would have decided")
@click.option("--hide-denied", is_flag=True, help="leave tools the policy always denies out of tools/list")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path),
              help="append one action record per tools/call (JSON Lines, for gatekit ingest and replay)")
@click.option("--timeout", type=float, metavar="SECONDS",
              help="how long an escalated call waits for approval (default: its tier's timeout)")
@click.option("--upstream", metavar="URL", help="an upstream server speaking Streamable HTTP, instead of COMMAND")
@click.option("--listen", metavar="HOST:PORT",
              help="serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio (its URL is printed first)")
@click.option("--allow-remote", is_flag=True, help="let --listen bind a non-loopback address")
@click.option("--json-response", is_flag=True,
              help="with --listen: answer each request with one JSON body, not an SSE stream (faster; a call "
                   "waiting for approval then sends no progress, and the upstream's requests to the client "
                   "during a call are refused)")
@click.option("--max-args-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True,
              help="refuse, undecided, a call whose arguments are larger than this as JSON")
@click.option("--restarts", type=click.IntRange(min=0), default=3, show_default=True,
              help="restart a crashed upstream server this many times, then stop")
@click.option("--progress-interval", type=click.FloatRange(min=0.01), default=5.0, show_default=True,
              metavar="SECONDS", help="how often a waiting call reports progress")
@output_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def proxy(policy_path: Path, approvals: str | None, credential_env: str, broker: Path | None, agent: str | None,
          user: str | None, context: tuple[str, ...], server_name: str | None, mode: str, hide_denied: bool,
          log_path: Path | None, timeout: float | None, upstream: str | None, listen: str | None,
          allow_remote: bool, json_response: bool, max_args_bytes: int, restarts: int, progress_interval: float, as_json: bool,
          quiet: bool, command: tuple[str, ...]) -> None:
    """Run an MCP gateway in front of the server started by COMMAND (after `--`) or at --upstream URL.

    Every tools/call is decided by the policy: allowed calls are forwarded, denied ones answered with a
    tool result with isError and the policy's reasons, escalated ones wait for approval. Tools, resources,
    prompts and notifications are relayed as they are. Over stdio, stdout is the MCP channel: --json only
    changes --listen's first line to `{"url": ...}`; --quiet leaves out the gateway's log on stderr but its
    warnings.
    """
    if importlib.util.find_spec("mcp") is None:
        raise GatekitError('the MCP gateway needs the mcp extra: pip install "gatekit[mcp]"')
    import anyio
    from mcp import StdioServerParameters
    from mcp.types import Implementation

    from gatekit.enforce.gate import Gate
    from gatekit.mcp.gateway import Gateway, Options, gatekit_version
    from gatekit.mcp.log import CallLog
    from gatekit.mcp.serve import serve_http, serve_stdio
    from gatekit.mcp.upstream import Upstream
    from gatekit.policy.load import load_policy

    if command and command[0] == "--":
        command = command[1:]
    if bool(command) == bool(upstream):
        raise click.UsageError("give the upstream server: a COMMAND after `--`, or --upstream URL (not both)")
    if approvals and broker:
        raise click.UsageError("pass --approvals (the service) or --broker (local), not both")
    gate_kwargs: dict[str, Any] = {}
    if approvals:
        credential = os.environ.get(credential_env)
        if not credential:
            raise click.UsageError(f"--approvals needs the gateway's agent credential in ${credential_env} "
                                   "(from `gatekit principals add agent ID`)")
        if not agent:
            raise click.UsageError("--approvals needs --agent: the id the credential was registered as")
        gate_kwargs.update(approvals=approvals, credential=credential)
    elif broker:
        gate_kwargs.update(broker=broker)
    if json_response and not listen:
        raise click.UsageError("--json-response is for --listen (HTTP): over stdio every message is a line")
    host = port = None
    if listen:
        host, sep, port_text = listen.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise click.BadParameter(f"`{listen}` is not HOST:PORT", param_hint="--listen")
        host, port = host.strip("[]"), int(port_text)
    try:
        gate = Gate(load_policy(policy_path), mode=mode, agent=agent, user=user, context=context_pairs(context),
                    timeout=timeout, **gate_kwargs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if command:
        env = {k: v for k, v in os.environ.items() if k != credential_env}  # the server never sees the credential
        target: Any = StdioServerParameters(command=command[0], args=list(command[1:]), env=env, cwd=os.getcwd())
    else:
        target = upstream
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gatekit mcp: %(message)s"))
    logging.getLogger("gatekit.mcp").addHandler(handler)
    logging.getLogger("gatekit.mcp").setLevel(logging.WARNING if quiet else logging.INFO)
    log = CallLog(log_path) if log_path else None
    gateway = Gateway(gate, Upstream(target, restarts=restarts,
                                     client_info=Implementation(name="gatekit-mcp-gateway",
                                                                version=gatekit_version())),
                      Options(server_name=server_name, hide_denied=hide_denied, max_args_bytes=max_args_bytes,
                              progress_interval=progress_interval), log)
    try:
        if listen:
            def echo(url: str) -> None:
                click.echo(json.dumps({"url": url}) if as_json else url)
                sys.stdout.flush()

            anyio.run(lambda: serve_http(gateway, host, port, echo=echo,  # type: ignore[arg-type]
                                         allow_remote=allow_remote, json_response=json_response),
                      backend_options=_loop_options())
        else:
            anyio.run(serve_stdio, gateway, backend_options=_loop_options())
    except KeyboardInterrupt:
        pass
    finally:
        if log is not None:
            log.close()


def _loop_options() -> dict[str, Any]:
    """uvloop's event loop when it is installed (the `mcp` extra brings it on the platforms it supports):
    a forwarded call is a handful of loop wake-ups, each cheaper on uvloop than on asyncio's own loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
