"""The gateway's transports under the SDK: message streams over lines, the child process, HTTP keep-alive."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from gatekit.mcp import upstream as upstream_module
from gatekit.mcp.stdio import ChildProcess, message_streams
from gatekit.mcp.upstream import KeepAlive, http_transport
from tests.mcp.conftest import World, http_gateway, session, text
from tests.mcp.toolserver import server as toolserver

PING = '{"jsonrpc":"2.0","id":7,"method":"ping"}\n'


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = iter(lines)

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        try:
            return next(self.lines)
        except StopIteration:
            raise StopAsyncIteration from None


class _Out:
    def __init__(self, fail: bool = False) -> None:
        self.text: list[str] = []
        self.fail = fail

    async def write(self, text: str) -> None:
        if self.fail:
            raise BrokenPipeError(32, "Broken pipe")
        for part in (text[: len(text) // 2], text[len(text) // 2:]):  # a writer that yields mid-line
            self.text.append(part)
            await anyio.sleep(0)

    async def flush(self) -> None:
        await anyio.sleep(0)


def test_lines_become_the_sdks_messages_and_a_bad_line_an_exception_the_dispatcher_reports() -> None:
    async def main() -> list[Any]:
        read, _ = message_streams(_Lines([PING, "not json\n", '{"jsonrpc":"2.0","method":"notifications/initialized"}']),
                                  _Out())
        async with read:
            return [item async for item in read]

    first, bad, last = anyio.run(main)
    assert isinstance(first, SessionMessage) and isinstance(first.message, types.JSONRPCRequest)
    assert (first.message.id, first.message.method) == (7, "ping")
    assert isinstance(bad, Exception)
    assert isinstance(last.message, types.JSONRPCNotification)


def test_messages_are_written_one_whole_line_each_even_when_sent_concurrently() -> None:
    out = _Out()

    async def main() -> None:
        _, write = message_streams(_Lines([]), out)
        async with anyio.create_task_group() as tg:
            for i in range(20):
                message = types.JSONRPCNotification(jsonrpc="2.0", method="notifications/message",
                                                    params={"level": "info", "data": "x" * i})
                tg.start_soon(write.send, SessionMessage(message))
        await write.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await write.send(SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="x")))

    anyio.run(main)
    lines = "".join(out.text).splitlines()
    assert sorted(len(json.loads(line)["params"]["data"]) for line in lines) == list(range(20))


def test_a_write_to_a_reader_that_went_away_is_a_broken_stream_for_the_sdk() -> None:
    async def main() -> None:
        _, write = message_streams(_Lines([]), _Out(fail=True))
        with pytest.raises(anyio.BrokenResourceError):
            await write.send(SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="x")))
        with pytest.raises(anyio.ClosedResourceError):
            await write.send(SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="x")))

    anyio.run(main)


def test_the_child_process_transport_serves_a_real_server_and_stops_it() -> None:
    params = StdioServerParameters(command=sys.executable, args=["tests/mcp/toolserver.py"], cwd=os.getcwd())
    transport = ChildProcess(params)

    async def main() -> str:
        async with Client(transport, mode="legacy") as client:
            result = await client.call_tool("echo", {"text": "hi"})
        return result.content[0].text

    assert anyio.run(main, backend_options={"use_uvloop": True}) == "hi"
    assert transport.process is not None and transport.process.returncode is not None


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_a_server_that_closes_its_stdout_is_gone_at_once_and_twenty_of_them_leak_no_descriptor(uvloop: bool) -> None:
    """The server closes its stdout and sleeps: the reader sees the end at once (not when the process exits),
    the transport ends it within its grace, and starting and stopping twenty leaves this process's open file
    descriptors as they were (a leaked pipe per restart would starve a long-running gateway)."""
    code = "import os, sys, time; sys.stdout.write('half'); sys.stdout.flush(); os.close(1); time.sleep(30)"

    async def once() -> float:
        transport = ChildProcess(StdioServerParameters(command=sys.executable, args=["-c", code]), grace=0.1,
                                 kill_after=0.5)
        started = time.monotonic()
        async with transport as (read, _):
            first = await read.receive()  # the half line, read at the end: not JSON-RPC
            assert isinstance(first, Exception)
            with pytest.raises(anyio.EndOfStream):
                await read.receive()
            ended = time.monotonic() - started
        assert transport.process is not None and transport.process.returncode is not None
        return ended

    async def main() -> tuple[int, int, float]:
        await once()  # the loop's own descriptors (its self-pipe, the child watcher) exist from here on
        before = len(os.listdir("/proc/self/fd"))
        slowest = max([await once() for _ in range(20)])
        return before, len(os.listdir("/proc/self/fd")), slowest

    before, after, slowest = anyio.run(main, backend_options={"use_uvloop": uvloop})
    assert after == before
    assert slowest < 5  # the server sleeps 30 s: the end came from its stdout, not its exit


DEAF = r"""
import json, os, sys, time
m = json.loads(sys.stdin.readline())
print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"protocolVersion": m["params"]["protocolVersion"],
      "capabilities": {"tools": {}}, "serverInfo": {"name": "deaf", "version": "0"}}}), flush=True)
