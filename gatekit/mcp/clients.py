"""The client connections a gateway serves, and what of the upstream's reaches which of them.

The gateway holds one connection to the upstream server for all its clients, so what the server sends
without being asked is routed here: change notifications and log messages go to every handshake-era
client; a resource's `notifications/resources/updated` only to the clients subscribed to it; and what the
server asks a client (`sampling/createMessage`, `elicitation/create`, `roots/list`) to the client whose
forwarded call is in flight (on that call's stream, over HTTP), or, with no call in flight, to the only
client there is. When which client it is for is not certain, it is refused, never guessed.

>>> clients.track(ctx.session)
>>> with clients.calling(ctx.session, ctx.request_id): ...   # a forwarded call in flight
>>> await clients.ask(types.ListRootsRequest())             # the answer, or `ErrorData` for the server
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import mcp.types as types
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

_BROADCAST = (types.ToolListChangedNotification, types.ResourceListChangedNotification,
              types.PromptListChangedNotification, types.LoggingMessageNotification)
# what the upstream server may ask the client: the capability the client must have declared, the answer's type
_ASKED: dict[type, tuple[str, Any]] = {
    types.CreateMessageRequest: ("sampling", types.CreateMessageResult),
    types.ElicitRequest: ("elicitation", types.ElicitResult),
    types.ListRootsRequest: ("roots", types.ListRootsResult),
}
KEEP = 256  # client connections remembered (HTTP sessions come and go: the latest are kept)


def connection_key(session: Any) -> int:
    """One client connection (the SDK's per-connection object; a request's session is per request)."""
    return id(getattr(session, "_connection", session))


class Clients:
    """The gateway's client connections: who is connected, subscribed to what, and whose call is in flight."""

    def __init__(self) -> None:
        self.sessions: dict[int, Any] = {}  # handshake-era connections, to relay notifications to
        self.subscribers: dict[str, dict[int, Any]] = {}  # resource URI -> the connections subscribed to it
        self.calls: dict[int, tuple[int, Any, Any]] = {}  # forwarded calls: token -> (connection, session, id)

    def track(self, session: Any) -> None:
        """Remember a handshake-era client connection, to relay the upstream's notifications to it."""
        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return  # 2026-era change notifications ride `subscriptions/listen`, which is not relayed
        key = connection_key(session)
        if key not in self.sessions:
            self.sessions[key] = session
            while len(self.sessions) > KEEP:
                self.sessions.pop(next(iter(self.sessions)))

    @contextmanager
    def calling(self, session: Any, request_id: Any) -> Iterator[None]:
        """While a forwarded call is in flight: what the upstream asks meanwhile is for this client."""
        token = object()
        self.calls[id(token)] = (connection_key(session), session, request_id)
        try:
            yield
        finally:
            self.calls.pop(id(token), None)

    def subscribe(self, uri: str, session: Any) -> bool:
        """Record a subscription; whether it is the resource's first (so the gateway subscribes upstream)."""
        subscribers = self.subscribers.setdefault(uri, {})
        first = not subscribers
        subscribers[connection_key(session)] = session
        return first

    def unsubscribe(self, uri: str, session: Any) -> bool:
        """Forget a subscription; whether no client is left subscribed (so the gateway unsubscribes upstream)."""
        subscribers = self.subscribers.get(uri, {})
        subscribers.pop(connection_key(session), None)
        if subscribers:
            return False
        self.subscribers.pop(uri, None)
        return True

    async def notify(self, message: Any) -> None:
        """Relay one of the upstream's notifications to the clients it is for."""
        if isinstance(message, types.ResourceUpdatedNotification):  # to the clients subscribed to it only
            targets = self.subscribers.get(str(message.params.uri), {})
        elif isinstance(message, _BROADCAST):
            targets = self.sessions
        else:
            return
        for key, session in list(targets.items()):
            try:
                with anyio.fail_after(2):
                    await session.send_notification(message)
            except Exception:  # noqa: BLE001  that client is gone: forget it
                self._forget(key)

    def _forget(self, key: int) -> None:
        self.sessions.pop(key, None)
        for uri in [u for u, subscribers in self.subscribers.items() if subscribers.pop(key, None) is not None
                    and not subscribers]:
            del self.subscribers[uri]  # the upstream subscription stays: harmless, and re-used by the next client

    async def ask(self, request: Any) -> Any:
        """Relay the upstream's `sampling/createMessage`, `elicitation/create` or `roots/list` to its client.

        Returns the client's answer, or `ErrorData` for the upstream server: no certain client, a client
        without the capability or without a back channel (2026-07-28), or the client's own error.
        """
        method = request.method
        capability, result_type = _ASKED[type(request)]
        if isinstance(request, types.CreateMessageRequest) and request.params.tools:
            result_type = types.CreateMessageResultWithTools
        target = self.route()
        if target is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message=(
                f"gatekit cannot tell which MCP client `{method}` is for (calls of several clients are in flight, "
                "or several clients are connected and none has a call in flight): not relayed"))
        session, related = target
        caps = session.client_capabilities
        if caps is None or getattr(caps, capability, None) is None:
            return types.ErrorData(code=types.INVALID_REQUEST,
                                   message=f"the MCP client did not declare the `{capability}` capability")
        metadata = ServerMessageMetadata(related_request_id=related) if related is not None else None
        try:
            return await session.send_request(request, result_type, metadata=metadata)
        except NoBackChannelError:
            return types.ErrorData(code=types.INVALID_REQUEST, message=(
                f"the MCP client's connection cannot take `{method}` (the 2026-07-28 protocol has no requests "
                "from server to client, and a gateway run with --json-response answers with JSON bodies only): "
                "not relayed"))
        except MCPError as exc:  # the client refused or failed: the upstream server gets its error as it is
            return exc.error

    def route(self) -> tuple[Any, Any] | None:
        """The (session, related request id) the upstream's request is for, or None when that is not certain."""
        calls = list(self.calls.values())
        if len({key for key, _, _ in calls}) == 1:
            _, session, request_id = calls[-1]
            return session, request_id
        if not calls and len(self.sessions) == 1:
            return next(iter(self.sessions.values())), None
        return None
