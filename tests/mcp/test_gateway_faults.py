"""The gateway when things go wrong: malformed input from either side, the server crashing with restarts off,
a server that cannot start, the client going away while a call waits, usage errors. In every case: no call
reaches the server undecided. (Oversized arguments and a late approval: test_gateway_modes.py; a crash with
restarts, a cancelled wait: test_gateway.py.)"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp.types import Implementation

from tests.mcp.conftest import (HERE, REPO, World, environment, gateway_command, log_lines, ran, service_options,
                                stdio_session, text, toolserver_command, wait_for)

HANDSHAKE = "2025-11-25"


class Raw:
    """The gateway over stdio, spoken to by hand: to send what no SDK client would send."""

    def __init__(self, cmd: list[str], env: dict[str, str], stderr: Path) -> None:
        self.stderr_path = stderr
        self.popen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(stderr, "w"),
                                      env=env, cwd=REPO, text=True, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.popen.stdin.flush()

    def answer(self, mid: Any, timeout: float = 30) -> dict[str, Any]:
        """The response to request `mid` (notifications in between are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the gateway closed its stdout; stderr: {self.stderr()}")
            message = json.loads(line)
            if "id" in message and message.get("id") == mid and "method" not in message:
                return message

    def request(self, mid: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.send({"jsonrpc": "2.0", "id": mid, "method": method, **({"params": params} if params is not None else {})})
        return self.answer(mid)

    def initialize(self) -> dict[str, Any]:
        answer = self.request(0, "initialize", {"protocolVersion": HANDSHAKE, "capabilities": {},
                                                "clientInfo": {"name": "raw-test", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


def raw_gateway(world: World, name: str, *options: str, upstream: list[str] | None = None,
                credential: str | None = None) -> tuple[Raw, Path, Path]:
    marker, log = world.root / f"{name}.marker", world.root / f"{name}.jsonl"
    cmd = gateway_command(world.served.policy_path, "--log", str(log), *options,
                          upstream=upstream or toolserver_command())
    return Raw(cmd, environment(marker, credential), world.root / f"{name}.stderr"), marker, log


def test_malformed_input_from_the_client_is_answered_and_the_gateway_keeps_serving(world: World) -> None:
    gw, marker, log = raw_gateway(world, "malformed")
    try:
        assert gw.initialize()["result"]["serverInfo"]["name"] == "toolserver"
        gw.send("this is not JSON {")
        gw.send(json.dumps({"jsonrpc": "2.0", "id": 1}))  # neither a request nor a response
        bad_name = gw.request(2, "tools/call", {"name": 3, "arguments": {}})
        assert bad_name["error"]["code"] == -32602
        bad_args = gw.request(3, "tools/call", {"name": "echo", "arguments": "not an object"})
        assert bad_args["error"]["code"] == -32602
        unknown = gw.request(4, "no/such/method", {})
        assert unknown["error"]["code"] == -32601
        ok = gw.request(5, "tools/call", {"name": "echo", "arguments": {"text": "still here"}})
        assert ok["result"]["content"][0]["text"] == "still here"
        assert ran(marker) == [("echo", {"text": "still here"})]  # nothing malformed reached the server
        assert [r["tool"] for r in log_lines(log)] == ["echo"]
    finally:
        gw.stop()


def test_a_server_that_writes_garbage_is_skipped_and_its_name_is_context_server(world: World, portal) -> None:
    bad = [sys.executable, str(HERE / "badserver.py")]  # every answer it writes comes after two bad lines
    with stdio_session(portal, world, "badserver", upstream=bad, service=False, mode="legacy",
                       client_info=Implementation(name="desktop-client", version="1")) as s:
        assert [t.name for t in s.run(lambda c: c.list_tools()).tools] == ["echo"]
        result = s.call("echo", {"text": "hi"})
        assert result.is_error and "Unknown MCP server" in text(result)  # other-servers: context.server != toolserver
        [line] = s.logged()
        assert line["context"] == {"server": "badserver"} and line["server"] == "badserver"
        assert line["agent"] == "desktop-client"  # no --agent and no approvals service: the client's name


def test_with_restarts_off_a_crash_is_answered_then_the_gateway_stops_with_a_clear_message(world: World) -> None:
    gw, marker, log = raw_gateway(world, "norestart", "--restarts", "0")
    try:
        gw.initialize()
        crashed = gw.request(1, "tools/call", {"name": "crash", "arguments": {}})
        assert crashed["result"]["isError"] is True
        assert "closed the connection during the call" in crashed["result"]["content"][0]["text"]
        assert gw.popen.wait(timeout=20) == 7  # any other error (README: exit codes)
        assert "not restarting it (--restarts 0)" in gw.stderr()
        assert log_lines(log)[0]["outcome"] == "failed"
    finally:
        gw.stop()


def test_a_server_that_cannot_start_is_a_clear_error(world: World) -> None:
    cmd = gateway_command(world.served.policy_path, upstream=[str(world.root / "no-such-server")])
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=environment(
        world.root / "x.marker"), cwd=REPO, timeout=60)
    assert done.returncode == 7
    assert "cannot connect to the upstream MCP server" in done.stderr and "no-such-server" in done.stderr


def test_the_client_going_away_while_a_call_waits_withdraws_it(world: World, portal) -> None:
    recipient = f"Gone-{uuid.uuid4().hex[:6]}"
    with stdio_session(portal, world, "disconnect") as s:
        s.start("pay", {"amount": 700, "recipient": recipient})
        request = wait_for(lambda: world.reviewer.pending(recipient))
    # the client closed the gateway's stdin (and the gateway went away with its server)
    shown = wait_for(lambda: (r := world.reviewer.client.get(request["id"]))["status"] != "pending" and r)
    assert shown["status"] == "withdrawn"
    assert not [r for r in s.ran() if r[1].get("recipient") == recipient]
    assert s.logged(args__recipient=recipient)[0]["outcome"] == "withdrawn"


def test_sigterm_withdraws_the_calls_waiting_for_approval_and_exits_cleanly(world: World) -> None:
    recipient = f"Stopped-{uuid.uuid4().hex[:6]}"
    gw, marker, log = raw_gateway(world, "sigterm", *service_options(world), credential=world.credential)
    try:
        gw.initialize()
        gw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                 "params": {"name": "pay", "arguments": {"amount": 800, "recipient": recipient}}})
        request = wait_for(lambda: world.reviewer.pending(recipient))
        gw.popen.send_signal(signal.SIGTERM)  # an operator stops the gateway
        assert gw.popen.wait(timeout=20) == 0
        assert world.reviewer.client.get(request["id"])["status"] == "withdrawn"
        assert log_lines(log)[0]["outcome"] == "withdrawn" and ran(marker) == []
    finally:
        gw.stop()


def test_listen_stays_on_loopback_unless_allowed(gatekit_cli, world: World) -> None:
    code, _, err = gatekit_cli("mcp", "proxy", "--policy", world.served.policy_path, "--listen", "0.0.0.0:0",
                               "--", "true")
    assert code == 2 and "refusing to listen on `0.0.0.0`" in err  # a usage error


def test_usage_errors_name_the_missing_piece(gatekit_cli, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = world.served.policy_path
    code, _, err = gatekit_cli("mcp", "proxy", "--policy", policy)
    assert code == 2 and "COMMAND after `--`, or --upstream URL" in err
    monkeypatch.delenv("GATEKIT_AGENT_TOKEN", raising=False)
    code, _, err = gatekit_cli("mcp", "proxy", "--policy", policy, "--approvals", world.served.url, "--", "true")
    assert code == 2 and "$GATEKIT_AGENT_TOKEN" in err
    code, _, err = gatekit_cli("mcp", "proxy", "--policy", world.root / "missing.yaml", "--", "true")
    assert code == 3



def test_a_server_that_closes_its_stdout_mid_answer_and_stays_alive_fails_the_call_closed(world: World) -> None:
    """The server answers with a forged id and junk, then half an answer, then closes its stdout but does not
    exit: the pending call gets an error result (not a hang, not the forged answer) and, with restarts off, the
    gateway stops with its clear message instead of waiting on a process whose pipe is gone."""
    policy = world.root / "allow-all.yaml"
    policy.write_text("version: 1\nname: allow-all\ndefault: allow\nrules: []\n")
    log = world.root / "hangup.jsonl"
    cmd = gateway_command(policy, "--log", str(log), "--restarts", "0",
                          upstream=[sys.executable, str(HERE / "badserver.py"), "--hang-up"])
    gw = Raw(cmd, environment(world.root / "hangup.marker"), world.root / "hangup.stderr")
    try:
        gw.initialize()
        started = time.monotonic()
        answer = gw.request(1, "tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        assert time.monotonic() - started < 6  # well before the server's 8 s sleep ends: EOF is the signal
        assert answer["result"]["isError"] is True
        assert "closed the connection during the call" in answer["result"]["content"][0]["text"]
        assert gw.popen.wait(timeout=20) == 7
        assert "not restarting it (--restarts 0)" in gw.stderr()
        # each bad line is one line of warning: two before each answer, then the half answer
        assert gw.stderr().count("not JSON-RPC (skipped)") == 5 and "validation error" not in gw.stderr()
        [line] = log_lines(log)
        assert line["tool"] == "echo" and line["decision"] == "allow" and line["outcome"] == "failed"
    finally:
        gw.stop()
