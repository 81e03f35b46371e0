"""The broker against a simple model, under Hypothesis' stateful testing: random interleavings of requests,
votes, break-glass, clock moves and executions, on a real SQLite file with an injectable clock.

The model is the rules written down plainly; after every step the store must match it: no approval
counted twice, no self-approval, quorum and roles before approval, timeouts deny, approvals expire after
their TTL, are bound to the evidence and are used at most once; and the audit chain verifies.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from gatekit import Action, Decision
from gatekit.enforce import Broker, Refused
from gatekit.enforce.receipts import to_us
from gatekit.policy.model import Tier

from .conftest import Clock

US = 1_000_000
TIERS = {
    "one": Tier("one", approvals=1, timeout_us=4 * 3600 * US),
    "pair": Tier("pair", approvals=2, timeout_us=3600 * US),
    "critical": Tier("critical", approvals=2, roles=("security", "finance"), timeout_us=1800 * US,
                     approval_ttl_us=900 * US),
    "quick": Tier("quick", approvals=1, timeout_us=600 * US, approval_ttl_us=300 * US),
}
REVIEWERS = ["alice", "bob", "carol", "bot", "u-req"]  # the last two are requesters
BREAK_GLASS_LIMIT = 1200 * US


@dataclass
class Model:
    tier: Tier
    agent: str
    user: str
    action: Action
    requested_at: int
    status: str = "pending"
    votes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    until: int | None = None
    uses: int = 0
    break_glass: bool = False

    @property
    def expires_at(self) -> int:
        return self.requested_at + (self.tier.timeout_us or 0)


class BrokerMachine(RuleBasedStateMachine):
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.clock = Clock()
        self.broker = Broker(self.dir / "approvals.db", clock=self.clock, durable=False, break_glass_limit="20m")
        self.model: dict[str, Model] = {}

    def teardown(self) -> None:
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def now(self) -> int:
        return self.broker.now_us()

    # -- the model's rules -----------------------------------------------------------------------------------
    def settle(self, m: Model) -> None:
        """What any touch of the store does first: time out a pending request whose time is up."""
        if m.status == "pending" and self.now() >= m.expires_at:
            m.status = "timed_out"

    def expected_vote(self, m: Model, reviewer: str, decision: str, role: str | None = None,
                      break_glass: bool = False) -> str | None:
        """The refusal code a vote gets, or None if it is counted."""
        if m.status == "pending" and self.now() >= m.expires_at:
            m.status = "timed_out"
            return "timed_out"
        if m.status != "pending":
            return "not_pending"
        if decision == "approve" and reviewer in (m.agent, m.user):
            return "self_approval"
        if reviewer in m.votes:
            return "already_voted"
        approvers = [r for d, r in m.votes.values() if d == "approve"]
        missing = [r for r in m.tier.roles if r not in approvers]
        if decision == "approve" and not break_glass and role not in missing and \
                len(approvers) >= m.tier.approvals - len(missing):
            return "vote_not_counted"  # it would fill no seat: not recorded, so every recorded approval counts
        return None

    # -- steps ---------------------------------------------------------------------------------------------
    @initialize(target=requests, tier=st.sampled_from(sorted(TIERS)))
    def first(self, tier: str) -> str:
        return self.submit(tier, "bot", "u-req")

    @rule(target=requests, tier=st.sampled_from(sorted(TIERS)), agent=st.sampled_from(["bot", "alice"]),
          user=st.sampled_from(["u-req", "bob"]))
    def submit(self, tier: str, agent: str, user: str) -> str:
        action = Action(tool="payment.send", args={"amount": 250, "n": len(self.model)}, agent=agent, user=user,
                        action_id=f"a-{len(self.model)}")
        request = self.broker.submit(action, Decision("escalate", ("r",), (), tier, ("why",)), TIERS[tier])
        self.model[request.id] = Model(TIERS[tier], agent, user, action, to_us(request.requested_at))
        assert request.status == "pending"
        return request.id

    @rule(rid=requests, reviewer=st.sampled_from(REVIEWERS), decision=st.sampled_from(["approve", "approve", "deny"]),
          role=st.sampled_from([None, "security", "finance"]))
    def vote(self, rid: str, reviewer: str, decision: str, role: str | None) -> None:
        m = self.model[rid]
        want = self.expected_vote(m, reviewer, decision, role)
        try:
            if decision == "approve":
                self.broker.approve(rid, reviewer, role=role)
            else:
                self.broker.deny(rid, reviewer, role=role)
            got = None
        except Refused as exc:
            got = exc.code
        assert got == want, (got, want)
        if want is not None:
            return
        m.votes[reviewer] = (decision, role)
        if decision == "deny":
            m.status = "denied"
            return
        approvers = {r: role for r, (d, role) in m.votes.items() if d == "approve"}
        if len(approvers) >= m.tier.approvals and set(m.tier.roles) <= set(approvers.values()):
            m.status = "approved"
            m.until = self.now() + m.tier.approval_ttl_us if m.tier.approval_ttl_us else None

    @rule(rid=requests, roles=st.lists(st.sampled_from([None, "security", "finance"]), min_size=3, max_size=3),
          who=st.permutations(REVIEWERS))
    def review_round(self, rid: str, roles: list[str | None], who: list[str]) -> None:
        """Several reviewers approve one after the other: reaches quorum (or not, for want of a role) often."""
        for reviewer, role in zip(who, roles):
            self.vote(rid, reviewer, "approve", role)

    @rule(rid=requests, after=st.sampled_from([0, 299, 300, 900, 1200]), changed=st.booleans())
    def approve_then_release(self, rid: str, after: int, changed: bool) -> None:
        """The happy path, then a use: right away, or around the approval's TTL."""
        m = self.model[rid]
        for reviewer, role in zip(["alice", "bob", "carol"], [*m.tier.roles, None, None, None]):
            self.vote(rid, reviewer, "approve", role)
        self.release(rid, changed, after)

    @rule(rid=requests, reviewer=st.sampled_from(REVIEWERS), reason=st.sampled_from(["", "incident 7", "incident 7"]))
    def break_glass(self, rid: str, reviewer: str, reason: str) -> None:
        m = self.model[rid]
        want = "reason_required" if not reason else self.expected_vote(m, reviewer, "approve", break_glass=True)
        try:
            self.broker.break_glass(rid, reviewer, reason)
            got = None
        except Refused as exc:
            got = exc.code
        assert got == want, (got, want)
        if want is None:
            m.votes[reviewer] = ("approve", None)
            m.status, m.break_glass = "approved", True
            ttl = m.tier.approval_ttl_us or BREAK_GLASS_LIMIT
            m.until = self.now() + min(BREAK_GLASS_LIMIT, ttl)

    @rule(seconds=st.sampled_from([1, 60, 299, 300, 600, 900, 1800, 3600, 4 * 3600]))
    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(rid=requests, changed=st.booleans(), after=st.sampled_from([0, 0, 0, 299, 300, 1200]))
    def release(self, rid: str, changed: bool, after: int) -> None:
        self.clock.advance(after)  # often right after approval, sometimes just before or after a TTL
        m = self.model[rid]
        self.settle(m)
        if m.status == "approved" and m.until is not None and self.now() >= m.until:
            m.status = "expired"
        action = m.action
        if changed:
            action = Action(tool=action.tool, args={**action.args, "amount": 25000}, agent=action.agent,
                            user=action.user, action_id=action.action_id)
        if m.status == "executed":
            want = "replay"
        elif m.status != "approved":
            want = m.status
        elif changed:
            want = "drift"
        else:
            want = None
        try:
            self.broker.release(rid, action)
            got = None
        except Refused as exc:
            got = exc.code
        assert got == want, (got, want)
        if want is None:
            m.status, m.uses = "executed", m.uses + 1

    @rule()
    def expire_all(self) -> None:
        for m in self.model.values():
            self.settle(m)
        self.broker.list()

    # -- what must always hold ------------------------------------------------------------------------------
    @invariant()
    def store_matches_the_model(self) -> None:
        for rid, m in self.model.items():
            with self.broker.db.read() as con:
                request = self.broker._load(con, rid)  # as stored, without settling
            assert request.status == m.status, (rid, request.status, m.status)
            reviewers = [v.reviewer for v in request.votes]
            assert len(reviewers) == len(set(reviewers)), "a reviewer counted twice"
            assert {v.reviewer: (v.decision, v.role) for v in request.votes} == m.votes
            approvers = [v for v in request.votes if v.decision == "approve"]
            assert not {v.reviewer for v in approvers} & {m.agent, m.user}, "self-approval"
            assert all(to_us(v.at) < m.expires_at for v in request.votes), "a vote after the timeout"
            if request.status in ("approved", "executed") and not request.break_glass:
                assert len(approvers) >= m.tier.approvals
                assert set(m.tier.roles) <= {v.role for v in approvers}
            if request.status == "timed_out":
                assert not approvers or len(approvers) < m.tier.approvals or set(m.tier.roles) - {
                    v.role for v in approvers}
            assert m.uses <= 1
            assert (request.used_at is not None) == (m.uses == 1)
            if request.status == "executed":
                assert request.executed_hash == request.evidence_hash

    @invariant()
    def chain_verifies(self) -> None:
        assert self.broker.receipts.verify().ok


BrokerMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
test_broker_against_the_model = BrokerMachine.TestCase
