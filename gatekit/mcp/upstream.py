"""The real MCP server behind the gateway: a child process over stdio, or a Streamable HTTP endpoint.

The gateway holds the only connection to it (the agent cannot reach a tool around the policy). A supervisor
task owns the SDK `Client` (anyio scopes belong to the task that entered them); callers borrow the client
with `connected()`. When the server goes away (a crash, an exit, a dropped HTTP session) the calls in flight
fail, `lost()` is called, and the supervisor starts it again, up to `restarts` times; after that the gateway
stops with `failure` saying why.

Over HTTP the SDK's client closes a request's SSE response as soon as the response event has arrived, before
the server's end of the body, which makes httpx close the connection: a new TCP connection (and a new
connection on the server) per call. The gateway's HTTP client (`KeepAlive`) reads the end of a POST's
finished body first (briefly: a body that does not end is closed as before), so the connection is kept.

>>> upstream = Upstream(StdioServerParameters(command="python", args=["server.py"]), restarts=3)
>>> await task_group.start(upstream.run)
>>> client, generation = await upstream.connected()
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.types import Implementation

from gatekit.errors import GatekitError
from gatekit.mcp.stdio import ChildProcess

logger = logging.getLogger("gatekit.mcp")

Target = StdioServerParameters | str
OnMessage = Callable[[Any], Awaitable[None]]
# a request the server sends its client (sampling, elicitation, roots): answered by the gateway's client
OnRequest = Callable[[types.CreateMessageRequest | types.ElicitRequest | types.ListRootsRequest],
                     Awaitable[Any]]


class UpstreamGone(GatekitError):
    """The upstream server is not connected (it exited and is being restarted, or could not be)."""


class Upstream:
    """One upstream MCP server, kept connected by `run` (a task of the gateway's task group)."""

    def __init__(self, target: Target, *, restarts: int = 3, on_message: OnMessage | None = None,
                 client_info: Implementation | None = None, connect_timeout: float = 60.0) -> None:
        self.target = target
        self.restarts = restarts
        self.on_message = on_message
        self.on_request: OnRequest | None = None
        self.client_info = client_info
        self.connect_timeout = connect_timeout
        self.client: Client | None = None
        self.generation = 0  # which connection `client` is: a loss reported for an older one is ignored
        self.started = 0
        self.failure: str | None = None
        self._ready = anyio.Event()
        self._lost = anyio.Event()
        self._stopped = anyio.Event()
        self._was_ready = False

    @property
    def described(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return " ".join([self.target.command, *self.target.args])

    @property
    def will_restart(self) -> bool:
        """Whether losing the current connection would be followed by a restart."""
        return self.started <= self.restarts

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect after each loss; `task_status.started()` after the first connection.

        Returns (with `failure` set) when the server cannot be started or has been lost more than `restarts`
        times; the gateway then stops. The first connection failing is a failure at once.
        """
        reported = False
        while True:
            self.started += 1
            try:
                await self._connect_once(task_status if not reported else None)
                reported = True
            except Exception as exc:  # noqa: BLE001  an SDK connect error of any kind: report it, no traceback
                if not self._was_ready:
                    self.failure = f"cannot connect to the upstream MCP server `{self.described}`: {_why(exc)}"
                    break
                logger.debug("the upstream connection ended with: %s", _why(exc))
            reported = reported or self._was_ready
            if self.started > self.restarts:
                self.failure = (f"the upstream MCP server `{self.described}` exited or closed its connection"
                                + (f" again after {self.restarts} restart{'s' if self.restarts > 1 else ''}"
                                   if self.restarts else "")
                                + f"; not restarting it (--restarts {self.restarts})")
                break
            logger.warning("the upstream MCP server went away: restarting it (%d of %d)", self.started,
                           self.restarts)
        self._stopped.set()
        self._ready.set()  # wake whoever waits for a connection: there will be none
        if not reported:
            task_status.started()

    async def _connect_once(self, task_status: Any) -> None:
        """One connection, from the handshake until it is reported lost (or the gateway stops)."""
        self._was_ready = False
        async with anyio.create_task_group() as tg:
            async def watchdog() -> None:
                await anyio.sleep(self.connect_timeout)
                if not self._was_ready:
                    tg.cancel_scope.cancel()

            tg.start_soon(watchdog)
            try:
                # the callbacks declare sampling, elicitation and roots to the server: its requests are relayed
                # to the client whose call they belong to, which answers them (or the gateway refuses them)
                target = (ChildProcess(self.target) if isinstance(self.target, StdioServerParameters)
                          else http_transport(self.target))
                async with Client(target, mode="legacy", client_info=self.client_info, cache=None,
                                  message_handler=self._message, sampling_callback=self._sampling,
                                  elicitation_callback=self._elicitation,
                                  list_roots_callback=self._list_roots) as client:
                    self.client, self.generation = client, self.generation + 1
                    self._lost = anyio.Event()
                    self._was_ready = True
                    self._ready.set()
                    if task_status is not None:
                        task_status.started()
                    await self._lost.wait()
            finally:
                self.client = None
                if self._ready.is_set():  # a fresh event, unless `lost` made one that callers already wait on
                    self._ready = anyio.Event()
                tg.cancel_scope.cancel()
        if not self._was_ready:
            raise TimeoutError

    async def connected(self, timeout: float | None = None) -> tuple[Client, int]:
        """The connected client and its generation; raises `UpstreamGone` if there is none (in `timeout` s)."""
        if self.client is not None:  # connected: no wait, no trip through the event loop
            return self.client, self.generation
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await self._ready.wait()
        if self.client is None:
            raise UpstreamGone(self.failure or "the upstream MCP server is restarting")
        return self.client, self.generation

    def lost(self, generation: int) -> None:
        """Report that connection `generation` is gone (a call saw it close); the supervisor restarts it."""
        if generation == self.generation and self.client is not None:
            self.client = None  # nobody borrows it from now on: the next caller waits for the restart
            self._ready = anyio.Event()
            self._lost.set()

    async def stopped(self) -> None:
        await self._stopped.wait()

    async def _sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        return await self._ask(types.CreateMessageRequest(params=params))

    async def _elicitation(self, context: Any, params: Any) -> Any:
        return await self._ask(types.ElicitRequest(params=params))

    async def _list_roots(self, context: Any) -> Any:
        return await self._ask(types.ListRootsRequest())

    async def _ask(self, request: Any) -> Any:
        if self.on_request is None:
            return types.ErrorData(code=types.METHOD_NOT_FOUND, message=f"gatekit does not relay `{request.method}`")
        return await self.on_request(request)

    async def _message(self, message: Any) -> None:
        if isinstance(message, Exception):  # a line the server wrote that is not JSON-RPC: logged, skipped
            logger.warning("the upstream MCP server sent a line that is not JSON-RPC (skipped): %s", _unreadable(message))
            return
        if self.on_message is not None:
            await self.on_message(message)


def _unreadable(exc: Exception) -> str:
    """One line for a message that did not parse: pydantic's first complaint and the start of what was sent."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    first = errors(include_url=False)[0]
    sent = repr(first.get("input"))
    return f"{first['msg']}: {sent[:120]}{'...' if len(sent) > 120 else ''}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "it did not answer the MCP handshake in time"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_why(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__


DRAIN_SECONDS = 1.0  # how long a finished POST response's body may take to end before the connection is dropped
DRAIN_BYTES = 1 << 16  # what is read of it at most


@asynccontextmanager
async def http_transport(url: str) -> AsyncIterator[Any]:
    """The SDK's Streamable HTTP client transport to `url`, on an httpx client that keeps its connections."""
    from mcp.client.streamable_http import streamable_http_client

    # the SDK's default timeouts (`create_mcp_http_client`): 30 s, and 300 s to read (a stream may stay open)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=300.0),
                                  transport=KeepAlive(httpx2.AsyncHTTPTransport())) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


class KeepAlive(httpx2.AsyncBaseTransport):
    """An httpx transport whose POST responses, closed before their end, read the end first when it is there."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            response.stream = _Drained(response.stream)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Drained(httpx2.AsyncByteStream):
    """A response body that, closed early, reads what is left of it (if it ends soon) so httpx can reuse the
    connection; a body still streaming after `DRAIN_SECONDS` or `DRAIN_BYTES` is closed as it is."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.chunks: Any = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.chunks = self.inner.__aiter__()
        while True:
            try:
                chunk = await self.chunks.__anext__()
            except StopAsyncIteration:
                self.chunks = None
                return
            yield chunk

    async def aclose(self) -> None:
        try:
            if self.chunks is not None:
                left = DRAIN_BYTES
                with anyio.move_on_after(DRAIN_SECONDS):
                    while left > 0:
                        try:
                            left -= len(await self.chunks.__anext__())
                        except StopAsyncIteration:
                            break
        except Exception:  # noqa: BLE001  the body broke: closing it drops the connection, as without this
            pass
        finally:
            self.chunks = None
            await self.inner.aclose()
