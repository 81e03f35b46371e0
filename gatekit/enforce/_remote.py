"""A gate's escalations through the approvals service: file, wait, verify the token, consume it, run once.

Whatever goes wrong (the service unreachable past the request's time, refusing, answering garbage, a
token that does not verify for exactly this call and policy) ends in `Denied`, never in running the call.
Transient failures (the service restarting) are retried until the request's own deadline, so a restart
of the service loses no approval and, with the consume's idempotency key, runs no call twice.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from gatekit.action import Action, parse_ts
from gatekit.enforce.client import ServiceError
from gatekit.enforce.tokens import TokenRefused, action_digest, verify_approval
from gatekit.policy.decision import Decision

from gatekit.enforce.gate import Pending

if TYPE_CHECKING:
    from gatekit.enforce.gate import Gate

T = TypeVar("T")
REFUSED = ("denied", "timed_out", "expired", "revoked", "withdrawn")
_MESSAGES = {
    "denied": "was denied by a reviewer",
    "timed_out": "was not approved in time: denied",
    "expired": "was approved but the approval expired before it ran",
    "revoked": "had its approval revoked (the policy changed)",
    "withdrawn": "was withdrawn before it was decided",
    "executed": "was already run: an approval is used once",
}


def submit(gate: Gate, act: Action, decision: Decision, claimed: dict[str, Any]) -> ServicePending:
    from gatekit.enforce.gate import Denied

    record = act.to_record()
    submission = {
        "action": {k: record[k] for k in ("tool", "agent", "session", "user", "args", "context", "ts")},
        "claimed": claimed, "fingerprint": gate.policy.fingerprint, "timeout": gate.timeout,
        "decision": {"rules": list(decision.rules), "reasons": list(decision.reasons), "tier": decision.tier},
    }
    try:
        digest = action_digest(act)
    except ValueError as exc:
        raise Denied(f"`{act.tool}` cannot be sent for approval: {exc}", decision, "malformed") from exc
    try:
        request = gate.service.submit(submission)  # type: ignore[union-attr]
    except ServiceError as exc:
        code = exc.code if exc.code in ("fingerprint", "agent_mismatch", "user_not_allowed", "context_mismatch") \
            else "error"
        raise Denied(f"`{act.tool}` needs approval but the approvals service refused it: {exc}"
                     if code != "error" else f"`{act.tool}` needs approval but the approvals service failed: {exc}",
                     decision, code) from exc
    if request.get("digest") != digest:
        raise Denied(f"`{act.tool}`: the approvals service filed another call than this one", decision, "error")
    if request["status"] == "denied":
        raise Denied(f"`{act.tool}` denied by the approvals service: {request.get('note')}", decision, "policy")
    return ServicePending(gate, act, decision, request)


def resume(gate: Gate, request_id: str) -> ServicePending:
    from gatekit.enforce.gate import Denied

    try:
        request = gate.service.get(request_id)  # type: ignore[union-attr]
    except ServiceError as exc:
        raise Denied(f"request `{request_id}` cannot be read from the approvals service: {exc}",
                     Decision("deny"), "error") from exc
    try:
        act = Action.from_record({**request["action"], "action_id": request["id"]})
        decision = Decision("escalate", tuple(request.get("rules", ())), (), request.get("tier"),
                            tuple(request.get("reasons", ())))
    except (KeyError, TypeError, ValueError) as exc:
        raise Denied(f"request `{request_id}`: the approvals service answered it without a readable call ({exc})",
                     Decision("deny"), "error") from exc
    return ServicePending(gate, act, decision, request)


class ServicePending(Pending):
    """An escalated call filed with the approvals service: `Pending`'s interface, the service's rules."""

    def __init__(self, gate: Gate, action: Action, decision: Decision, request: dict[str, Any]) -> None:
        self.gate, self.action, self.decision = gate, action, decision
        self.request = request  # type: ignore[assignment]  the service's JSON view of the request
        self._key = "c-" + secrets.token_hex(16)  # this handle's consume: retried with the same key
        self._ran = False

    @property
    def request_id(self) -> str:
        return self.request["id"]

    def _deadline(self) -> float:
        """Until when waiting makes sense: the request's expiry, capped by the gate's timeout."""
        expires = self.request.get("expires_at")
        try:
            until = parse_ts(expires).timestamp() if isinstance(expires, str) else time.time()
        except ValueError:  # the service garbled it: wait no longer than now
            until = time.time()
        return until + 1.0

    def status(self) -> str:
        try:
            self.request = self.gate.service.get(self.request_id)  # type: ignore[union-attr]
        except ServiceError as exc:
            self.gate.errors.append(f"status of {self.request_id}: {exc}")
            return "error"
        return self.request["status"]

    def done(self) -> bool:
        return self.status() != "pending"

    def wait(self, timeout: float | None = None) -> str:
        """Long-poll until decided, the request's time runs out or `timeout` seconds pass."""
        start = time.monotonic()
        until = self._deadline()
        if self.gate.timeout is not None:
            until = min(until, time.time() + self.gate.timeout)
        if timeout is not None:
            until = min(until, time.time() + timeout)
        delay = self.gate.poll
        while True:
            left = until - time.time()
            if left <= 0:
                return self.request["status"]
            try:
                self.request = self.gate.service.get(self.request_id, wait=min(left, 20.0))  # type: ignore[union-attr]
                delay = self.gate.poll
            except ServiceError as exc:
                if not exc.transient:
                    self.gate.errors.append(f"wait for {self.request_id}: {exc}")
                    return "error"
                self.gate.sleep(min(delay, max(0.0, left)))
                delay = min(delay * 2, 1.0)
                continue
            if self.request["status"] != "pending":
                return self.request["status"]
            if time.monotonic() - start > 3600 * 24:
                return "pending"

    async def wait_async(self, timeout: float | None = None) -> str:
        return await asyncio.to_thread(self.wait, timeout)

    def run(self, execute: Callable[[Action], T]) -> T:
        """Wait for the decision; with a token that verifies for this call, consume it and run `execute` once."""
        self._release(self.wait())
        return self._execute(execute)

    async def arun(self, execute: Callable[[Action], Any]) -> Any:
        await asyncio.to_thread(lambda: self._release(self.wait()))
        try:
            result = execute(self.action)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            await asyncio.to_thread(self._outcome, "failed", exc)
            raise
        await asyncio.to_thread(self._outcome, "executed", None)
        return result

    def _release(self, status: str) -> None:
        from gatekit.enforce.gate import Denied

        gate, act, tool = self.gate, self.action, self.action.tool
        if self._ran:
            raise Denied(f"`{tool}` was already run: a decision is used once", self.decision, "replay")
        if status != "approved":
            code = status if status in (*REFUSED, "executed") else ("error" if status == "error" else "timed_out")
            why = _MESSAGES.get(status, f"could not be approved (the approvals service is {status})")
            note = self.request.get("note")
            raise Denied(f"`{tool}` {why}" + (f": {note}" if note and status in REFUSED else ""), self.decision,
                         "replay" if code == "executed" else code)
        token = self.request.get("token")
        try:
            if not isinstance(token, str):
                raise TokenRefused("the approvals service sent no approval token", "malformed")
            verify_approval(token, act, self._public_key(), fingerprint=gate.policy.fingerprint)
        except TokenRefused as exc:
            raise Denied(f"`{tool}` approval refused: {exc}", self.decision, exc.code) from exc
        except ServiceError as exc:
            raise Denied(f"`{tool}`: cannot read the approvals service's key: {exc}", self.decision, "error") from exc
        self._ran = True
        until = time.time() + 30.0
        delay = gate.poll
        while True:
            try:
                self.request = gate.service.consume(token, self._key)  # type: ignore[union-attr]
                break
            except ServiceError as exc:
                if exc.transient and time.time() < until:
                    gate.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                code = exc.code if exc.code in ("used", "expired", "revoked", "fingerprint", "action",
                                                "signature") else "error"
                raise Denied(f"`{tool}` approval could not be used: {exc}", self.decision,
                             "replay" if code == "used" else code) from exc

    def withdraw(self, reason: str | None = None) -> str:
        """Give up on the call (its caller went away): the service ends the request; nothing will run for it."""
        self._ran = True  # this handle runs nothing from now on, whatever the service answers
        try:
            self.request = self.gate.service.withdraw(self.request_id, reason)  # type: ignore[union-attr]
        except ServiceError as exc:  # the request times out on its own
            self.gate.errors.append(f"withdraw {self.request_id}: {exc}")
            return "error"
        return self.request["status"]

    def _public_key(self) -> Any:
        gate = self.gate
        if gate.public_key is None:
            gate.public_key = gate.service.public_key()["key"]  # type: ignore[union-attr]
        return gate.public_key

    def _execute(self, execute: Callable[[Action], T]) -> T:
        try:
            result = execute(self.action)
        except BaseException as exc:
            self._outcome("failed", exc)
            raise
        self._outcome("executed", None)
        return result

    def _outcome(self, outcome: str, error: BaseException | None) -> None:
        try:
            self.gate.service.outcome(self.request_id, outcome,  # type: ignore[union-attr]
                                      None if error is None else f"{type(error).__name__}: {error}")
        except ServiceError as exc:  # the call ran; only its report is lost
            self.gate.errors.append(f"outcome of {self.request_id}: {exc}")
