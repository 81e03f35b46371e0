"""What the client is told about a call the gateway did not simply forward: a refusal, a failure, and
progress while the call waits for approval.

A refusal is a tool result, not a protocol error, so the model reads why and can change course:

>>> refusal(denied).is_error
True
>>> refusal(denied).meta["gatekit"]["rules"]
['pay-blocked']
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp.types as types

from gatekit.enforce.gate import Denied

logger = logging.getLogger("gatekit.mcp")
META_KEY = "gatekit"  # where a refusal's code, decision and rules ride in the result's `_meta`


class Progress:
    """Progress notifications for one call: the gateway's own while it waits, then the upstream's, relayed.

    Values only increase (the protocol requires it): the upstream's are shifted past the gateway's own.
    Nothing is sent when the client gave no progress token (the SDK drops it).
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.sent = 0.0
        self.base = 0.0

    async def report(self, message: str) -> None:
        self.sent += 1
        await self._send(self.sent, None, message)

    def start_relay(self) -> None:
        self.base = self.sent

    async def relay(self, progress: float, total: float | None, message: str | None) -> None:
        value = self.base + progress
        if value <= self.sent and self.sent > 0:
            return
        self.sent = value
        await self._send(value, None if total is None else self.base + total, message)

    async def _send(self, value: float, total: float | None, message: str | None) -> None:
        try:
            with anyio.fail_after(2):
                await self.session.report_progress(value, total, message)
        except Exception as exc:  # noqa: BLE001  progress is a courtesy: never fail a call for it
            logger.debug("progress notification not sent: %s", exc)


def refusal(exc: Denied) -> types.CallToolResult:
    """A refused call as the model reads it: a tool result with `isError`, the reason, and the decision in `_meta`."""
    decision = exc.decision
    meta = {"code": exc.code, "decision": decision.decision, "rules": list(decision.rules),
            "reasons": list(decision.reasons), "tier": decision.tier}
    request = exc.request
    rid = request.get("id") if isinstance(request, dict) else getattr(request, "id", None)
    if rid is not None:
        meta["request_id"] = rid
    return error_result(f"gatekit refused this call: {exc}", meta)


def error_result(text: str, meta: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult.model_validate({"content": [{"type": "text", "text": text}], "isError": True,
                                                "_meta": {META_KEY: meta}})
