"""The gateway end to end: the SDK's own client, through `gatekit mcp proxy` (a subprocess), to a real MCP
server (`toolserver.py`, an `MCPServer`), with escalations going to a real approvals service (`Served`).

A module shares one approvals service and, per transport, one gateway and one client session: the client
lives on an event loop in a background thread (an anyio blocking portal), so sync tests drive it call by
call. Every process started here is stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client, StdioServerParameters
from mcp.types import Implementation

from tests.server.conftest import Served

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOLSERVER = HERE / "toolserver.py"
AGENT, USER, REVIEWER = "mcp-bot", "u-carol", "alice"

POLICY = """\
version: 1
name: mcp-gateway-tests
default: allow
on_error: escalate
tiers:
  standard: {approvals: 1, timeout: 1h}
  brief: {approvals: 1, timeout: 2s}
rules:
  - {id: pay-over-100, tool: pay, action: escalate, tier: standard, when: {args.amount: {gt: 100}}, reason: Payments over 100 need approval}
  - {id: pay-over-10k, tool: pay, action: escalate, tier: brief, when: {args.amount: {gt: 10000}}, reason: Huge payments get two seconds}
  - {id: pay-blocked, tool: pay, action: deny, when: {args.recipient: EVIL}, reason: Blocked recipient EVIL}
  - {id: no-deletes, tool: delete_rows, action: deny, reason: Nobody deletes rows through the gateway}
  - {id: other-servers, tool: "*", action: deny, when: {context.server: {ne: toolserver}}, reason: Unknown MCP server}
  - {id: echo-chatty, tool: echo, action: escalate, mode: shadow, when: {rate: {per: agent, window: 1h, gt: 3}}}
"""


def toolserver_command() -> list[str]:
    return [sys.executable, str(TOOLSERVER)]


def gateway_command(policy: Path, *options: str, upstream: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "gatekit.cli", "mcp", "proxy", "--policy", str(policy), *options]
    return cmd if upstream is None else [*cmd, "--", *upstream]


def environment(marker: Path, credential: str | None = None) -> dict[str, str]:
    """The gateway's environment: where the tool server marks what ran, and the agent credential."""
    env = {**os.environ, "TOOLSERVER_MARKER": str(marker), "PYTHONPATH": str(REPO)}
    if credential is not None:
        env["GATEKIT_AGENT_TOKEN"] = credential
    return env


def ran(marker: Path) -> list[tuple[str, dict[str, Any]]]:
    """What reached the tool server, in order: (tool, arguments)."""
    if not marker.exists():
        return []
    out = []
    for line in marker.read_text().splitlines():
        tool, _, args = line.partition(" ")
        out.append((tool, json.loads(args)))
    return out


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)


class Process:
    """A child process started in its own session, stopped by its PID."""

    def __init__(self, cmd: list[str], env: dict[str, str], *, url_first: bool = False,
                 stderr: Path | None = None) -> None:
        self.stderr_path = stderr
        err = open(stderr, "a") if stderr else subprocess.DEVNULL
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                      env=env, cwd=REPO, start_new_session=True)
        self.url = ""
        if url_first:
            assert self.popen.stdout is not None
            self.url = self.popen.stdout.readline().strip()
            if not self.url.startswith("http"):
                self.stop()
                raise RuntimeError(f"no URL from {cmd}: {self.url!r} {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path and self.stderr_path.exists() else ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


@dataclass
class Session:
    """An SDK client session, driven from sync test code through a blocking portal."""

    portal: BlockingPortal
    client: Client
    name: str
    marker: Path
    log: Path
    progress: list[tuple[float, float | None, str | None]] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)  # notifications the server sent outside any call
    url: str | None = None  # the gateway's, when the client reaches it over HTTP

    def call(self, tool: str, args: dict[str, Any], *, progress: bool = False) -> Any:
        return self.portal.call(self._call, tool, args, progress)

    def start(self, tool: str, args: dict[str, Any], *, progress: bool = False) -> Future[Any]:
        """The call in the background: cancel the future to cancel the call (notifications/cancelled)."""
        return self.portal.start_task_soon(self._call, tool, args, progress)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, self.client, *args)

    async def _call(self, tool: str, args: dict[str, Any], progress: bool) -> Any:
        async def record(value: float, total: float | None, message: str | None) -> None:
            self.progress.append((value, total, message))

        return await self.client.call_tool(tool, args, progress_callback=record if progress else None)

    def ran(self) -> list[tuple[str, dict[str, Any]]]:
        return ran(self.marker)

    def logged(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in log_lines(self.log) if all(_get(r, k) == v for k, v in match.items())]