sys.stdin.readline()  # notifications/initialized
os.close(0)  # stops listening: its stdout stays open and it lives on
time.sleep(30)
"""


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_a_server_that_closes_its_stdin_breaks_the_connection_for_the_next_request(uvloop: bool) -> None:
    """The next request fails as a broken connection (what makes the gateway restart the server and answer
    with an error result), not with the loop's RuntimeError about a closed transport."""
    params = StdioServerParameters(command=sys.executable, args=["-c", DEAF])

    async def main() -> BaseException | None:
        async with Client(ChildProcess(params, grace=0.2, kill_after=0.5), mode="legacy") as client:
            await anyio.sleep(0.3)
            try:
                await client.session.send_ping()
            except BaseException as exc:  # noqa: BLE001  the kind is what is tested
                return exc
        return None

    raised = anyio.run(main, backend_options={"use_uvloop": uvloop})
    assert isinstance(raised, (anyio.BrokenResourceError, MCPError)), repr(raised)


def test_a_child_that_ignores_its_stdin_closing_and_sigterm_is_killed_with_its_process_group(tmp_path: Path) -> None:
    # the server's child (a grandchild) must go too: the whole process group is ended
    pid_file = tmp_path / "grandchild"
    code = ("import pathlib, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
            "pathlib.Path(sys.argv[1]).write_text(str(p.pid)); time.sleep(60)")
    transport = ChildProcess(StdioServerParameters(command=sys.executable, args=["-c", code, str(pid_file)]),
                             grace=0.2, kill_after=0.2)

    async def main() -> int:
        async with transport:
            while not pid_file.exists() or not pid_file.read_text():
                await anyio.sleep(0.01)
        return int(pid_file.read_text())

    grandchild = anyio.run(main)
    assert transport.process.returncode == -9  # type: ignore[union-attr]
    for _ in range(100):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        anyio.run(anyio.sleep, 0.02)
    else:
        raise AssertionError("the server's own child survived")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_upstream_http_client_keeps_its_connection_across_calls() -> None:
    """The SDK's client closes each SSE response unread to its end; without `KeepAlive` every call (every
    POST) would arrive on a new connection (a new client port)."""
    import uvicorn

    ports: list[int] = []
    app = toolserver.streamable_http_app(host="127.0.0.1")

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            ports.append(scope["client"][1])
        await app(scope, receive, send)

    port = _free_port()

    async def main() -> list[str]:
        web = uvicorn.Server(uvicorn.Config(counting, host="127.0.0.1", port=port, log_level="warning",
                                            lifespan="on"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(web.serve)
            while not web.started:
                await anyio.sleep(0.01)
            texts = []
            async with Client(http_transport(f"http://127.0.0.1:{port}/mcp"), mode="legacy") as client:
                for i in range(8):
                    result = await client.call_tool("echo", {"text": f"hi {i}"})
                    texts.append(result.content[0].text)
            web.should_exit = True
        return texts

    assert anyio.run(main) == [f"hi {i}" for i in range(8)]
    assert len(ports) >= 10  # initialize, initialized, the calls
    assert len(set(ports)) <= 2, f"{len(set(ports))} connections for {len(ports)} POSTs"


def test_a_post_body_that_does_not_end_is_closed_after_the_drain_limit(monkeypatch) -> None:
    monkeypatch.setattr(upstream_module, "DRAIN_SECONDS", 0.1)
    closed: list[bool] = []

    class Endless(httpx2.AsyncByteStream):
        async def __aiter__(self) -> Any:
            while True:
                yield b"data: x\n\n"
                await asyncio.sleep(0.01)

        async def aclose(self) -> None:
            closed.append(True)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=Endless())

    async def main() -> float:
        async with httpx2.AsyncClient(transport=KeepAlive(httpx2.MockTransport(handler))) as http:
            async with http.stream("POST", "http://upstream/mcp") as response:
                async for _ in response.aiter_bytes():
                    break
                started = anyio.current_time()
                await response.aclose()
                return anyio.current_time() - started

    took = anyio.run(main)
    assert closed == [True] and 0.05 < took < 1.0


def test_with_json_responses_calls_are_answered_with_json_bodies_and_an_escalated_one_still_runs(
        world: World, portal: Any) -> None:
    """`--json-response`: one JSON body per request (so the client keeps its connection); allowed, denied and
    escalated calls behave as with SSE, except that the wait for approval sends no progress."""
    with http_gateway(world, "json", "--json-response") as (process, marker, log):
        raw = httpx2.post(process.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
            headers={"accept": "application/json, text/event-stream"})
        assert raw.headers["content-type"].startswith("application/json")
        assert raw.json()["result"]["serverInfo"]["name"] == "toolserver"
        with session(portal, process.url, name="json", marker=marker, log=log, mode="legacy") as s:
            assert text(s.call("echo", {"text": "hi json"})) == "hi json"
            assert s.call("pay", {"amount": 5, "recipient": "EVIL"}).is_error
            recipient = "ACME-json"
            vote = world.reviewer.vote_when_filed(recipient)
            result = s.call("pay", {"amount": 250, "recipient": recipient}, progress=True)
            assert not result.is_error and text(result) == f"paid 250.00 to {recipient}"
            vote.result(timeout=5)
            assert s.progress == []  # a JSON body carries the response only
            assert [r[0] for r in s.ran()] == ["echo", "pay"]
            [line] = s.logged(tool="pay", args__recipient=recipient)
            assert (line["decision"], line["outcome"]) == ("escalate", "executed")
