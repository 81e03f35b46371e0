"""The broker's rules, one by one, on a real SQLite file with an injectable clock."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
from typing import Any

import pytest

from gatekit import Action, Policy, decide
from gatekit.action import evidence_hash
from gatekit.enforce import Broker, MockBroker, Refused, Request, Vote, Webhook

from .conftest import Clock


def file(broker: Broker, policy: Policy, tool: str = "payment.send", *, agent: str = "bot", user: str = "u-req",
         **args: Any) -> tuple[Request, Action]:
    """File a request the way the gate does: decide, then submit with the decision's tier."""
    action = Action(tool=tool, args=args or {"amount": 250}, agent=agent, user=user, context={"env": "prod"},
                    action_id=f"a-{id(args)}-{tool}")
    decision = decide(policy, action)
    assert decision.decision == "escalate", decision
    return broker.submit(action, decision, policy.tiers.get(decision.tier) if decision.tier else None), action


def test_request_carries_the_evidence(make_broker, policy) -> None:
    broker = make_broker()
    request, action = file(broker, policy, amount=250, recipient="ACME")
    assert request.status == "pending"
    assert request.action["args"] == {"amount": 250, "recipient": "ACME"}
    assert (request.tool, request.agent, request.user) == ("payment.send", "bot", "u-req")
    assert request.action["context"] == {"env": "prod"}
    assert request.rules == ("pay-100",) and request.reasons == ("Payments over $100 need approval",)
    assert request.tier == "standard" and request.approvals == 1 and request.roles == ()
    assert request.evidence_hash == evidence_hash(action) and request.evidence_intact
    assert (request.expires_at - request.requested_at).total_seconds() == 4 * 3600
    assert broker.list() == [request]


def test_one_approval_approves_a_standard_request(make_broker, policy) -> None:
    broker = make_broker()
    request, _ = file(broker, policy)
    done = broker.approve(request.id, "alice", reason="ok")
    assert done.status == "approved" and done.approved_by == ("alice",) and done.decided_at is not None
    assert done.votes[0].reason == "ok"


@pytest.mark.parametrize("who", ["bot", "u-req"])
def test_no_self_approval_by_agent_or_user(make_broker, policy, who) -> None:
    broker = make_broker()
    request, _ = file(broker, policy)
    with pytest.raises(Refused) as err:
        broker.approve(request.id, who)
    assert err.value.code == "self_approval"
    assert broker.get(request.id).status == "pending" and broker.get(request.id).votes == ()


def test_quorum_needs_distinct_reviewers(make_broker, policy) -> None:
    broker = make_broker()
    request, _ = file(broker, policy, "db.delete", table="t")
    assert request.tier == "pair" and request.approvals == 2
    assert broker.approve(request.id, "alice").status == "pending"
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "alice")
    assert err.value.code == "already_voted"
    assert broker.approve(request.id, "bob").status == "approved"


def test_required_roles_each_present(make_broker, policy) -> None:
    broker = make_broker()
    request, _ = file(broker, policy, amount=20000)
    assert request.tier == "critical" and request.roles == ("security", "finance")
    broker.approve(request.id, "alice", role="security")
    # a second security approval fills no seat (two approvals, no finance): refused, saying what is missing
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "bob", role="security")
    assert err.value.code == "vote_not_counted" and "missing role `finance`" in str(err.value)
    assert broker.get(request.id).status == "pending" and len(broker.get(request.id).votes) == 1
    assert broker.approve(request.id, "carol", role="finance").status == "approved"


def test_a_deny_denies_whatever_the_approvals(make_broker, policy) -> None:
    broker = make_broker()
    request, _ = file(broker, policy, "db.delete", table="t")
    broker.approve(request.id, "alice")
    assert broker.deny(request.id, "bob", reason="no").status == "denied"
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "carol")
    assert err.value.code == "not_pending"