def _get(record: dict[str, Any], key: str) -> Any:
    value: Any = record
    for part in key.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@contextmanager
def session(portal: BlockingPortal, server: Any, *, name: str, marker: Path, log: Path, mode: str = "auto",
            client_info: Implementation | None = None) -> Iterator[Session]:
    messages: list[Any] = []

    async def keep(message: Any) -> None:
        messages.append(message)

    client = Client(server, mode=mode, message_handler=keep, client_info=client_info)
    with portal.wrap_async_context_manager(client) as entered:
        yield Session(portal, entered, name, marker, log, messages=messages,
                      url=server if isinstance(server, str) else None)


class Reviewer:
    """Alice, voting at the service from a thread: approves (or denies) the first pending call that matches."""

    def __init__(self, served: Served, credential: str) -> None:
        self.client = served.client(credential)

    def pending(self, recipient: str) -> dict[str, Any] | None:
        for request in self.client.list("pending"):
            if request["action"]["args"].get("recipient") == recipient:
                return request
        return None

    def vote_when_filed(self, recipient: str, decision: str = "approve") -> Future[dict[str, Any]]:
        done: Future[dict[str, Any]] = Future()

        def work() -> None:
            try:
                request = wait_for(lambda: self.pending(recipient), timeout=30, every=0.05)
                done.set_result(self.client.vote(request["id"], decision, request["digest"], reason="test"))
            except BaseException as exc:  # noqa: BLE001  reported to the test through the future
                done.set_exception(exc)

        threading.Thread(target=work, daemon=True).start()
        return done


@dataclass
class World:
    """What a module shares: the approvals service, its principals and a scratch directory."""

    served: Served
    credential: str
    reviewer: Reviewer
    root: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("mcp")
    served = Served(root, POLICY)
    try:
        credential = served.add("agent", AGENT)
        reviewer = Reviewer(served, served.add("reviewer", REVIEWER, "finance"))
        yield World(served, credential, reviewer, root)
    finally:
        served.kill()


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as p:
        yield p


def service_options(world: World, *extra: str) -> list[str]:
    return ["--approvals", world.served.url, "--agent", AGENT, "--user", USER, "--progress-interval", "0.2", *extra]


@contextmanager
def stdio_session(portal: BlockingPortal, world: World, name: str, *options: str, mode: str = "auto",
                  upstream: list[str] | None = None, http_upstream: str | None = None,
                  service: bool = True, client_info: Implementation | None = None) -> Iterator[Session]:
    """A client whose server is the gateway over stdio (the client starts it, as Claude Desktop would).

    The gateway's upstream: `upstream` (a command; default the tool server) or `http_upstream` (a URL).
    """
    marker, log = world.root / f"{name}.marker", world.root / f"{name}.jsonl"
    opts = [*service_options(world), *options] if service else list(options)
    if http_upstream is not None:
        cmd = gateway_command(world.served.policy_path, "--log", str(log), *opts, "--upstream", http_upstream)
    else:
        cmd = gateway_command(world.served.policy_path, "--log", str(log), *opts,
                              upstream=upstream or toolserver_command())
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=environment(marker, world.credential),
                                   cwd=str(REPO))
    with session(portal, params, name=name, marker=marker, log=log, mode=mode, client_info=client_info) as s:
        yield s


@contextmanager
def http_gateway(world: World, name: str, *options: str, upstream: list[str] | None = None,
                 service: bool = True) -> Iterator[tuple[Process, Path, Path]]:
    """The gateway serving Streamable HTTP on a free loopback port (its URL: `process.url`)."""
    marker, log = world.root / f"{name}.marker", world.root / f"{name}.jsonl"
    opts = [*service_options(world), *options] if service else list(options)
    cmd = gateway_command(world.served.policy_path, "--listen", "127.0.0.1:0", "--log", str(log), *opts,
                          upstream=upstream if upstream is not None else toolserver_command())
    process = Process(cmd, environment(marker, world.credential), url_first=True,
                      stderr=world.root / f"{name}.stderr")
    try:
        yield process, marker, log
    finally:
        process.stop()
