"""The gateway's small parts, without processes: the log record, and how stdin is split into messages."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from gatekit.action import FIELDS, Action, evidence_hash
from gatekit.enforce.broker import Request, Vote
from gatekit.mcp.log import CallLog, approvals, call_record
from gatekit.mcp.stdio import _Splitter
from gatekit.policy.decision import Decision

AT = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


def test_a_call_record_is_an_action_record_plus_what_the_gateway_did(tmp_path) -> None:
    act = Action(tool="pay", args={"amount": 250}, context={"server": "s"}, agent="bot", ts=AT, action_id="g-1")
    act.evidence_hash = evidence_hash(act)
    request = {"id": "req-1", "requested_at": "2026-11-02T10:00:00Z",
               "votes": [{"reviewer": "alice", "role": "finance", "decision": "approve", "at": "2026-11-02T10:01:00Z",
                          "break_glass": 0, "reason": None, "evidence": "sha256:x"}]}
    record = call_record(act, Decision("escalate", ("pay-100",), (), "standard", ("over 100",)), mode="enforce",
                         policy="p", fingerprint="f", outcome="executed", latency_ms=12.3456, server="s",
                         request=request, executed=True)
    assert set(FIELDS) <= set(record) and record["ts"] == "2026-11-02T10:00:00Z"
    assert record["executed_hash"] == record["evidence_hash"] == act.evidence_hash
    assert (record["decision"], record["rules"], record["tier"], record["request_id"]) == (
        "escalate", ["pay-100"], "standard", "req-1")
    assert record["approvals"] == [{"reviewer": "alice", "role": "finance", "decision": "approve",
                                    "requested_at": "2026-11-02T10:00:00Z", "decided_at": "2026-11-02T10:01:00Z",
                                    "break_glass": False, "reason": None}]
    log = CallLog(tmp_path / "calls.jsonl")
    log.write(record)
    log.close()
    assert json.loads((tmp_path / "calls.jsonl").read_text()) == record


def test_a_local_brokers_votes_are_approvals_too() -> None:
    request = Request(id="r-1", action_id="a", status="approved", action={}, evidence_hash="h", rules=(),
                      reasons=(), tier=None, approvals=1, roles=(), requested_at=AT, expires_at=AT,
                      votes=(Vote("bob", "approve", at=AT),))
    assert approvals(request) == [{"reviewer": "bob", "role": None, "decision": "approve",
                                   "requested_at": "2026-11-02T10:00:00Z", "decided_at": "2026-11-02T10:00:00Z",
                                   "break_glass": False, "reason": None}]
    assert approvals(None) == []


def test_stdin_is_split_into_lines_and_a_line_over_the_limit_is_dropped_unbuffered() -> None:
    split = _Splitter(limit=10)
    split.feed(b'{"a":1}\n{"b"')
    assert split.next_line() == '{"a":1}\n' and split.next_line() is None
    split.feed(b':2}\n' + b"x" * 25)  # a line longer than the limit, not yet ended: not kept
    assert split.next_line() == '{"b":2}\n' and split.next_line() is None and split.buffer == b""
    split.feed(b"xxxx\n" + b'{"c":3}\n')  # the rest of the long line is skipped
    assert split.next_line() == '{"c":3}\n' and split.next_line() is None
    split.feed(b"y" * 11 + b"\n" + b"ok\n")  # over the limit within one chunk
    assert split.next_line() == "ok\n"
    split.feed(b"tail")
    assert split.rest() == "tail" and split.rest() is None


class _Client:
    """A downstream connection as the gateway sees it: its capabilities, and what it was asked."""

    def __init__(self, name: str, roots: bool = True) -> None:
        from mcp import types

        self.name, self.asked = name, []
        self.client_capabilities = types.ClientCapabilities(roots=types.RootsCapability() if roots else None)
        self._connection = object()

    async def send_request(self, request, result_type, metadata=None):
        from mcp import types

        self.asked.append((request.method, metadata.related_request_id if metadata else None))
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///{self.name}")])


def test_the_upstreams_requests_go_to_the_one_client_they_are_certainly_for() -> None:
    import anyio
    from mcp import types

    from gatekit.mcp.clients import Clients

    clients = Clients()
    one, two, bare = _Client("one"), _Client("two"), _Client("bare", roots=False)
    ask = types.ListRootsRequest()

    def relay():
        return anyio.run(clients.ask, ask)

    refused = relay()  # no client at all
    assert isinstance(refused, types.ErrorData) and "cannot tell which MCP client" in refused.message
    clients.sessions[1] = one
    assert str(relay().roots[0].uri) == "file:///one" and one.asked == [("roots/list", None)]
    clients.sessions[2] = two  # two clients, no call in flight: not guessed
    assert isinstance(relay(), types.ErrorData) and len(one.asked) == 1
    with clients.calling(two, 7):  # two's call in flight: on that call's stream
        assert str(relay().roots[0].uri) == "file:///two" and two.asked == [("roots/list", 7)]
        with clients.calling(one, 9):  # calls of both in flight: not guessed
            assert isinstance(relay(), types.ErrorData) and (len(one.asked), len(two.asked)) == (1, 1)
    assert clients.calls == {}  # a call is forgotten when it ends
    with clients.calling(bare, 1):
        missing = relay()
    assert isinstance(missing, types.ErrorData) and "`roots` capability" in missing.message and not bare.asked


def test_a_resource_is_subscribed_upstream_by_its_first_client_and_left_by_its_last() -> None:
    from gatekit.mcp.clients import Clients

    clients, one, two = Clients(), _Client("one"), _Client("two")
    assert clients.subscribe("notes://a", one) is True  # the first: the gateway subscribes upstream
    assert clients.subscribe("notes://a", two) is False
    assert clients.subscribe("notes://a", one) is False  # again: still one subscription each
    assert clients.unsubscribe("notes://a", one) is False  # two still wants it
    assert clients.unsubscribe("notes://a", two) is True  # the last: the gateway unsubscribes upstream
    assert clients.subscribers == {}


def test_the_sdks_tracing_middleware_runs_only_for_a_traced_request_when_no_tracer_is_configured() -> None:
    import anyio
    from mcp.server.lowlevel import Server

    from gatekit.mcp.gateway import _traced

    [sdk] = Server("s").middleware  # the SDK's OpenTelemetryMiddleware
    traced, seen = _traced(sdk), []

    class Ctx:
        def __init__(self, meta):
            self.meta, self.params, self.method, self.protocol_version, self.request_id = meta, {}, "ping", "x", 1

    async def call_next(ctx):
        seen.append(ctx.meta)
        return {}

    calls: list[object] = []

    async def spy(ctx, nxt):
        calls.append(ctx.meta)
        return await nxt(ctx)

    sdk_call = type(sdk).__call__
    try:
        type(sdk).__call__ = lambda self, ctx, nxt: spy(ctx, nxt)
        anyio.run(traced, Ctx(None), call_next)
        anyio.run(traced, Ctx({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}), call_next)
    finally:
        type(sdk).__call__ = sdk_call
    assert len(seen) == 2 and calls == [seen[1]]  # both handled; only the traced one through the SDK's span
    assert _traced(spy) is spy  # any other middleware is left as it is


def test_the_gateway_runs_on_uvloop_when_it_is_installed_and_on_asyncio_when_not(monkeypatch):
    import asyncio
    import sys

    import anyio
    import uvloop

    from gatekit.mcp.commands import _loop_options

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert issubclass(anyio.run(loop_type, backend_options=_loop_options()), uvloop.Loop)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed: asyncio's own loop, no error
    assert _loop_options() == {}
    assert not issubclass(anyio.run(loop_type, backend_options=_loop_options()), uvloop.Loop)