def test_timeout_resolves_timed_out_and_refuses_late_votes(make_broker, policy, clock: Clock) -> None:
    broker = make_broker()
    request, action = file(broker, policy)
    clock.advance(4 * 3600)
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "alice")
    assert err.value.code == "timed_out"
    after = broker.get(request.id)
    assert after.status == "timed_out" and after.votes == ()
    with pytest.raises(Refused):
        broker.release(request.id, action)


def test_timeout_is_seen_by_readers_without_any_vote(make_broker, policy, clock: Clock) -> None:
    broker = make_broker()
    request, _ = file(broker, policy)
    clock.advance(4 * 3600 - 1)
    assert broker.get(request.id).status == "pending"
    clock.advance(1)
    assert broker.list() == [] and broker.get(request.id).status == "timed_out"


def test_release_is_single_use_and_bound_to_the_evidence(make_broker, policy) -> None:
    broker = make_broker()
    request, action = file(broker, policy, amount=250, recipient="ACME")
    broker.approve(request.id, "alice")
    changed = Action(tool=action.tool, args={"amount": 25000, "recipient": "ACME"}, agent="bot", user="u-req",
                     context={"env": "prod"}, action_id=action.action_id)
    with pytest.raises(Refused) as err:
        broker.release(request.id, changed)
    assert err.value.code == "drift"
    used = broker.release(request.id, action)
    assert used.status == "executed" and used.executed_hash == request.evidence_hash
    with pytest.raises(Refused) as err:
        broker.release(request.id, action)
    assert err.value.code == "replay"
    kinds = [(r.kind, r.body.get("refusal")) for r in broker.receipts.entries() if r.kind in ("refusal", "release")]
    assert kinds == [("refusal", "drift"), ("release", None), ("refusal", "replay")]


def test_approval_ttl(make_broker, policy, clock: Clock) -> None:
    broker = make_broker()
    request, action = file(broker, policy, amount=20000)
    broker.approve(request.id, "alice", role="security")
    approved = broker.approve(request.id, "bob", role="finance")
    assert (approved.approved_until - approved.decided_at).total_seconds() == 15 * 60
    clock.advance(15 * 60)
    with pytest.raises(Refused) as err:
        broker.release(request.id, action)
    assert err.value.code == "expired" and broker.get(request.id).status == "expired"


def test_break_glass_needs_a_reason_is_time_limited_and_flagged(make_broker, policy, clock: Clock) -> None:
    broker = make_broker(break_glass_limit="10m")
    request, action = file(broker, policy, amount=20000)
    for reason in ("", "   "):
        with pytest.raises(Refused) as err:
            broker.break_glass(request.id, "oncall", reason)
        assert err.value.code == "reason_required"
    with pytest.raises(Refused):
        broker.break_glass(request.id, "bot", "incident 42")  # still no self-approval
    done = broker.break_glass(request.id, "oncall", "incident 42", duration="1h")  # capped at the limit
    assert done.status == "approved" and done.break_glass and done.flagged
    assert done.break_glass_reason == "incident 42"
    assert (done.approved_until - done.decided_at).total_seconds() == 10 * 60
    assert broker.list(None, flagged=True) == [done]
    clock.advance(10 * 60)
    with pytest.raises(Refused) as err:
        broker.release(request.id, action)
    assert err.value.code == "expired"


def test_directory_of_reviewers_and_roles(make_broker, policy) -> None:
    broker = make_broker()
    broker.add_reviewer("alice", "security")
    broker.add_reviewer("bob", "finance", "sre")
    request, _ = file(broker, policy, amount=20000)
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "mallory", role="finance")
    assert err.value.code == "unknown_reviewer"
    with pytest.raises(Refused) as err:
        broker.approve(request.id, "alice", role="finance")
    assert err.value.code == "role_not_held"
    assert broker.approve(request.id, "alice").votes[0].role == "security"  # the one role she holds
    assert broker.approve(request.id, "bob").status == "approved"  # picks the role the tier needs


