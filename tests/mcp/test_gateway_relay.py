"""What the upstream server asks the client, and its resource subscriptions, relayed through the gateway.

End to end, over stdio and over Streamable HTTP: the SDK's own `Client` (handshake protocol, with sampling,
elicitation and roots callbacks) talks to `gatekit mcp proxy`, whose upstream is the real `MCPServer` in
`toolserver.py`. Its tools call `ctx.session.create_message`, `elicit` and `list_roots` mid-call; the
client's callbacks answer, and the answers reach the tool. A subscribed resource's update reaches the
subscribed client only; list-changed notifications reach every client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal
from mcp import Client, StdioServerParameters, types
from mcp.shared.exceptions import MCPError

from tests.mcp.conftest import (REPO, World, environment, gateway_command, http_gateway, log_lines, ran, text,
                                toolserver_command, wait_for)


pytestmark = pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")


@dataclass
class Asked:
    """A client that answers what the server asks, and keeps what it was asked and sent."""

    sampled: list[types.CreateMessageRequestParams] = field(default_factory=list)
    elicited: list[types.ElicitRequestParams] = field(default_factory=list)
    rooted: int = 0
    messages: list[Any] = field(default_factory=list)

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        self.sampled.append(params)
        question = params.messages[0].content.text
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text=f"42 ({question})"))

    async def elicitation(self, context: Any, params: Any) -> Any:
        self.elicited.append(params)
        if "refuse" in params.message:
            return types.ErrorData(code=types.INVALID_REQUEST, message="the user closed the dialog")
        return types.ElicitResult(action="accept", content={"ok": True})

    async def roots(self, context: Any) -> Any:
        self.rooted += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    async def message(self, message: Any) -> None:
        self.messages.append(message)

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]


@dataclass
class Relayed:
    portal: BlockingPortal
    client: Client
    asked: Asked
    marker: Any
    log: Any

    def run(self, fn: Any, *args: Any) -> Any:
        return self.portal.call(fn, self.client, *args)

    def call(self, tool: str, args: dict[str, Any]) -> Any:
        return self.run(lambda c: c.call_tool(tool, args))


@contextmanager
def relayed_client(portal: BlockingPortal, server: Any, marker: Any, log: Any, *,
                   callbacks: bool = True) -> Iterator[Relayed]:
    asked = Asked()
    extra = dict(sampling_callback=asked.sampling, elicitation_callback=asked.elicitation,
                 list_roots_callback=asked.roots) if callbacks else {}
    client = Client(server, mode="legacy", message_handler=asked.message, **extra)
    with portal.wrap_async_context_manager(client) as entered:
        yield Relayed(portal, entered, asked, marker, log)


@contextmanager
def stdio_relayed(portal: BlockingPortal, world: World, name: str, **kw: Any) -> Iterator[Relayed]:
    marker, log = world.root / f"{name}.marker", world.root / f"{name}.jsonl"
    cmd = gateway_command(world.served.policy_path, "--log", str(log), upstream=toolserver_command())
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=environment(marker), cwd=str(REPO))
    with relayed_client(portal, params, marker, log, **kw) as r:
        yield r


@pytest.fixture(scope="module", params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def http(world: World, transport: str) -> Iterator[Any]:
    if transport != "http":
        yield None
        return
    with http_gateway(world, "relay-http", service=False) as started:
        yield started


@pytest.fixture(scope="module")
def gw(world: World, portal: BlockingPortal, transport: str, http: Any) -> Iterator[Relayed]:
    if transport == "stdio":
        with stdio_relayed(portal, world, "relay-stdio") as r:
            yield r
    else:
        process, marker, log = http
        with relayed_client(portal, process.url, marker, log) as r:
            yield r


def test_sampling_mid_call_is_answered_by_the_clients_callback(gw: Relayed) -> None:
    result = gw.call("ask", {"question": "what is six times seven"})
    assert not result.is_error, text(result)
    assert text(result) == "the model said: 42 (what is six times seven)"
    [asked] = gw.asked.sampled
    assert asked.max_tokens == 50 and asked.messages[0].content.text == "what is six times seven"
    [line] = [r for r in log_lines(gw.log) if r["tool"] == "ask"]  # the call itself was decided and logged
    assert (line["decision"], line["outcome"]) == ("allow", "executed")


def test_elicitation_mid_call_is_answered_by_the_client_and_a_refusal_reaches_the_server(gw: Relayed) -> None:
    assert text(gw.call("confirm", {"question": "go ahead?"})) == 'accept: {"ok": true}'
    with pytest.raises(MCPError, match="the user closed the dialog"):  # the client's error, to the server, back
        gw.call("confirm", {"question": "please refuse"})
    assert [p.message for p in gw.asked.elicited] == ["go ahead?", "please refuse"]


def test_roots_are_listed_by_the_client(gw: Relayed) -> None:
    result = gw.call("roots", {})
    assert result.structured_content == {"result": ["file:///work/project"]}
    assert gw.asked.rooted == 1


def test_a_subscribed_resource_update_reaches_the_client(gw: Relayed) -> None:
    uri = "notes://readme"
    assert text(gw.call("touch", {"uri": uri})) == "not subscribed"  # nobody subscribed yet: upstream had none
    gw.run(lambda c: c.subscribe_resource(uri))
    assert text(gw.call("touch", {"uri": uri})) == "updated"
    [update] = wait_for(lambda: gw.asked.of(types.ResourceUpdatedNotification))
    assert str(update.params.uri) == uri
    wait_for(lambda: len(gw.asked.of(types.ResourceListChangedNotification)) >= 2)  # both touches
    gw.run(lambda c: c.unsubscribe_resource(uri))
    assert text(gw.call("touch", {"uri": uri})) == "not subscribed"  # the last subscriber left: upstream too


def test_the_clients_roots_change_reaches_the_server(gw: Relayed) -> None:
    before = gw.asked.rooted
    gw.portal.call(gw.client.session.send_notification, types.RootsListChangedNotification())
    assert gw.call("roots", {}).structured_content == {"result": ["file:///work/project"]}  # still serving
    assert gw.asked.rooted == before + 1


def test_a_denied_call_asks_the_client_nothing(gw: Relayed) -> None:
    sampled = len(gw.asked.sampled)
    result = gw.call("delete_rows", {"table": "orders"})
    assert result.is_error and "Nobody deletes rows" in text(result)
    assert len(gw.asked.sampled) == sampled and "delete_rows" not in [t for t, _ in ran(gw.marker)]


def test_a_client_without_the_capability_gets_the_server_an_error_not_a_hang(world: World,
                                                                              portal: BlockingPortal) -> None:
    with stdio_relayed(portal, world, "relay-bare", callbacks=False) as bare:
        with pytest.raises(MCPError, match="did not declare the `sampling` capability"):  # the server's error
            bare.call("ask", {"question": "anyone there"})
        assert [t for t, _ in ran(bare.marker)] == ["ask"]


def test_over_http_updates_reach_only_the_subscriber_and_requests_only_the_caller(world: World,
                                                                                  portal: BlockingPortal) -> None:
    """Two clients share one gateway (over HTTP): each gets what is its own, and nothing of the other's."""
    uri = "notes://shared"
    with http_gateway(world, "relay-two", service=False) as (process, marker, log), \
            relayed_client(portal, process.url, marker, log) as one, \
            relayed_client(portal, process.url, marker, log) as two:
        one.run(lambda c: c.subscribe_resource(uri))
        two.run(lambda c: c.list_tools())  # known to the gateway, not subscribed
        assert text(two.call("touch", {"uri": uri})) == "updated"
        wait_for(lambda: one.asked.of(types.ResourceUpdatedNotification))
        wait_for(lambda: two.asked.of(types.ResourceListChangedNotification))  # list changes reach everyone
        assert not two.asked.of(types.ResourceUpdatedNotification)
        # a sampling request during two's call goes to two, on that call's stream, not to one
        assert text(two.call("ask", {"question": "whose"})) == "the model said: 42 (whose)"
        assert [len(one.asked.sampled), len(two.asked.sampled)] == [0, 1]
