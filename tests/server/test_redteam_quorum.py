"""Red team on the seat quorum (branch `enforceux`): each attack tried as an attacker would against a real
`gatekit serve` on loopback; every test asserts the secure behaviour.

- a role seat filled by a reviewer who does not hold the role (self-declared role, name variants), or two
  seats by one person (two roles, a role switch, the API then the page);
- a refused vote that leaves a trace a later tally could count; the service and the tally disagreeing after
  a policy change between votes;
- the "approver may deny while pending" path used on a decided or consumed request, or by someone who
  could not deny before; the audit chain after it;
- the waiting report (`on_wait`, INFO logs): a callback that raises, blocks or lies; credentials in logs;
- the quorum JSON read by other agents or executors;
- reviewers racing for the last seat.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gatekit.enforce import Waiting
from gatekit.enforce.client import ServiceError
from tests.server.conftest import POLICY, Served
from tests.server.test_attacks import (
    BIG,
    PAY,
    STAGING_DROP,
    approve,
    audit_kinds,
    denial,
    new_agent,
    new_reviewer,
    refusal,
    store,
    wait_for,
)

STAGING = {"env": "staging"}


def votes_rows(s: Served, rid: str) -> list[tuple[Any, ...]]:
    con = store(s)
    try:
        return con.execute("SELECT reviewer, role, decision FROM votes WHERE request_id = ? ORDER BY at",
                           (rid,)).fetchall()
    finally:
        con.close()


def audit_count(s: Served) -> int:
    con = store(s)
    try:
        return con.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        con.close()


def raw_vote(s: Served, credential: str, rid: str, decision: str, digest: str, **extra: Any) -> tuple[int, Any]:
    return s.http("POST", f"/v1/requests/{rid}/votes", {"decision": decision, "evidence": digest, **extra},
                  token=credential)


# ---- a role seat for someone without the role ----------------------------------------------------------
ROLE_VARIANTS = ["finance", "Finance", "FINANCE", " finance", "finance ", "finance\n", "\u200bfinance",
                 "fin\u200bance", "finance\u00ad", "fin\u0430nce",  # Cyrillic а
                 "\uff46\uff49\uff4e\uff41\uff4e\uff43\uff45",  # fullwidth: NFKC makes it `finance`
                 "finance\u202e", "ﬁnance"]  # the `ﬁ` ligature: NFKC makes it `finance`


def test_no_role_variant_fills_a_seat_the_reviewer_does_not_hold(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, sec = new_reviewer(s, "security")
    _, audit = new_reviewer(s, "audit")  # holds a role, not the one missing
    _, none = new_reviewer(s)  # holds no role
    rid = s.gate(bot, cred).submit(BIG).request_id  # critical: security and finance
    approve(sec, rid)
    digest = sec.get(rid)["digest"]
    for who in (audit, none):
        for role in ROLE_VARIANTS + [None, "security", "Security", "audit", ""]:
            body = {} if role is None else {"role": role}
            status, answer = raw_vote(s, who.credential, rid, "approve", digest, **body)
            assert status in (400, 403, 409), (role, status, answer)
            assert answer["code"] in ("role_not_held", "vote_not_counted", "bad_request"), (role, answer)
        # nor as a list, an object, a number: a role is text from the registry
        for role in (["finance"], {"finance": True}, 1, True):
            status, answer = raw_vote(s, who.credential, rid, "approve", digest, role=role)
            assert status in (400, 403, 409) and answer["code"] in ("bad_request", "role_not_held"), (role, answer)
    shown = sec.get(rid)
    assert shown["status"] == "pending" and len(shown["votes"]) == 1
    assert shown["quorum"]["missing_roles"] == ["finance"] and shown["quorum"]["counted"] == 1
    assert len(votes_rows(s, rid)) == 1


def test_one_reviewer_fills_one_seat_whatever_role_or_channel_they_use(shared_service: Served) -> None:
    from tests.server.test_web import Web, vote_form

    s = shared_service
    bot, cred = new_agent(s)
    name, both = new_reviewer(s, "security", "finance")
    rid = s.gate(bot, cred).submit(BIG).request_id
    first = approve(both, rid)  # no role named: the first required role still missing
    assert first["status"] == "pending" and first["votes"][0]["role"] == "security"
    assert first["quorum"]["missing_roles"] == ["finance"] and first["quorum"]["counted_by"] == [name]
    digest = first["digest"]
    for role in (None, "finance", "FINANCE", "\uff46inance", "security"):
        body = {} if role is None else {"role": role}
        status, answer = raw_vote(s, both.credential, rid, "approve", digest, **body)
        assert (status, answer["code"]) == (409, "already_voted"), (role, answer)
    # break-glass is not a second seat either (and needs the right, which `both` lacks)
    status, answer = raw_vote(s, both.credential, rid, "approve", digest, role="finance", break_glass=True,
                              reason="it is an emergency, honestly")
    assert status in (403, 409) and answer["code"] in ("break_glass_not_allowed", "already_voted")
    # the page is the same principal: its session cannot vote again either
    web = Web(s.url)
    assert web.login(both.credential).status == 303
    page = web.get(f"/requests/{rid}")
    reply = web.post(f"/requests/{rid}/approve", {**vote_form(page), "role": "finance"})
    assert reply.status == 409, reply.text[:500]
    shown = both.get(rid)
    assert shown["status"] == "pending" and shown["quorum"]["counted"] == 1
    assert votes_rows(s, rid) == [(name, "security", "approve")]


# ---- refused votes leave nothing that counts later -----------------------------------------------------
def test_a_refused_vote_leaves_no_row_and_no_audit_entry_that_a_looser_policy_would_count(tmp_path: Path) -> None:
    s = Served(tmp_path)
    try:
        bot, cred = new_agent(s)
        fin1_name, fin1 = new_reviewer(s, "finance")
        _, fin2 = new_reviewer(s, "finance")
        _, plain = new_reviewer(s)
        rid = s.gate(bot, cred).submit(BIG).request_id
        approve(fin1, rid)
        rows, entries = votes_rows(s, rid), audit_count(s)
        for who in (fin2, plain, fin2):
            assert refusal(lambda who=who: approve(who, rid)).code == "vote_not_counted"
        assert votes_rows(s, rid) == rows and audit_count(s) == entries
        assert "vote" not in audit_kinds(s, rid)[2:]  # submit, vote (fin1); nothing after
        # the tier loosened to two approvals with no role: only fin1's approval is on record, so still pending
        s.policy_path.write_text(POLICY.replace("critical: {approvals: 2, roles: [security, finance],",
                                                "critical: {approvals: 2,"))
        wait_for(lambda: fin1.get(rid)["roles"] == [])
        shown = fin1.get(rid)
        assert shown["status"] == "pending", shown
        assert shown["quorum"]["counted"] == 1 and shown["quorum"]["counted_by"] == [fin1_name]
        # and the refused reviewers may now approve (their refusal did not count as a vote)
        assert approve(fin2, rid)["status"] == "approved"
        assert s.verify() == 0, s.verified
    finally:
        s.kill()


def test_a_tier_tightened_between_votes_the_service_and_the_tally_agree(tmp_path: Path) -> None:
    s = Served(tmp_path)
    try:
        bot, cred = new_agent(s)
        fin1_name, fin1 = new_reviewer(s, "finance")
        _, fin2 = new_reviewer(s, "finance")
        sec_name, sec = new_reviewer(s, "security")
        rid = s.gate(bot, cred, context=STAGING).submit(STAGING_DROP).request_id  # pair: 2, no role
        assert approve(fin1, rid)["status"] == "pending"
        s.policy_path.write_text(POLICY.replace("pair: {approvals: 2, timeout: 1h}",
                                                "pair: {approvals: 3, roles: [security], timeout: 1h}"))
        wait_for(lambda: fin1.get(rid)["roles"] == ["security"])
        q = fin1.get(rid)["quorum"]
        assert (q["required"], q["counted"], q["missing_roles"], q["met"]) == (3, 1, ["security"], False)
        assert approve(fin2, rid)["status"] == "pending"  # the second open seat
        assert refusal(lambda: approve(new_reviewer(s, "finance")[1], rid)).code == "vote_not_counted"
        # loosened again, below what is on record: approved by the service, and the tally says met
        s.policy_path.write_text(POLICY.replace("pair: {approvals: 2, timeout: 1h}",
                                                "pair: {approvals: 2, roles: [finance], timeout: 1h}"))
        wait_for(lambda: fin1.get(rid)["status"] != "pending")
        shown = fin1.get(rid)
        assert shown["status"] == "approved" and shown["quorum"]["met"] is True, shown
        # tightened after approval beyond what the votes give: revoked, and the tally agrees it is not met
        s.policy_path.write_text(POLICY.replace("pair: {approvals: 2, timeout: 1h}",
                                                "pair: {approvals: 2, roles: [security, finance], timeout: 1h}"))
        wait_for(lambda: fin1.get(rid)["status"] != "approved")
        assert fin1.get(rid)["status"] == "revoked"
        assert refusal(lambda: approve(sec, rid)).code == "not_pending"
        assert sec_name not in fin1_name and s.verify() == 0, s.verified
    finally:
        s.kill()


# ---- "an approver may deny while pending" --------------------------------------------------------------
def test_an_approver_cannot_deny_a_decided_or_consumed_request(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    _, other = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)  # standard: one approval
    rid = pending.request_id
    assert approve(alice, rid)["status"] == "approved"
    digest = alice.get(rid)["digest"]
    for who in (alice, other):
        assert refusal(lambda who=who: who.vote(rid, "deny", digest, reason="changed my mind")).code == "not_pending"
    assert alice.get(rid)["status"] == "approved"
    ran: list[Any] = []
    assert pending.run(lambda a: ran.append(a) or "paid") == "paid" and len(ran) == 1
    for who in (alice, other):
        assert refusal(lambda who=who: who.vote(rid, "deny", digest)).code == "not_pending"
    shown = alice.get(rid)
    assert shown["status"] == "executed" and [v["decision"] for v in shown["votes"]] == ["approve"]
    assert "deny" not in audit_kinds(s, rid)
    assert s.verify() == 0, s.verified


def test_taking_an_approval_back_gives_nobody_a_new_power(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    name, alice = new_reviewer(s, "finance")
    _, bob = new_reviewer(s, "security")
    gate = s.gate(bot, cred)
    pending = gate.submit(BIG)
    rid = pending.request_id
    digest = alice.get(rid)["digest"]
    # the agent cannot deny (nor take back) with its own credential
    status, answer = raw_vote(s, cred, rid, "deny", digest)
    assert (status, answer["code"]) == (403, "forbidden")
    approve(alice, rid)
    # taking back needs the evidence shown, like any vote
    assert refusal(lambda: alice.vote(rid, "deny", "sha256:" + "0" * 64)).code == "evidence_changed"
    assert alice.get(rid)["status"] == "pending"
    denied = alice.vote(rid, "deny", digest, reason="wrong invoice")
    assert denied["status"] == "denied" and denied["quorum"]["met"] is False
    assert [v["decision"] for v in denied["votes"]] == ["approve"]
    assert len(votes_rows(s, rid)) == 1  # the deny is an audit entry, not a second vote row
    # nobody approves it back, and the approver cannot approve again
    for who in (alice, bob):
        assert refusal(lambda who=who: approve(who, rid)).code == "not_pending"
    # the deny entry names who denied
    con = store(s)
    try:
        body = json.loads(con.execute("SELECT body FROM audit WHERE request_id = ? AND kind = 'deny'",
                                      (rid,)).fetchone()[0])
    finally:
        con.close()
    assert body.get("by") == name and body.get("status") == "denied"
    err = denial(lambda: pending.run(lambda a: None))
    assert err.code == "denied" and name in str(err)
    assert s.verify() == 0, s.verified


def test_a_take_back_racing_the_last_approval_ends_one_way(shared_service: Served) -> None:
    s = shared_service
    for _ in range(3):
        bot, cred = new_agent(s)
        _, fin = new_reviewer(s, "finance")
        _, sec = new_reviewer(s, "security")
        rid = s.gate(bot, cred).submit(BIG).request_id
        approve(fin, rid)
        digest = fin.get(rid)["digest"]
        _race([lambda f=fin, r=rid, d=digest: f.vote(r, "deny", d),
               lambda v=sec, r=rid, d=digest: v.vote(r, "approve", d)])
        final = fin.get(rid)["status"]
        kinds = audit_kinds(s, rid)
        assert final in ("approved", "denied"), final
        assert not ("approve" in kinds and "deny" in kinds), kinds
        assert ("token" in kinds) == (final == "approved")
    assert s.verify() == 0, s.verified


# ---- races for the last seat ---------------------------------------------------------------------------
def _race(calls: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()["status"]
        except ServiceError as exc:
            out[i] = exc.code
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_reviewers_racing_for_the_last_role_seat_give_one_approval_and_one_token(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, fin = new_reviewer(s, "finance")
    racers = [new_reviewer(s, "security")[1] for _ in range(6)]
    rid = s.gate(bot, cred).submit(BIG).request_id
    approve(fin, rid)
    digest = fin.get(rid)["digest"]
    out = _race([lambda r=r: r.vote(rid, "approve", digest) for r in racers])
    assert out.count("approved") == 1, out
    assert all(o in ("approved", "vote_not_counted", "not_pending") for o in out), out
    assert len(votes_rows(s, rid)) == 2
    kinds = audit_kinds(s, rid)
    assert kinds.count("approve") == 1 and kinds.count("token") == 1, kinds
    q = fin.get(rid)["quorum"]
    assert (q["counted"], q["met"], q["not_counting"]) == (2, True, [])


def test_reviewers_racing_for_open_seats_never_over_count(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    racers = [new_reviewer(s, "finance")[1] for _ in range(8)]
    rid = s.gate(bot, cred, context=STAGING).submit(STAGING_DROP).request_id  # pair: 2 approvals
    digest = racers[0].get(rid)["digest"]
    out = _race([lambda r=r: r.vote(rid, "approve", digest) for r in racers])
    # two votes land, six are refused; the first vote's answer may already show the request approved when
    # the second commits with it (one ledger write), so the answers are not the count: the rows are
    assert out.count("not_pending") == 6 and "approved" in out and set(out) <= {"approved", "pending",
                                                                               "not_pending"}, out
    assert len(votes_rows(s, rid)) == 2
    kinds = audit_kinds(s, rid)
    assert kinds.count("token") == 1 and kinds.count("vote") == 2, kinds
    assert racers[0].get(rid)["quorum"]["counted"] == 2


# ---- the quorum JSON ------------------------------------------------------------------------------------
def test_no_other_agent_nor_an_executor_reads_a_requests_quorum(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, other_cred = new_agent(s)
    executor = s.add("executor", f"exec-{bot}")
    rev_name, fin = new_reviewer(s, "finance")
    rid = s.gate(bot, cred).submit(BIG).request_id
    approve(fin, rid)
    for token in (other_cred, executor, None, "gk_r_" + "x" * 43):
        for path in (f"/v1/requests/{rid}", f"/v1/requests/{rid}?wait=0.5"):
            status, body = s.http("GET", path, token=token)
            assert status in (401, 403, 404), (path, status)
            assert rev_name not in json.dumps(body) and "quorum" not in json.dumps(body)
    status, body = s.http("GET", "/v1/requests?status=pending", token=other_cred)
    assert status == 200 and rid not in json.dumps(body) and rev_name not in json.dumps(body)
    status, body = s.http("GET", "/v1/requests", token=executor)
    assert status in (403, 404) and rev_name not in json.dumps(body)
    # the requesting agent sees its own request's quorum, and never a token while it is pending
    status, mine = s.http("GET", f"/v1/requests/{rid}", token=cred)
    assert status == 200 and mine["quorum"]["counted"] == 1 and "token" not in mine


# ---- the waiting report -----------------------------------------------------------------------------------
class Boom(BaseException):
    pass


def test_an_on_wait_callback_that_raises_lies_or_blocks_never_allows(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    ran: list[Any] = []

    def raises(w: Waiting) -> None:
        raise RuntimeError("reporter down")

    def lies(w: Waiting) -> Any:
        object.__setattr__(w, "status", "approved")  # a frozen dataclass, mutated anyway
        object.__setattr__(w, "missing", 0)
        return "approved"

    for callback in (raises, lies):
        gate = s.gate(bot, cred, on_wait=callback, report_every=0.05, timeout=1.0)
        pending = gate.submit(PAY)
        assert pending.wait(timeout=0.4) == "pending"
        err = denial(lambda p=pending: p.run(ran.append))
        assert err.code in ("timed_out", "pending") and ran == [], err
        assert "consume" not in audit_kinds(s, pending.request_id)

    # a BaseException from the callback propagates: nothing runs, nothing is consumed
    def boom(w: Waiting) -> None:
        raise Boom("out")
    gate = s.gate(bot, cred, on_wait=boom, report_every=0.05, timeout=5.0)
    pending = gate.submit(PAY)
    with pytest.raises(Boom):
        pending.run(ran.append)
    assert ran == [] and "consume" not in audit_kinds(s, pending.request_id)

    # a callback that blocks past the gate's timeout: the service timed the request out by then
    def blocks(w: Waiting) -> None:
        time.sleep(1.5)
    gate = s.gate(bot, cred, on_wait=blocks, report_every=10, timeout=1.0)
    pending = gate.submit(PAY)
    err = denial(lambda: pending.run(ran.append))
    assert ran == [] and err.code in ("timed_out", "pending"), err

    # and a raising reporter does not stop a real approval from working (nor make it run twice)
    _, alice = new_reviewer(s)
    gate = s.gate(bot, cred, on_wait=raises, report_every=0.05, timeout=20.0)
    pending = gate.submit(PAY)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(pending.run(lambda a: ran.append(a) or "paid")))
    worker.start()
    time.sleep(0.2)
    approve(alice, pending.request_id)
    worker.join(20)
    assert result == ["paid"] and len(ran) == 1
    assert denial(lambda: pending.run(ran.append)).code == "replay" and len(ran) == 1


def test_waiting_reports_and_logs_carry_no_credential_or_token(shared_service: Served,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    rev_cred = s.add("reviewer", f"rev-{bot}")
    alice = s.client(rev_cred)
    heard: list[Waiting] = []
    caplog.set_level(logging.DEBUG)
    gate = s.gate(bot, cred, on_wait=heard.append, report_every=0.05)
    pending = gate.submit(PAY)
    rid = pending.request_id
    approve(alice, rid)
    _, view = s.http("GET", f"/v1/requests/{rid}", token=cred)
    token = view["token"]
    assert pending.run(lambda a: "paid") == "paid"
    secrets_ = (cred, rev_cred, token, token.split(".")[-1])
    texts = [r.getMessage() + repr(r.__dict__) for r in caplog.records] + [repr(h) for h in heard]
    texts.append(s.log.read_text())
    for text in texts:
        for secret in secrets_:
            assert secret not in text
    assert heard and all(h.request_id == rid for h in heard)


FORGED_TOOL = ("db.drop\nINFO:gatekit.enforce:`db.drop` (req-0): approved after 0s"  # a forged second log line
               "\x1b[2K\x1b[1A"  # a terminal escape: erase the line, move up
               "\u202eEMCA\u200b")  # bidi override, zero-width space


def test_the_waiting_log_line_escapes_what_the_agent_wrote(shared_service: Served,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The tool name is the model's: in the INFO line (and `Waiting.message`) a newline must not start a
    forged `approved` line, nor an escape sequence rewrite an operator's terminal (as the page and
    `gatekit approvals` escape them, docs/security.md "Web page")."""
    s = shared_service
    bot, cred = new_agent(s)
    heard: list[Waiting] = []
    caplog.set_level(logging.INFO, logger="gatekit.enforce")
    gate = s.gate(bot, cred, context=STAGING, on_wait=heard.append, report_every=0.05)
    pending = gate.submit({"tool": FORGED_TOOL, "args": {"table": "users"}})  # `db.*` in staging: escalates
    assert pending.wait(timeout=0.3) == "pending"
    lines = [r.getMessage() for r in caplog.records if r.name == "gatekit.enforce"] + [h.message for h in heard]
    assert lines
    for line in lines:
        assert not any(c in line for c in ("\n", "\r", "\x1b", "\u202e", "\u200b")), repr(line)