def test_votes_and_resolutions_are_receipted_in_the_same_transaction(make_broker, policy) -> None:
    broker = make_broker()
    request, _ = file(broker, policy)
    broker.approve(request.id, "alice", role="finance")
    kinds = [r.kind for r in broker.receipts.entries(request.action_id)]
    assert kinds == ["request", "vote", "resolution"]
    vote = [r for r in broker.receipts.entries() if r.kind == "vote"][0].body
    assert vote["reviewer"] == "alice" and vote["decision"] == "approve" and vote["role"] == "finance"
    assert broker.receipts.verify().ok


def test_unknown_request_and_bad_votes(make_broker, policy) -> None:
    broker = make_broker()
    with pytest.raises(Refused) as err:
        broker.approve("req-nope", "alice")
    assert err.value.code == "unknown_request"
    request, _ = file(broker, policy)
    with pytest.raises(Refused):
        broker.approve(request.id, "  ")


def test_wait_returns_on_decision_or_on_timeout(make_broker, policy, clock: Clock) -> None:
    broker = make_broker()
    request, _ = file(broker, policy)
    assert broker.wait(request.id, timeout=5, sleep=clock.sleep).status == "pending"
    done = broker.wait(request.id, sleep=clock.sleep)  # nobody answers: the request's own timeout
    assert done.status == "timed_out"


def test_two_brokers_on_one_file_see_each_other(make_broker, policy) -> None:
    agent_side, reviewer_side = make_broker(), make_broker()
    request, _ = file(agent_side, policy)
    assert [r.id for r in reviewer_side.list()] == [request.id]
    reviewer_side.approve(request.id, "alice")
    assert agent_side.get(request.id).status == "approved"


def test_store_is_wal_with_a_busy_timeout(make_broker) -> None:
    broker = make_broker()
    con = sqlite3.connect(broker.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert broker.db._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    con.close()


# ---- notifications ---------------------------------------------------------------------------------------
def test_notify_callback_gets_each_new_request_and_its_failures_do_not_block(make_broker, policy) -> None:
    seen: list[str] = []

    def broken(request: Request) -> None:
        raise RuntimeError("pager down")

    broker = make_broker(notify=[lambda r: seen.append(r.id), broken])
    request, _ = file(broker, policy)
    assert seen == [request.id]
    assert broker.get(request.id).status == "pending"
    assert "pager down" in broker.notify_errors[0]


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_posts_a_signed_payload_to_a_loopback_server(make_broker, policy) -> None:
    import hashlib
    import hmac

    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/gatekit"
        broker = make_broker(notify=[Webhook(url, secret="s3cret", timeout=5)])
        request, _ = file(broker, policy)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert not broker.notify_errors
    (headers, body), = _Hook.received
    payload = json.loads(body)
    assert payload["event"] == "approval.requested" and payload["request"]["id"] == request.id
    assert payload["request"]["action"]["args"] == {"amount": 250}
    want = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Gatekit-Signature"] == want


def test_webhook_failure_is_recorded_not_raised(make_broker, policy) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    broker = make_broker(notify=[Webhook(f"http://127.0.0.1:{port}/", timeout=2)])
    request, _ = file(broker, policy)
    assert broker.get(request.id).status == "pending" and broker.notify_errors


def test_webhook_refuses_other_schemes() -> None:
    with pytest.raises(ValueError):
        Webhook("file:///etc/passwd")


# ---- the test seam ---------------------------------------------------------------------------------------
def test_mock_broker_answers_from_its_callback_under_every_rule(policy) -> None:
    broker = MockBroker(lambda r: "approve")
    request, _ = file(broker, policy, amount=20000)
    done = broker.get(request.id)
    assert done.status == "approved" and {v.role for v in done.votes} == {"security", "finance"}

    self_approving = MockBroker(lambda r: [Vote("bot", "approve"), Vote("alice", "approve")])
    request, _ = file(self_approving, policy, "db.delete", table="t")
    assert self_approving.get(request.id).status == "pending"  # bot may not approve: one approval of two
    assert [e.code for e in self_approving.refused] == ["self_approval"]

    silent = MockBroker(lambda r: None)
    request, _ = file(silent, policy)
    assert silent.get(request.id).status == "pending"
    assert MockBroker(lambda r: "deny").seen == []
