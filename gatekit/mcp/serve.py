"""Run a gateway: to the client over stdio (the MCP client starts it as its server) or Streamable HTTP.

Either way the upstream server is connected first (its name and capabilities are what the client sees),
kept connected while the gateway runs, and stopped with it. When the upstream cannot be (re)started the
gateway answers the calls in flight, then stops with `GatekitError` saying why.

>>> anyio.run(serve_stdio, gateway)
>>> anyio.run(functools.partial(serve_http, gateway, "127.0.0.1", 0, echo=print))
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import anyio
import anyio.to_thread

from gatekit.errors import GatekitError, InputError
from gatekit.mcp.gateway import Gateway
from gatekit.mcp.stdio import message_streams, wire

THREADS = 64  # blocking gate work (approvals long-polls, broker writes): one thread per waiting call


async def serve_stdio(gateway: Gateway) -> None:
    """Serve one client on this process's stdin and stdout until it closes them."""
    _widen_threads()
    async with anyio.create_task_group() as tg:
        await _start_upstream(gateway, tg)
        if gateway.upstream.client is not None:
            server = gateway.build()
            tg.start_soon(_stop_with_upstream, gateway, tg.cancel_scope)
            tg.start_soon(_stop_on_signal, tg.cancel_scope)
            async with wire() as (stdin, stdout):
                read, write = message_streams(stdin, stdout)
                await server.run(read, write, server.create_initialization_options(gateway.notification_options()))
        tg.cancel_scope.cancel()
    _raise_failure(gateway)


async def serve_http(gateway: Gateway, host: str, port: int, *, echo: Callable[[str], Any] = print,
                     allow_remote: bool = False, path: str = "/mcp", json_response: bool = False) -> None:
    """Serve Streamable HTTP at `http://host:port/mcp`; `echo` gets that URL once the socket is bound.

    Loopback only unless `allow_remote` (the gateway has no client authentication of its own).
    `json_response` answers each request with one JSON body (the SDK's JSON response mode) instead of an SSE
    stream: no stream and its tasks per request, and the SDK's client reads the whole body, so it keeps its
    connection (it closes an SSE response unread to its end, which drops the connection). A JSON body
    carries only the response: the progress of a call waiting for approval is not sent, and what the
    upstream asks the client during a call (sampling, elicitation, roots) is refused with an error.
    """
    import uvicorn

    if not allow_remote and not is_loopback(host):
        raise InputError(f"refusing to listen on `{host}`: the gateway does not authenticate its clients, so it "
                           "listens on loopback only (pass --allow-remote to listen there anyway, behind your own "
                           "authenticating proxy)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatekitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(256)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}{path}"
    _widen_threads()
    async with anyio.create_task_group() as tg:
        await _start_upstream(gateway, tg)
        if gateway.upstream.client is not None:
            server = gateway.build()
            app = server.streamable_http_app(streamable_http_path=path, host=host, json_response=json_response)
            # a call waiting for approval holds its request open: on SIGTERM wait briefly, then cancel it
            # (which withdraws its approval request) rather than wait for a reviewer
            config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                                    lifespan="on", timeout_graceful_shutdown=3)
            web = uvicorn.Server(config)
            tg.start_soon(_stop_with_upstream, gateway, tg.cancel_scope, web)
            echo(url)
            await web.serve(sockets=[sock])
        tg.cancel_scope.cancel()
    sock.close()
    _raise_failure(gateway)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _start_upstream(gateway: Gateway, tg: Any) -> None:
    await tg.start(gateway.upstream.run)


async def _stop_with_upstream(gateway: Gateway, scope: anyio.CancelScope, web: Any = None) -> None:
    """When the upstream is gone for good: let the calls in flight answer (briefly), then stop serving."""
    await gateway.upstream.stopped()
    with anyio.move_on_after(3):
        while gateway.in_flight:
            await anyio.sleep(0.02)
    await anyio.sleep(0.1)  # the last answers are written
    if web is not None:
        web.should_exit = True
    scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    """SIGTERM or SIGINT: stop serving; calls waiting for approval are cancelled, so their requests withdrawn."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _raise_failure(gateway: Gateway) -> None:
    if gateway.upstream.failure:
        raise GatekitError(gateway.upstream.failure)


def _widen_threads() -> None:
    """Escalated calls each hold a worker thread while they wait: allow many (the default is a handful)."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="gatekit-mcp"))
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
