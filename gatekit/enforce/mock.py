"""A broker whose reviewers are one callback: the seam for tests, as `MockTransport` is for httpx."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Union

from gatekit.action import Action
from gatekit.enforce.broker import Broker, Refused, Request, Vote
from gatekit.policy.decision import Decision
from gatekit.policy.model import Tier

__all__ = ["MockBroker"]

Answer = Union[str, Vote, Iterable[Vote], None]


class MockBroker(Broker):
    """The real broker (every rule applies) on an in-memory SQLite file, answered by `handler`.

    >>> gate = Gate(policy, broker=MockBroker(lambda request: "approve"))

    `handler(request)` answers each new request: `"approve"` (stand-in reviewers `mock-reviewer-N`,
    as many as the tier needs, holding its roles, approve), `"deny"`, a `Vote` or a list of votes (cast
    as given, so a test can try a self-approval or a missing role; refusals are kept in `refused`), or
    None (nobody answers: the request times out).
    """

    def __init__(self, handler: Callable[[Request], Answer], path: str | Path = ":memory:", **kwargs: Any) -> None:
        kwargs.setdefault("durable", False)
        super().__init__(path, **kwargs)
        self.handler = handler
        self.refused: list[Refused] = []
        self.seen: list[Request] = []

    def submit(self, action: Action, decision: Decision, tier: Tier | None = None, *,
               timeout_us: int | None = None) -> Request:
        request = super().submit(action, decision, tier, timeout_us=timeout_us)
        self.seen.append(request)
        for vote in self._votes(request, self.handler(request)):
            try:
                if vote.break_glass:
                    self.break_glass(request.id, vote.reviewer, vote.reason or "", role=vote.role)
                elif vote.decision == "approve":
                    self.approve(request.id, vote.reviewer, role=vote.role, reason=vote.reason)
                else:
                    self.deny(request.id, vote.reviewer, role=vote.role, reason=vote.reason)
            except Refused as exc:
                self.refused.append(exc)
        return self.get(request.id)

    @staticmethod
    def _votes(request: Request, answer: Answer) -> list[Vote]:
        if answer is None:
            return []
        if answer == "approve":
            roles = list(request.roles) + [None] * max(0, request.approvals - len(request.roles))
            return [Vote(f"mock-reviewer-{i + 1}", "approve", role) for i, role in enumerate(roles)]
        if answer == "deny":
            return [Vote("mock-reviewer-1", "deny", reason="denied by the mock handler")]
        if isinstance(answer, Vote):
            return [answer]
        if isinstance(answer, str):
            raise ValueError(f"a mock answer is approve, deny, a Vote, votes or None, not `{answer}`")
        return list(answer)
