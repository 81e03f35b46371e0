"""The MCP gateway: an MCP server to the client, an MCP client to the real server, a gate between the two.

Everything the upstream server offers is re-exposed as it is (tools, resources and their templates,
prompts, completions, resource subscriptions; its notifications, and its requests to the client
(`sampling/createMessage`, `elicitation/create`, `roots/list`), go to the clients they are for, as
`gatekit.mcp.clients` routes them; the client's `notifications/roots/list_changed` goes back upstream),
except `tools/call`,
which the gate decides first: allow forwards the call; deny answers a tool result with `isError: true`
and the policy's reasons (a result, not a protocol error, so the model can read why); escalate files the
call for approval (the approvals service, or a local broker) and waits, sending progress notifications
when the client asked for them, then forwards the call or answers the refusal. The client cancelling the
call (`notifications/cancelled`, or going away) withdraws the request, so an approval arriving later
runs nothing. No call reaches the upstream server without a decision.

>>> gateway = Gateway(Gate(load_policy("policy.yaml"), broker=Broker("approvals.db")),
...                   Upstream(StdioServerParameters(command="python", args=["server.py"])))
>>> anyio.run(serve_stdio, gateway)
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import mcp.types as types
from pydantic import TypeAdapter
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.shared.exceptions import MCPError

from gatekit.action import Action, evidence_hash
from gatekit.enforce.gate import Denied, Gate, Pending
from gatekit.errors import GatekitError
from gatekit.mcp.answers import Progress, error_result, refusal
from gatekit.mcp.clients import Clients
from gatekit.mcp.hidden import always_denied
from gatekit.mcp.log import OUTCOMES, CallLog, call_record
from gatekit.mcp.upstream import Upstream, UpstreamGone
from gatekit.policy.decision import Decision

logger = logging.getLogger("gatekit.mcp")
T = TypeVar("T")
# a forwarded call's result, as the upstream sent it: the SDK's client checks it against the protocol (its
# per-version validation) and the client-facing server again before writing it, so the gateway does not also
# build a `CallToolResult` from it and dump it back (a result is relayed, not interpreted)
_RELAYED_RESULT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])

@dataclass(frozen=True)
class Options:
    """How the gateway behaves; the gate holds the policy, the mode and the identity."""

    server_name: str | None = None  # `context.server` and the name shown to the client (default: upstream's)
    hide_denied: bool = False  # leave tools the policy always denies out of tools/list
    max_args_bytes: int = 1 << 20  # a call's arguments, as JSON, above this are refused undecided
    progress_interval: float = 5.0  # seconds between progress notifications while an approval is awaited
    upstream_timeout: float = 30.0  # seconds to wait for a restarting upstream before answering an error


class Gateway:
    """One policy between MCP clients and one upstream MCP server.

    The gate's `agent`, `user` and `context` pin who each call is for (never the call's payload);
    without an approvals service and without `agent`, the client's `clientInfo.name` names the agent.
    `context.server` is the upstream server's name (`options.server_name` overrides it).
    """

    def __init__(self, gate: Gate, upstream: Upstream, options: Options | None = None,
                 log: CallLog | None = None) -> None:
        self.gate = gate
        self.upstream = upstream
        self.options = options or Options()
        self.log = log
        self.session_id = "mcp-" + secrets.token_hex(6)  # this gateway's session, unless HTTP gives one
        self.server_name = self.options.server_name or "mcp"
        self.in_flight = 0
        self.clients = Clients()  # the client connections: where the upstream's notifications and requests go
        upstream.on_message = self.clients.notify
        upstream.on_request = self.clients.ask
        self._always_denied = always_denied(gate.policy)

    # -- the client-facing server -------------------------------------------------------------------------
    def build(self) -> Server[Any]:
        """The low-level MCP server the client talks to, with the upstream's capabilities (once connected)."""
        client = self.upstream.client
        if client is None:
            raise GatekitError(self.upstream.failure or "the upstream MCP server is not connected")
        caps = client.server_capabilities
        info = client.server_info
        if self.options.server_name is None and info is not None and info.name:
            self.server_name = info.name
        handlers: dict[str, Any] = {}
        if caps.tools is not None:
            handlers.update(on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        if caps.resources is not None:
            handlers.update(on_list_resources=self._list_resources, on_read_resource=self._read_resource,
                            on_list_resource_templates=self._list_resource_templates)
            if caps.resources.subscribe:
                handlers.update(on_subscribe_resource=self._subscribe, on_unsubscribe_resource=self._unsubscribe)
        if caps.prompts is not None:
            handlers.update(on_list_prompts=self._list_prompts, on_get_prompt=self._get_prompt)
        if caps.completions is not None:
            handlers.update(on_completion=self._complete)
        if caps.logging is not None:
            handlers.update(on_set_logging_level=self._set_logging_level)
        handlers.update(on_roots_list_changed=self._roots_changed)
        with warnings.catch_warnings():  # logging/setLevel is deprecated (2026-07-28): relayed while servers use it
            warnings.simplefilter("ignore")
            server = Server(self.server_name, version=info.version if info else gatekit_version(),
                            title=info.title if info else None, instructions=client.instructions, **handlers)
        server.middleware[:] = [_traced(m) for m in server.middleware]
        return server

    def notification_options(self) -> NotificationOptions:
        """The upstream's `listChanged` flags, advertised to handshake-era clients as they are."""
        caps = self.upstream.client.server_capabilities if self.upstream.client else types.ServerCapabilities()
        return NotificationOptions(prompts_changed=bool(caps.prompts and caps.prompts.list_changed),
                                   resources_changed=bool(caps.resources and caps.resources.list_changed),
                                   tools_changed=bool(caps.tools and caps.tools.list_changed))

    # -- tools --------------------------------------------------------------------------------------------
    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        self._track(ctx)
        result = await self._read(lambda c: c.session.list_tools(params=_bare(params)))
        if self.options.hide_denied and self.gate.mode == "enforce":
            result = result.model_copy(update={"tools": [t for t in result.tools if not self._always_denied(t.name)]})
        return result

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        """Decide, then forward, wait, or refuse. Every call, whatever happens, is one line of the log."""
        started = time.perf_counter()
        self._track(ctx)
        self.in_flight += 1
        try:
            return await self._decide_and_forward(ctx, params, started)
        finally:
            self.in_flight -= 1

    async def _decide_and_forward(self, ctx: Any, params: types.CallToolRequestParams, started: float) -> Any:
        name, args = params.name, params.arguments or {}
        asserted = self._asserted(ctx)
        size = _json_size(args)
        if size is None or size > self.options.max_args_bytes:
            return self._refuse_undecided(name, args, asserted, started, size)
        try:
            pending = await self._submit({"tool": name, "args": args}, asserted)
        except Denied as exc:
            act = exc.action if isinstance(exc.action, Action) else self._unfiled(name, args, asserted)
            self._record(act, exc.decision, OUTCOMES.get(exc.code, "refused"), started, request=exc.request)
            return refusal(exc)
        progress = Progress(ctx.session)
        timer = _Timer()
        try:
            if pending.request is not None and self.gate.mode == "enforce":
                await self._await_approval(pending, progress)
            if pending.request is None and self.gate.receipts is None:  # allowed, or shadow: nothing to release
                result = await self._forward(ctx, params, pending.action, progress, timer)
            else:
                result = await pending.arun(lambda act: self._forward(ctx, params, act, progress, timer))
        except Denied as exc:
            self._record(pending.action, pending.decision, OUTCOMES.get(exc.code, "refused"), started,
                         request=exc.request or pending.request, error=str(exc))
            return refusal(exc)
        except _Failed as exc:
            self._record(pending.action, pending.decision, "failed", started, request=pending.request,
                         executed=True, error=exc.message, upstream_ms=timer.ms)
            return error_result(f"gatekit: {exc.message}", {"code": "upstream",
                                                             "decision": pending.decision.decision})
        except MCPError as exc:  # the upstream refused the call (unknown tool, bad arguments): relayed as it is
            self._record(pending.action, pending.decision, "failed", started, request=pending.request,
                         executed=True, error=exc.message, upstream_ms=timer.ms)
            raise
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                with anyio.CancelScope(shield=True):
                    await self._withdraw(pending, timer, started)
            else:  # a bug of ours or the SDK's: the client gets a protocol error, the log still gets its line
                self._record(pending.action, pending.decision, "error", started, request=pending.request,
                             executed=timer.began is not None, error=f"{type(exc).__name__}: {exc}")
            raise
        self._record(pending.action, pending.decision, "executed", started, request=pending.request, executed=True,
                     upstream_ms=timer.ms, tool_error=_is_error(result))
        return result

    async def _submit(self, call: dict[str, Any], asserted: dict[str, Any]) -> Pending:
        if self.gate.service is None and self.gate.broker is None:
            return self.gate.submit(call, **asserted)  # in-process only: microseconds, no thread hop
        return await anyio.to_thread.run_sync(lambda: self.gate.submit(call, **asserted))

    async def _await_approval(self, pending: Pending, progress: Progress) -> None:
        """Wait for the reviewers, telling the client (progress) which request it waits for, now and then."""
        rid = pending.request_id
        why = "; ".join(pending.decision.reasons) or "the policy escalates this call"
        await progress.report(f"waiting for approval: request {rid} ({why})")

        async def heartbeat() -> None:
            waited = 0.0
            while True:
                await anyio.sleep(self.options.progress_interval)
                waited += self.options.progress_interval
                await progress.report(f"still waiting for approval of request {rid} ({waited:.1f} s)")

        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            await pending.wait_async()
            tg.cancel_scope.cancel()

    async def _forward(self, ctx: Any, params: types.CallToolRequestParams, act: Action, progress: Progress,
                       timer: _Timer) -> Any:
        """Send the decided call, exactly as decided, to the upstream server."""
        try:
            client, generation = await self.upstream.connected(self.options.upstream_timeout)
        except UpstreamGone as exc:
            raise _Failed(f"the upstream MCP server is not available: {exc}") from None
        progress.start_relay()
        timer.start()
        request = types.CallToolRequest(params=types.CallToolRequestParams(
            name=act.tool, arguments=act.args, input_responses=params.input_responses,
            request_state=params.request_state))
        # the upstream's progress is relayed when the client asked for progress (else the SDK would drop it)
        relay = progress.relay if params.meta and params.meta.get("progress_token") is not None else None
        try:
            # the request as it is, not `call_tool`: the client checks the result against the tool's output schema
            # (and lists the tools to find it), which is the client's to do, not the gateway's
            with self.clients.calling(ctx.session, ctx.request_id):  # what the upstream asks meanwhile is for it
                result = await client.session.send_request(request, _RELAYED_RESULT, progress_callback=relay)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self.upstream.lost(generation)
                then = "; restarting it" if self.upstream.will_restart else ""
                raise _Failed("the upstream MCP server closed the connection during the call (it exited or "
                              f"crashed): the call may have partly run{then}") from None
            raise
        except anyio.BrokenResourceError:
            self.upstream.lost(generation)
            raise _Failed("the upstream MCP server's connection broke during the call") from None
        finally:
            timer.stop()
        # a handshake-era result is complete (what `CallToolResult` fills in; the server drops it for old clients)
        result.setdefault("resultType", "complete")
        return result

    async def _withdraw(self, pending: Pending, timer: _Timer, started: float) -> None:
        """The client gave up (cancelled, or went away): withdraw the request; record how the call ended."""
        forwarded = timer.began is not None
        if pending.request is not None and not forwarded:
            try:
                await anyio.to_thread.run_sync(pending.withdraw, "the MCP client cancelled the call")
            except Exception as exc:  # noqa: BLE001  the request then times out on its own
                logger.warning("could not withdraw request %s: %s", pending.request_id, exc)
        self._record(pending.action, pending.decision, "cancelled" if forwarded else "withdrawn", started,
                     request=pending.request, executed=forwarded, upstream_ms=timer.ms)

    def _refuse_undecided(self, name: str, args: Any, asserted: dict[str, Any], started: float,
                          size: int | None) -> types.CallToolResult:
        """Arguments too large (or not JSON) to decide: refused before the policy, never forwarded."""
        limit = self.options.max_args_bytes
        why = (f"the call's arguments are {size:,} bytes as JSON, over the gateway's limit of {limit:,}"
               if size is not None else "the call's arguments cannot be written as JSON")
        decision = Decision("deny", reasons=(why,))
        act = self._unfiled(name, {}, asserted)
        code = "oversized" if size is not None else "malformed"
        self._record(act, decision, "refused", started, refusal=code, args_bytes=size)
        return error_result(f"gatekit refused `{name}`: {why}", {"code": code, "decision": "deny", "rules": [],
                                                                 "reasons": [why]})

    def _unfiled(self, name: str, args: dict[str, Any], asserted: dict[str, Any]) -> Action:
        """The record of a call the gate did not file (refused before it, or by the approvals service)."""
        pinned = {**self.gate.defaults, **{k: v for k, v in asserted.items() if k != "context"}}
        act = Action(tool=name, args=args, context={**self.gate.context, **asserted["context"]},
                     agent=pinned.get("agent"), session=pinned.get("session"), user=pinned.get("user"),
                     ts=_now(), action_id="g-" + secrets.token_hex(12))
        act.evidence_hash = evidence_hash(act)
        return act

    def _asserted(self, ctx: Any) -> dict[str, Any]:
        """Who and where the call is for, from the gateway's configuration (never from the call's payload)."""
        asserted: dict[str, Any] = {"context": {"server": self.server_name}}
        if self.gate.defaults.get("session") is None:
            asserted["session"] = _http_session(ctx) or self.session_id
        if self.gate.defaults.get("agent") is None and self.gate.service is None:
            info = getattr(ctx.session.client_params, "client_info", None)
            if info is not None and isinstance(info.name, str) and info.name:
                asserted["agent"] = info.name
        return asserted

    def _record(self, act: Action, decision: Decision, outcome: str, started: float, **extra: Any) -> None:
        if self.log is None:
            return
        request = extra.pop("request", None)
        executed = extra.pop("executed", False)
        keys = ("refusal", "error")
        record = call_record(act, decision, mode=self.gate.mode, policy=self.gate.policy.name,
                             fingerprint=self.gate.policy.fingerprint, outcome=outcome,
                             latency_ms=(time.perf_counter() - started) * 1000, server=self.server_name,
                             request=request, executed=executed, **{k: extra.pop(k) for k in keys if k in extra})
        record.update({k: v for k, v in extra.items() if v is not None})
        try:
            self.log.write(record)
        except Exception as exc:  # noqa: BLE001  the call has been decided; a full disk must not hang the client
            logger.error("cannot write the gateway log: %s", exc)

    # -- everything else, relayed -------------------------------------------------------------------------
    async def _list_resources(self, ctx: Any, params: types.PaginatedRequestParams | None) -> Any:
        self._track(ctx)
        return await self._read(lambda c: c.session.list_resources(params=_bare(params)))

    async def _list_resource_templates(self, ctx: Any, params: types.PaginatedRequestParams | None) -> Any:
        self._track(ctx)
        return await self._read(lambda c: c.session.list_resource_templates(params=_bare(params)))

    async def _read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> Any:
        self._track(ctx)
        request = types.ReadResourceRequest(params=_bare(params))
        return await self._read(lambda c: c.session.send_request(request, types.ReadResourceResult))

    async def _subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> Any:
        """Subscribe upstream once per resource; remember which clients want its updates."""
        self._track(ctx)
        if not self.clients.subscribers.get(params.uri):
            await self._read(lambda c: c.session.subscribe_resource(params.uri))
        self.clients.subscribe(params.uri, ctx.session)
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> Any:
        """Forget this client's subscription; unsubscribe upstream when no client is left subscribed."""
        self._track(ctx)
        if self.clients.unsubscribe(params.uri, ctx.session):
            await self._read(lambda c: c.session.unsubscribe_resource(params.uri))
        return types.EmptyResult()

    async def _roots_changed(self, ctx: Any, params: Any) -> None:
        """The client's roots changed: tell the upstream server, which may list them again."""
        client = self.upstream.client
        if client is not None:
            try:
                await client.session.send_notification(types.RootsListChangedNotification())
            except Exception as exc:  # noqa: BLE001  the upstream is restarting: it will ask again
                logger.debug("could not relay roots/list_changed: %s", exc)

    async def _list_prompts(self, ctx: Any, params: types.PaginatedRequestParams | None) -> Any:
        self._track(ctx)
        return await self._read(lambda c: c.session.list_prompts(params=_bare(params)))

    async def _get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> Any:
        self._track(ctx)
        request = types.GetPromptRequest(params=_bare(params))
        return await self._read(lambda c: c.session.send_request(request, types.GetPromptResult))

    async def _complete(self, ctx: Any, params: types.CompleteRequestParams) -> Any:
        self._track(ctx)
        request = types.CompleteRequest(params=_bare(params))
        return await self._read(lambda c: c.session.send_request(request, types.CompleteResult))

    async def _set_logging_level(self, ctx: Any, params: types.SetLevelRequestParams) -> Any:
        self._track(ctx)
        request = types.SetLevelRequest(params=_bare(params))
        return await self._read(lambda c: c.session.send_request(request, types.EmptyResult))

    async def _read(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Relay a request that changes nothing upstream: once more on a restarted server if it went away."""
        for attempt in (1, 2):
            try:
                client, generation = await self.upstream.connected(self.options.upstream_timeout)
            except UpstreamGone as exc:
                raise MCPError(types.INTERNAL_ERROR, f"gatekit: the upstream MCP server is not available: {exc}")
            try:
                return await call(client)
            except MCPError as exc:
                if exc.code != types.CONNECTION_CLOSED or attempt == 2:
                    raise
                self.upstream.lost(generation)
        raise AssertionError("unreachable")

    def _track(self, ctx: Any) -> None:
        self.clients.track(ctx.session)



class _Failed(Exception):
    """A forwarded call that did not come back: the client gets an error result saying why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Timer:
    """How long the upstream server took with a forwarded call."""

    def __init__(self) -> None:
        self.began: float | None = None
        self.ms: float | None = None

    def start(self) -> None:
        self.began = time.perf_counter()

    def stop(self) -> None:
        if self.began is not None:
            self.ms = round((time.perf_counter() - self.began) * 1000, 3)


def _traced(middleware: Any) -> Any:
    """The SDK's OpenTelemetry middleware, only where it can matter: every request once a tracer provider is
    configured, else only a request that carries the client's trace context (to pass it on upstream). Without
    either it builds a span no one records, for every message."""
    from opentelemetry import trace

    if (type(middleware).__name__ != "OpenTelemetryMiddleware"
            or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)):
        return middleware

    async def traced(ctx: Any, call_next: Any) -> Any:
        if ctx.meta and ("traceparent" in ctx.meta or "tracestate" in ctx.meta):
            return await middleware(ctx, call_next)
        return await call_next(ctx)

    return traced


def _is_error(result: Any) -> bool:
    return bool(result.get("isError") if isinstance(result, dict) else getattr(result, "is_error", False))


def _bare(params: Any) -> Any:
    """The client's params without its `_meta` (its progress token and envelope are its own, not upstream's)."""
    if params is None or getattr(params, "meta", None) is None:
        return params
    return params.model_copy(update={"meta": None})


def _json_size(args: Any) -> int | None:
    try:
        text = json.dumps(args, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return len(text.encode("utf-8", "surrogatepass"))


def _http_session(ctx: Any) -> str | None:
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    value = headers.get("mcp-session-id")
    return f"mcp-{value}" if value else None


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def gatekit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gatekit")
    except PackageNotFoundError:
        return "0"
