"""What a waiting call says it waits for, and the quorum's seats: which approvals count, what is missing."""

from __future__ import annotations

import itertools
import logging
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit import Gate
from gatekit.enforce import Broker, Refused, Waiting, tally

BIG = {"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}}


def test_a_waiting_call_reports_what_it_waits_for(make_broker, policy, clock, caplog) -> None:
    broker: Broker = make_broker()
    broker.add_reviewer("bob", "finance")
    broker.add_reviewer("carol", "security")
    heard: list[Waiting] = []
    start = clock()
    votes = {100: ("bob", "finance"), 200: ("carol", "security")}

    def sleep(seconds: float) -> None:  # reviewers act at fake times while the gate waits
        clock.sleep(seconds)
        for at in [a for a in votes if clock() - start >= a]:
            broker.approve(pending.request_id, votes.pop(at)[0])

    gate = Gate(policy, broker=broker, agent="bot", user="u-ann", clock=clock, sleep=sleep, timeout=600,
                report_every=30, on_wait=heard.append)
    pending = gate.submit(BIG)
    caplog.set_level(logging.INFO, logger="gatekit.enforce")
    assert pending.run(lambda a: "paid") == "paid"
    assert heard[0] == Waiting(pending.request_id, "payment.send", "pending", 0.0, 600.0,
                               "0 of 2 approvals; missing roles `security`, `finance`", 2, ("security", "finance"))
    unchanged = [h for h in heard if h.needs == heard[0].needs]
    assert len(unchanged) >= 3 and all(30 <= b.waited - a.waited < 32 for a, b in itertools.pairwise(unchanged))
    one = next(h for h in heard if h.needs == "1 of 2 approvals; missing role `security`")
    assert 100 <= one.waited < 102 and one.missing == 1 and one.missing_roles == ("security",)
    assert heard[-1].status == "approved" and 200 <= heard[-1].waited < 202
    logged = [r.getMessage() for r in caplog.records if r.name == "gatekit.enforce"]
    assert logged[0] == (f"waiting for approval of `payment.send` ({pending.request_id}): 0 of 2 approvals; "
                         "missing roles `security`, `finance`; waited 0s, 10m00s left")
    assert logged[-1] == f"`payment.send` ({pending.request_id}): approved after 3m20s"


def test_a_failing_on_wait_decides_nothing(make_broker, policy, clock) -> None:
    def boom(w: Waiting) -> None:
        raise RuntimeError("reporter down")

    gate = Gate(policy, broker=make_broker(), agent="bot", user="u-ann", clock=clock, sleep=clock.sleep,
                timeout=5, on_wait=boom)
    pending = gate.submit(BIG)
    assert pending.wait(timeout=2) == "pending"  # still waiting: the callback's failure is only logged


def test_an_approval_that_fills_no_seat_is_refused(make_broker, policy) -> None:
    broker: Broker = make_broker()
    request = Gate(policy, broker=broker, agent="bot", user="u-ann").submit(BIG).request
    broker.approve(request.id, "alice", role="finance")
    for role in ("finance", None):
        with pytest.raises(Refused) as err:
            broker.approve(request.id, "bob", role=role)
        assert err.value.code == "vote_not_counted" and "missing role `security`" in str(err.value)
    assert [v.reviewer for v in broker.get(request.id).votes] == ["alice"]


def test_the_cli_says_which_role_is_missing(make_broker, policy, gatekit_cli) -> None:
    broker: Broker = make_broker(clock=time.time)  # the command reads it at the real time
    rid = Gate(policy, broker=broker, agent="bot", user="u-ann").submit(BIG).request_id
    broker.approve(rid, "alice", role="finance")
    code, out, err = gatekit_cli("approvals", "list", "--broker", str(broker.db.path))
    assert code == 0 and "approvals 1/2 roles security,finance (missing role `security`)" in out, (out, err)
    code, out, err = gatekit_cli("approvals", "show", rid, "--broker", str(broker.db.path))
    assert code == 0 and "approvals: 1 of 2 approvals; missing role `security`" in out, (out, err)


VOTE = st.fixed_dictionaries({"reviewer": st.sampled_from("abcdef"), "decision": st.just("approve"),
                              "role": st.sampled_from([None, "security", "finance", "ops"])})


@given(votes=st.lists(VOTE, max_size=8, unique_by=lambda v: v["reviewer"]), approvals=st.integers(1, 4),
       roles=st.lists(st.sampled_from(["security", "finance"]), unique=True))
def test_seats_meet_the_quorum_exactly_when_distinct_approvals_cover_the_roles(votes, approvals, roles) -> None:
    approvals = max(approvals, len(roles))  # the policy refuses more roles than approvals
    t = tally(votes, approvals, roles)
    assert t.met == (len(votes) >= approvals and set(roles) <= {v["role"] for v in votes})
    assert len(t.counted) <= approvals and sorted(t.counted + t.not_counting) == sorted(v["reviewer"] for v in votes)
    assert f"{len(t.counted)} of {approvals} approval" in t.summary()
    # a vote is refused exactly when it would not change the count: so every recorded approval counts
    for role in (None, "security", "finance", "ops"):
        after = tally([*votes, {"reviewer": "z", "decision": "approve", "role": role}], approvals, roles)
        assert t.seat_for(role) == (len(after.counted) > len(t.counted))
