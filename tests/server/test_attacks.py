"""Issue 10's attacks, each tried as an attacker would against a real `gatekit serve` on loopback: every one
must now fail to approve or to run (and tampering with the audit must make `gatekit audit verify` exit 1).

The agent's model is adversarial: it writes any file its OS user can, sends any payload through the gate,
and holds its own agent credential, which it can use for raw HTTP calls of its choosing.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from gatekit import Denied, Gate, load_policy, verify_approval
from gatekit.action import parse_ts
from gatekit.enforce.client import ApprovalsClient, ServiceError
from gatekit.enforce.identity import check_id
from gatekit.enforce.tokens import Approval, TokenRefused, action_digest, read_claims, sign_approval
from gatekit.errors import GatekitError
from gatekit.server.registry import Registry
from tests.server.conftest import POLICY, Served

PAY = {"tool": "payment.send", "args": {"amount": 250, "recipient": "ACME"}}
BIG = {"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}}
STAGING_DROP = {"tool": "db.drop", "args": {"table": "users"}}


# ---- helpers ---------------------------------------------------------------------------------------------
def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def new_agent(s: Served, name: str | None = None) -> tuple[str, str]:
    name = name or uid("bot")
    return name, s.add("agent", name)


def new_reviewer(s: Served, *roles: str, name: str | None = None) -> tuple[str, ApprovalsClient]:
    name = name or uid("rev")
    return name, s.client(s.add("reviewer", name, *roles))


def approve(reviewer: ApprovalsClient, rid: str, **kwargs: Any) -> dict[str, Any]:
    return reviewer.vote(rid, "approve", reviewer.get(rid)["digest"], **kwargs)


def refusal(fn: Callable[[], Any]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        fn()
    return caught.value


def denial(fn: Callable[[], Any]) -> Denied:
    with pytest.raises(Denied) as caught:
        fn()
    return caught.value


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def store(s: Served) -> sqlite3.Connection:
    """The service's SQLite file opened as an attacker who can write it would."""
    con = sqlite3.connect(s.state / "approvals.sqlite", timeout=30, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 30000")
    return con


def audit_kinds(s: Served, rid: str) -> list[str]:
    con = store(s)
    try:
        return [k for (k,) in con.execute("SELECT kind FROM audit WHERE request_id = ? ORDER BY seq", (rid,))]
    finally:
        con.close()


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def record(call: dict[str, Any], agent: str, user: str | None = None, context: dict | None = None
           ) -> dict[str, Any]:
    """The call as the gate pins it, for `verify_approval`."""
    return {**call, "agent": agent, "session": None, "user": user, "context": context or {}}


def service_key(s: Served) -> str:
    return s.http("GET", "/v1/public-key")[1]["key"]


# ---- the old attack: state the agent can write ---------------------------------------------------------
def test_files_the_agent_can_write_approve_nothing(shared_service: Served, tmp_path: Path) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    gate = s.gate(bot, cred, timeout=1)
    pending = gate.submit(PAY)
    rid = pending.request_id
    # the old broker's store holding this very request, approved in it by SQL as the agent did against main
    from gatekit.action import Action
    from gatekit.enforce.broker import Broker
    from gatekit.policy.decision import Decision

    old = Broker(tmp_path / "approvals.db")
    old.submit(Action(tool="payment.send", args=PAY["args"], agent=bot, action_id=rid),
               Decision("escalate", ("pay-100",), tier="standard"))
    old.close()
    con = sqlite3.connect(tmp_path / "approvals.db")
    assert con.execute("UPDATE requests SET status = 'approved'").rowcount == 1
    con.commit()
    con.close()
    # look-alikes of the service's own files anywhere the agent can write, and the service's root
    for where in (tmp_path, tmp_path / "state", s.root):
        where.mkdir(exist_ok=True)
        (where / "approvals.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)
        (where / "checkpoints.jsonl").write_text('{"count": 0}\n')
        (where / "approved").write_text(rid)
    ran: list[Any] = []
    refused = denial(lambda: pending.run(ran.append))
    assert refused.code == "timed_out" and ran == []
    assert s.client(cred).get(rid)["status"] == "timed_out"  # the gate's 1 s capped the request's time
    # the state directory itself is the service's user's alone
    assert (s.state.stat().st_mode & 0o777) == 0o700
    assert ((s.state / "service.key").stat().st_mode & 0o777) == 0o600


def test_an_agent_credential_cannot_vote(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    pending = s.gate(bot, cred).submit(PAY)
    digest = s.client(cred).get(pending.request_id)["digest"]
    err = refusal(lambda: s.client(cred).vote(pending.request_id, "approve", digest))
    assert (err.status, err.code) == (403, "forbidden")
    status, body = s.http("POST", f"/v1/requests/{pending.request_id}/votes",
                          {"decision": "approve", "evidence": digest, "reviewer": "bob"}, token=cred)
    assert (status, body["code"]) == (403, "forbidden")
    for token in (None, "gk_r_" + secrets.token_urlsafe(32), cred + "x"):
        status, body = s.http("POST", f"/v1/requests/{pending.request_id}/votes",
                              {"decision": "approve", "evidence": digest}, token=token)
        assert (status, body["code"]) == (401, "unauthenticated")
    assert s.client(cred).get(pending.request_id)["status"] == "pending"


def test_an_agent_sees_and_uses_only_its_own_requests(shared_service: Served) -> None:
    s = shared_service
    a, a_cred = new_agent(s)
    b, b_cred = new_agent(s)
    _, alice = new_reviewer(s)
    pending = s.gate(a, a_cred).submit(PAY)
    rid = pending.request_id
    b_client = s.client(b_cred)
    for path in (f"/v1/requests/{rid}", f"/v1/requests/{rid}?wait=0.1"):
        status, body = s.http("GET", path, token=b_cred)
        assert (status, body["code"]) == (404, "unknown_request")
    for status_filter in ("pending", "all"):
        assert [r for r in b_client.list(status_filter) if r["agent"] != b] == []
    assert [r["id"] for r in s.client(a_cred).list()] == [rid]
    approve(alice, rid)
    token = s.client(a_cred).get(rid)["token"]
    # b got hold of a's token (from a log, a shared file): it cannot use it, nor resume a's request
    err = refusal(lambda: b_client.consume(token, "k-" + secrets.token_hex(8)))
    assert (err.status, err.code) == (404, "unknown_request")
    stolen = denial(lambda: s.gate(b, b_cred).resume(rid))
    assert stolen.code == "error"
    err = refusal(lambda: b_client.outcome(rid, "executed"))
    assert err.status == 404
    # a reviewer credential does not file calls
    status, body = s.http("POST", "/v1/requests", {"action": PAY}, token=alice.credential)
    assert (status, body["code"]) == (403, "forbidden")
    ran: list[Any] = []
    pending.run(ran.append)
    assert len(ran) == 1


# ---- who approves: name variants and self-declared roles -----------------------------------------------
def variants(name: str) -> list[str]:
    """Spellings of `name` a person might use to pass as someone else: each must be refused or fold to `name`."""
    return [name.capitalize(), name.upper(), " " + name, name + " ", fullwidth(name), fullwidth(name.upper()),
            name.replace("a", "\u0430", 1), name.replace("i", "\u0131", 1), name[:3] + "\u200b" + name[3:],
            name + "\u00ad", name[:3] + " " + name[3:]]


def check_refused(name: str) -> bool:
    """Whether `name` cannot be an id at all (rather than folding to one)."""
    try:
        check_id(name)
    except ValueError:
        return True
    return False


def test_name_variants_cannot_be_registered(shared_service: Served) -> None:
    s = shared_service
    alice = uid("alice")
    s.add("reviewer", alice, "finance")
    for variant in variants(alice):
        for kind in ("reviewer", "agent", "executor"):
            with pytest.raises(GatekitError):
                s.add(kind, variant)
    registry = Registry(s.state)
    try:
        assert [p["id"] for p in registry.list() if p["id"].startswith(alice[:5])] == [alice]
    finally:
        registry.ledger.close()


def test_a_reviewer_cannot_approve_its_own_call_under_any_variant(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    alice, reviewer = new_reviewer(s, "finance", name=uid("alice"))
    for user in variants(alice):
        try:
            gate = s.gate(bot.upper(), cred, user=user)
        except ValueError:  # a look-alike or invisible character: refused, never compared
            assert check_refused(user)
            continue
        pending = gate.submit(PAY)
        shown = reviewer.get(pending.request_id)
        assert (shown["user"], shown["agent"]) == (alice, bot)
        err = refusal(lambda: approve(reviewer, pending.request_id))
        assert (err.status, err.code) == (403, "self_approval")
    folded = [u for u in variants(alice) if not check_refused(u)]
    assert len(folded) == 4
    for user in variants(alice):
        # nor by asserting the user per call, nor through a raw submission
        if check_refused(user):
            assert denial(lambda: s.gate(bot, cred).submit(PAY, user=user)).code == "malformed"
            status, body = s.http("POST", "/v1/requests", {"action": {**PAY, "user": user}}, token=cred)
            assert (status, body["code"]) == (400, "bad_user")
            continue
        pending = s.gate(bot, cred).submit(PAY, user=user)
        assert refusal(lambda: approve(reviewer, pending.request_id)).code == "self_approval"
        status, body = s.http("POST", "/v1/requests", {"action": {**PAY, "user": user}}, token=cred)
        assert status == 201 and body["user"] == alice
        assert refusal(lambda: approve(reviewer, body["id"])).code == "self_approval"


def test_gate_identities_are_canonical(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    pending = s.gate(bot.upper(), cred, user="U-Alice").submit(PAY)
    shown = s.client(cred).get(pending.request_id)
    assert (shown["agent"], shown["user"]) == (bot, "u-alice")
    assert shown["action"]["user"] == "u-alice"


def test_one_reviewer_cannot_satisfy_two_approvals(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    name, mallory = new_reviewer(s, "security", "finance")
    pending = s.gate(bot, cred, context={"env": "staging"}).submit(STAGING_DROP)
    rid = pending.request_id
    shown = mallory.get(rid)
    assert (shown["tier"], shown["approvals"]) == ("pair", 2)
    assert approve(mallory, rid)["status"] == "pending"
    assert refusal(lambda: approve(mallory, rid)).code == "already_voted"
    assert refusal(lambda: approve(mallory, rid, role="finance")).code == "already_voted"
    status, body = s.http("POST", f"/v1/requests/{rid}/votes", {"decision": "approve", "evidence": shown["digest"],
                                                                "reviewer": "bob"}, token=mallory.credential)
    assert (status, body["code"]) == (409, "already_voted")
    # no second name: every variant of the name is taken, and the credential is the only identity
    for variant in (name.upper(), fullwidth(name), " " + name):
        with pytest.raises(GatekitError):
            s.add("reviewer", variant, "security")
    after = mallory.get(rid)
    assert after["status"] == "pending" and [v["reviewer"] for v in after["votes"]] == [name]
    assert denial(lambda: s.gate(bot, cred, timeout=0.5).resume(rid).run(lambda a: None)).code == "timed_out"


def test_roles_come_from_the_registry_not_the_vote(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    fin, finance = new_reviewer(s, "finance")
    _, nobody = new_reviewer(s)
    pending = s.gate(bot, cred).submit(BIG)
    rid = pending.request_id
    shown = finance.get(rid)
    assert (shown["tier"], shown["approvals"], sorted(shown["roles"])) == ("critical", 2, ["finance", "security"])
    for role in ("security", "Security", fullwidth("security")):
        err = refusal(lambda: approve(finance, rid, role=role))
        assert (err.status, err.code) == (403, "role_not_held")
    err = refusal(lambda: approve(nobody, rid, role="security"))
    assert (err.status, err.code) == (403, "role_not_held")
    # fields a reviewer adds to its vote decide nothing: it is recorded as the credential's id
    status, body = s.http("POST", f"/v1/requests/{rid}/votes",
                          {"decision": "approve", "evidence": shown["digest"], "reviewer": "bob",
                           "roles": ["security"], "kind": "reviewer", "approvals": 99}, token=finance.credential)
    assert status == 200 and body["status"] == "pending"
    assert [(v["reviewer"], v["role"], v["evidence"]) for v in body["votes"]] == [(fin, "finance", shown["digest"])]
    # a second person, but nobody in security: the approval would fill no seat, so it is refused, and says why
    err = refusal(lambda: approve(nobody, rid))
    assert (err.status, err.code) == (409, "vote_not_counted") and "missing role `security`" in str(err)
    assert finance.get(rid)["status"] == "pending"
    _, security = new_reviewer(s, "security")
    assert approve(security, rid)["status"] == "approved"


def test_garbage_evidence_is_refused_not_an_error(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)
    for evidence in ("sha256:" + "0" * 64, "ｓha256:é", "\u0000", "\ud800"):
        status, body = s.http("POST", f"/v1/requests/{pending.request_id}/votes",
                              {"decision": "approve", "evidence": evidence}, token=alice.credential)
        assert (status, body["code"]) == (409, "evidence_changed")
    assert alice.get(pending.request_id)["status"] == "pending"


def test_other_sites_and_hosts_are_refused(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    rid = s.gate(bot, cred).submit(PAY).request_id
    digest = alice.get(rid)["digest"]
    vote = {"decision": "approve", "evidence": digest}
    # a page on another site posting with the reviewer's browser, and a rebound DNS name
    status, body = s.http("POST", f"/v1/requests/{rid}/votes", vote, token=alice.credential,
                          headers={"Origin": "http://evil.example"})
    assert (status, body["code"]) == (403, "bad_origin")
    status, _ = s.http("POST", f"/v1/requests/{rid}/votes", vote, token=alice.credential,
                       headers={"Host": "evil.example"})
    assert status == 400
    assert alice.get(rid)["status"] == "pending"


# ---- the call swapped after approval -------------------------------------------------------------------
@pytest.mark.parametrize("swap", ["action", "action+digest", "status+token"])
def test_a_store_row_swapped_after_approval_does_not_run(shared_service: Served, swap: str) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    gate = s.gate(bot, cred)
    pending = gate.submit(PAY)
    rid = pending.request_id
    evil = record({"tool": "payment.send", "args": {"amount": 9000, "recipient": "EVIL"}}, bot)
    if swap == "status+token":
        # the old attack on the new store: mark a pending request approved, with a token the attacker made
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        claims = read_claims(_approved_token(s, bot, cred, alice))
        forged = sign_approval(Ed25519PrivateKey.generate(), Approval(
            rid, action_digest(record(PAY, bot)), bot, claims.fingerprint, claims.expires_us, "n" * 32,
            claims.issued_us, claims.key_id))
        sql, args = "UPDATE requests SET status = 'approved', token = ?, nonce = ? WHERE id = ?", (forged, "n" * 32, rid)
    else:
        approve(alice, rid)
        sql = "UPDATE requests SET action = ?" + (", digest = ?" if swap == "action+digest" else "") + " WHERE id = ?"
        args = (json.dumps(evil), action_digest(evil), rid) if swap == "action+digest" else (json.dumps(evil), rid)
    con = store(s)
    con.execute(sql, args)
    con.close()
    ran: list[Any] = []
    refused = denial(lambda: pending.run(ran.append))
    assert refused.code == ("signature" if swap == "status+token" else "action") and ran == []
    # a gate resuming the request runs what the service now shows: that does not verify either
    resumed = denial(lambda: s.gate(bot, cred).resume(rid).run(ran.append))
    assert resumed.code in ("action", "signature", "replay") and ran == []
    if swap != "status+token":
        token = s.client(cred).get(rid)["token"]
        err = refusal(lambda: s.client(cred).consume(token, "k-" + secrets.token_hex(8)))
        assert err.code == "action"
        assert "refuse" in audit_kinds(s, rid)


def test_a_genuine_token_copied_into_another_request_still_runs_once(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    gate = s.gate(bot, cred)
    first, second = gate.submit(PAY), gate.submit(PAY)  # the same call twice; only the first is approved
    approve(alice, first.request_id)
    token = s.client(cred).get(first.request_id)["token"]
    con = store(s)
    con.execute("UPDATE requests SET status = 'approved', token = ?, nonce = ? WHERE id = ?",
                (token, read_claims(token).nonce, second.request_id))
    con.close()
    ran: list[Any] = []
    outcomes = sorted([_run(second, ran), _run(first, ran)])
    assert outcomes == ["ran", "replay"] and len(ran) == 1  # the token is its request's: one approval, one run
    assert s.client(cred).get(first.request_id)["status"] == "executed"


def _approved_token(s: Served, bot: str, cred: str, reviewer: ApprovalsClient) -> str:
    other = s.gate(bot, cred).submit(PAY)
    approve(reviewer, other.request_id)
    return s.client(cred).get(other.request_id)["token"]


def test_a_token_is_for_its_call_and_no_other(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)
    approve(alice, pending.request_id)
    token, key = s.client(cred).get(pending.request_id)["token"], service_key(s)
    call = record(PAY, bot)
    assert verify_approval(token, call, key).request_id == pending.request_id
    for other in ({**call, "args": {"amount": 9000, "recipient": "EVIL"}}, {**call, "args": {"amount": 250.0001,
                  "recipient": "ACME"}}, {**call, "tool": "payment.refund"}, {**call, "agent": "other-bot"},
                  {**call, "user": "u-bob"}, {**call, "session": "s-2"}, {**call, "context": {"env": "prod"}},
                  {**call, "args": {"amount": 250, "recipient": "ACME", "memo": "x"}}):
        with pytest.raises(TokenRefused) as refused:
            verify_approval(token, other, key)
        assert refused.value.code == "action"
    # the service's consume, given the call it is about to run, checks it too
    err = refusal(lambda: s.client(cred).consume(token, "k-" + secrets.token_hex(8),
                                                 {**call, "args": {"amount": 9000, "recipient": "EVIL"}}))
    assert err.code == "action"


def test_the_gate_runs_only_the_call_that_was_approved(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    args = {"amount": 250, "recipient": "ACME"}
    pending = s.gate(bot, cred).submit({"tool": "payment.send", "args": args})
    approve(alice, pending.request_id)
    args["recipient"] = "EVIL"  # the caller's dict changed after approval
    pending.action.args["amount"] = 9000
    ran: list[Any] = []
    assert denial(lambda: pending.run(ran.append)).code == "action" and ran == []
    assert s.client(cred).get(pending.request_id)["status"] == "approved"  # not consumed: nothing was spent


# ---- token replay, expiry, other keys, other policies --------------------------------------------------
def test_a_token_is_used_once(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    gate = s.gate(bot, cred)
    pending = gate.submit(PAY)
    rid = pending.request_id
    approve(alice, rid)
    token = s.client(cred).get(rid)["token"]
    agent = s.client(cred)
    first = agent.consume(token, "key-00000001")
    assert first["status"] == "executed"
    again = agent.consume(token, "key-00000001")  # the reply was lost: the same attempt is answered again
    assert again["status"] == "executed" and again["consumed_at"] == first["consumed_at"]
    err = refusal(lambda: agent.consume(token, "key-00000002"))
    assert err.code == "used"
    ran: list[Any] = []
    assert denial(lambda: pending.run(ran.append)).code == "replay" and ran == []
    assert audit_kinds(s, rid).count("consume") == 1


def test_a_retried_consume_runs_the_call_once(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)
    approve(alice, pending.request_id)
    ran: list[Any] = []
    pending.run(ran.append)
    # the gate's own handle, a second run, and a fresh gate resuming it: none runs it again
    assert denial(lambda: pending.run(ran.append)).code == "replay"
    assert denial(lambda: s.gate(bot, cred).resume(pending.request_id).run(ran.append)).code == "replay"
    assert len(ran) == 1
    assert audit_kinds(s, pending.request_id).count("consume") == 1


def test_an_expired_approval_does_not_run(tmp_path: Path) -> None:
    s = Served(tmp_path, policy=POLICY.replace("standard: {approvals: 1, timeout: 4h}",
                                               "standard: {approvals: 1, timeout: 4h, approval_ttl: 1s}"))
    try:
        bot, cred = new_agent(s)
        _, alice = new_reviewer(s)
        pending = s.gate(bot, cred).submit(PAY)
        rid = pending.request_id
        approved = approve(alice, rid)
        until = parse_ts(approved["approved_until"])
        assert until - parse_ts(approved["decided_at"]) == timedelta(seconds=1)
        token = s.client(cred).get(rid)["token"]
        wait_for(lambda: time.time() > until.timestamp() + 0.05, 5)
        with pytest.raises(TokenRefused) as refused:
            verify_approval(token, record(PAY, bot), service_key(s))
        assert refused.value.code == "expired"
        assert refusal(lambda: s.client(cred).consume(token, "k-" + secrets.token_hex(8))).code == "expired"
        ran: list[Any] = []
        assert denial(lambda: pending.run(ran.append)).code == "expired" and ran == []
        assert s.client(cred).get(rid)["status"] == "expired"
        assert "timeout" in audit_kinds(s, rid)
    finally:
        s.kill()


def test_a_token_signed_by_another_key_is_refused(shared_service: Served) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)
    rid = pending.request_id
    approve(alice, rid)
    claims = read_claims(s.client(cred).get(rid)["token"])
    attacker = Ed25519PrivateKey.generate()
    forged = sign_approval(attacker, claims)
    evil = record({"tool": "payment.send", "args": {"amount": 9000, "recipient": "EVIL"}}, bot)
    forged_evil = sign_approval(attacker, Approval(
        claims.request_id, action_digest(evil), bot, claims.fingerprint, claims.expires_us, claims.nonce,
        claims.issued_us, claims.key_id))
    for token, call in ((forged, record(PAY, bot)), (forged_evil, evil)):
        with pytest.raises(TokenRefused) as refused:
            verify_approval(token, call, service_key(s))
        assert refused.value.code == "signature"
        err = refusal(lambda: s.client(cred).consume(token, "k-" + secrets.token_hex(8)))
        assert (err.status, err.code) == (403, "signature")
    # the signature is over the whole token: another payload under the service's own signature fails too
    real = s.client(cred).get(rid)["token"]
    spliced = ".".join((forged_evil.split(".")[0], forged_evil.split(".")[1], real.split(".")[2]))
    assert refusal(lambda: s.client(cred).consume(spliced, "k-" + secrets.token_hex(8))).code == "signature"
    assert s.client(cred).get(rid)["status"] == "approved"


def test_a_gate_on_another_policy_is_refused_and_its_token_would_be_too(shared_service: Served,
                                                                          tmp_path: Path) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    other = tmp_path / "other.yaml"
    other.write_text(POLICY.replace("name: service-tests", "name: the-gates-own"))
    gate = Gate(load_policy(other), mode="enforce", approvals=s.url, credential=cred, agent=bot, timeout=20,
                poll=0.02)
    before = len(s.client(cred).list("all"))
    assert denial(lambda: gate.submit(PAY)).code == "fingerprint"  # refused before any reviewer is bothered
    assert len(s.client(cred).list("all")) == before
    pending = s.gate(bot, cred).submit(PAY)  # the service's own policy: filed, approved, then checked
    approve(alice, pending.request_id)
    token = s.client(cred).get(pending.request_id)["token"]
    with pytest.raises(TokenRefused) as refused:
        verify_approval(token, record(PAY, bot), service_key(s), fingerprint=gate.policy.fingerprint)
    assert refused.value.code == "fingerprint"


# ---- what the caller says about itself -----------------------------------------------------------------
def test_caller_supplied_identity_context_and_time_do_not_decide(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    user, alice = new_reviewer(s)
    _, bob = new_reviewer(s)
    gate = s.gate(bot, cred, user=user, context={"env": "prod"})
    claims = {"ts": "2999-01-01T00:00:00Z", "agent": "other-bot", "user": "u-bob", "session": "s-evil",
              "context": {"env": "staging"}}
    pending = gate.submit({**PAY, **claims})
    shown = alice.get(pending.request_id)
    assert (shown["agent"], shown["user"], shown["session"]) == (bot, user, None)
    assert shown["action"]["context"] == {"env": "prod"}
    assert shown["claimed"] == claims
    assert parse_ts(shown["requested_at"]).year < 2999
    assert refusal(lambda: approve(alice, pending.request_id)).code == "self_approval"  # "u-bob" decided nothing
    assert approve(bob, pending.request_id)["status"] == "approved"
    # prod's deny stays a deny whatever the payload says its context is
    assert denial(lambda: gate.submit({**STAGING_DROP, **claims})).code == "policy"
    # a claimed time far in the future does not disable a rate window
    mail = {"tool": "email.send", "args": {"to": "x@example.com"}}
    plain = s.gate(uid("bot"), cred)
    tricked = s.gate(uid("bot"), cred)
    expect = [plain.check(mail).decision for _ in range(6)]
    got = [tricked.check({**mail, "ts": "2999-01-01T00:00:00Z", "agent": uid("rot")}).decision for _ in range(6)]
    assert got == expect and "deny" in got


def test_raw_submissions_cannot_pick_their_agent_or_requirements(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    other, _ = new_agent(s)
    for agent in (other, "someone-else", bot.upper()):
        status, body = s.http("POST", "/v1/requests", {"action": {**PAY, "agent": agent}}, token=cred)
        assert (status, body["code"]) == (403, "agent_mismatch")
    # what a tier needs is the service's: a lax claimed tier, an `allow` or a huge timeout change nothing
    status, body = s.http("POST", "/v1/requests", {
        "action": {**BIG, "ts": "2999-01-01T00:00:00Z"}, "decision": {"decision": "allow", "tier": "standard"},
        "timeout": 10 ** 12, "approvals": 0}, token=cred)
    assert status == 201 and (body["tier"], body["approvals"]) == ("critical", 2)
    assert sorted(body["roles"]) == ["finance", "security"] and body["agent"] == bot
    assert parse_ts(body["expires_at"]) - parse_ts(body["requested_at"]) == timedelta(minutes=30)
    # a gate on another policy is refused outright
    status, body = s.http("POST", "/v1/requests", {"action": BIG, "fingerprint": "sha256:mine"}, token=cred)
    assert (status, body["code"]) == (409, "fingerprint")
    # a call the service's policy denies is denied, whatever the gate said
    status, body = s.http("POST", "/v1/requests", {"action": {"tool": "payment.send", "args": {
        "amount": 250, "recipient": "EVIL"}}, "decision": {"tier": "standard"}}, token=cred)
    assert status == 201 and body["status"] == "denied"
    # a tool spelled like a policy's tool in another case or Unicode form is denied, not let through
    for tool in ("Payment.Send", fullwidth("payment") + ".send"):
        status, body = s.http("POST", "/v1/requests", {"action": {"tool": tool, "args": PAY["args"]}}, token=cred)
        assert status == 201 and body["status"] == "denied"
    # values with no exact JSON form are refused, not stringified
    status, body = s.http("POST", "/v1/requests", b'{"action": {"tool": "payment.send", "args": {"amount": NaN}}}',
                          token=cred)
    assert (status, body["code"]) == (400, "bad_request")


# ---- a policy tightened after approval -----------------------------------------------------------------
TIGHTER = {
    "needs two with roles": POLICY.replace("standard: {approvals: 1, timeout: 4h}",
                                           "standard: {approvals: 2, roles: [security, finance], timeout: 4h}"),
    "now denied": POLICY.replace("rules:\n", "rules:\n  - {id: no-pay, tool: payment.send, action: deny, "
                                             "reason: Payments are frozen}\n"),
}


@pytest.mark.parametrize("change", sorted(TIGHTER))
def test_a_policy_tightened_after_approval_revokes_it(served: Served, change: str) -> None:
    bot, cred = new_agent(served)
    _, alice = new_reviewer(served)
    gate = served.gate(bot, cred)
    approved = gate.submit(PAY)
    approve(alice, approved.request_id)
    waiting = gate.submit(PAY)
    ran: list[Any] = []
    worker_result: list[Any] = []
    served.policy_path.write_text(TIGHTER[change])
    wait_for(lambda: alice.get(approved.request_id)["status"] != "approved")
    revoked = alice.get(approved.request_id)
    assert revoked["status"] == "revoked" and revoked["note"]
    assert "revoke" in audit_kinds(served, approved.request_id)
    assert denial(lambda: approved.run(ran.append)).code == "revoked" and ran == []
    worker = threading.Thread(target=lambda: worker_result.append(_run(waiting, ran)))
    worker.start()
    if change == "now denied":
        worker.join(20)
        assert alice.get(waiting.request_id)["status"] == "revoked"
        assert worker_result == ["revoked"] and ran == []
        return
    wait_for(lambda: alice.get(waiting.request_id)["approvals"] == 2)
    # the pending request needs the new quorum: an approval without its roles is no longer enough (it is refused)
    assert refusal(lambda: approve(alice, waiting.request_id)).code == "vote_not_counted"
    assert alice.get(waiting.request_id)["status"] == "pending"
    assert worker.is_alive() and ran == []
    _, finance = new_reviewer(served, "finance")
    _, security = new_reviewer(served, "security")
    assert approve(finance, waiting.request_id)["status"] == "pending"
    assert approve(security, waiting.request_id)["status"] == "approved"
    worker.join(20)
    assert worker_result == ["fingerprint"] and ran == []  # the gate still holds the old policy
    gate.reload(served.policy_path)
    assert waiting.run(lambda a: ran.append(a) or "paid") == "paid" and len(ran) == 1
    assert served.verify() == 0


def test_a_shorter_approval_ttl_after_approval_shortens_the_approval(served: Served) -> None:
    bot, cred = new_agent(served)
    _, alice = new_reviewer(served)
    pending = served.gate(bot, cred).submit(PAY)
    approved = approve(alice, pending.request_id)
    assert parse_ts(approved["approved_until"]) - parse_ts(approved["decided_at"]) == timedelta(minutes=15)
    served.policy_path.write_text(POLICY.replace("standard: {approvals: 1, timeout: 4h}",
                                                 "standard: {approvals: 1, timeout: 4h, approval_ttl: 1s}"))
    wait_for(lambda: alice.get(pending.request_id)["status"] == "expired")
    ran: list[Any] = []
    assert denial(lambda: pending.run(ran.append)).code in ("expired", "revoked") and ran == []


def test_a_tiers_roles_compare_canonically(tmp_path: Path) -> None:
    s = Served(tmp_path, policy=POLICY.replace("roles: [security, finance]", "roles: [Security, ＦＩＮＡＮＣＥ]"))
    try:
        bot, cred = new_agent(s)
        _, finance = new_reviewer(s, "finance")
        _, security = new_reviewer(s, "SECURITY")
        pending = s.gate(bot, cred).submit(BIG)
        assert sorted(finance.get(pending.request_id)["roles"]) == ["finance", "security"]
        assert approve(finance, pending.request_id)["status"] == "pending"
        assert approve(security, pending.request_id)["status"] == "approved"
    finally:
        s.kill()


def _run(pending: Any, ran: list[Any]) -> str:
    try:
        pending.run(ran.append)
    except Denied as exc:
        return exc.code
    return "ran"


def test_approvals_expire_by_default(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    pending = s.gate(bot, cred).submit(PAY)
    approved = approve(alice, pending.request_id)
    assert approved["tier"] == "standard"  # no approval_ttl in this tier: the service's 15m applies
    ttl = parse_ts(approved["approved_until"]) - parse_ts(approved["decided_at"])
    assert timedelta(0) < ttl <= timedelta(minutes=15)
    claims = read_claims(s.client(cred).get(pending.request_id)["token"])
    assert claims.expires_us == round(parse_ts(approved["approved_until"]).timestamp() * 1e6)
    with pytest.raises(TokenRefused) as refused:
        verify_approval(s.client(cred).get(pending.request_id)["token"], record(PAY, bot), service_key(s),
                        now=time.time() + 15 * 60 + 1)
    assert refused.value.code == "expired"


# ---- the audit -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state of a stopped service after a call was filed, approved and run: the audit to tamper with."""
    s = Served(tmp_path_factory.mktemp("audited"))
    try:
        bot, cred = new_agent(s)
        _, alice = new_reviewer(s)
        pending = s.gate(bot, cred).submit(PAY)
        approve(alice, pending.request_id)
        pending.run(lambda a: None)
    finally:
        assert s.stop() == 0
    return s.state


def tampered(audited: Path, root: Path) -> Served:
    """A copy of `audited`, with a service (not started) over it."""
    shutil.copytree(audited, root / "state")
    return Served(root, start=False)


def test_an_untouched_audit_verifies_and_serves(audited: Path, tmp_path: Path) -> None:
    s = tampered(audited, tmp_path)
    assert s.verify() == 0
    s.start()
    try:
        assert s.http("GET", "/healthz")[0] == 200
    finally:
        assert s.stop() == 0
    assert s.verify() == 0


def _modify(con: sqlite3.Connection, state: Path) -> None:
    con.execute("UPDATE audit SET body = replace(body, '\"amount\":250', '\"amount\":9000') "
                "WHERE seq = (SELECT min(seq) FROM audit WHERE kind = 'submit')")


def _delete(con: sqlite3.Connection, state: Path) -> None:
    con.execute("DELETE FROM audit WHERE seq = (SELECT min(seq) FROM audit WHERE kind = 'vote')")


def _reorder(con: sqlite3.Connection, state: Path) -> None:
    a, b = [r[0] for r in con.execute("SELECT seq FROM audit WHERE kind IN ('vote', 'approve') ORDER BY seq")][:2]
    con.execute("UPDATE audit SET seq = -1 WHERE seq = ?", (a,))
    con.execute("UPDATE audit SET seq = ? WHERE seq = ?", (a, b))
    con.execute("UPDATE audit SET seq = ? WHERE seq = -1", (b,))


def _truncate(con: sqlite3.Connection, state: Path) -> None:
    con.execute("DELETE FROM audit WHERE seq > (SELECT max(seq) - 3 FROM audit)")


def _truncate_with_checkpoints(con: sqlite3.Connection, state: Path) -> None:
    _truncate(con, state)
    con.execute("DELETE FROM checkpoints WHERE count > (SELECT max(seq) FROM audit)")


def _wipe(con: sqlite3.Connection, state: Path) -> None:
    con.execute("DELETE FROM audit")
    con.execute("DELETE FROM checkpoints")


def _wipe_and_export(con: sqlite3.Connection, state: Path) -> None:
    _wipe(con, state)
    (state / "checkpoints.jsonl").unlink()


def _rechain(con: sqlite3.Connection, state: Path) -> None:
    from gatekit.server.audit import GENESIS, entry_hash

    _modify(con, state)
    prev = GENESIS
    for seq, kind, rid, body in con.execute("SELECT seq, kind, request_id, body FROM audit ORDER BY seq").fetchall():
        digest = entry_hash(prev, kind, rid, body)
        con.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest


def _rechain_and_export(con: sqlite3.Connection, state: Path) -> None:
    _rechain(con, state)
    (state / "checkpoints.jsonl").unlink()


def _forge_checkpoint(con: sqlite3.Connection, state: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gatekit.server.audit import Chain

    _rechain(con, state)
    kid = con.execute("SELECT key_id FROM checkpoints LIMIT 1").fetchone()[0]
    con.execute("DELETE FROM checkpoints")
    chain = Chain(Ed25519PrivateKey.generate(), state / "checkpoints.jsonl")
    chain.key_id = kid  # claim to be the service's key
    point = chain.checkpoint(con, int(time.time() * 1e6))
    chain.exported(point)


def _approve_in_store(con: sqlite3.Connection, state: Path) -> None:
    con.execute("UPDATE requests SET status = 'approved', consumed_at = NULL")


def _swap_call_in_store(con: sqlite3.Connection, state: Path) -> None:
    con.execute("UPDATE requests SET action = replace(action, '\"amount\":250', '\"amount\":9000')")


def _add_reviewer_in_store(con: sqlite3.Connection, state: Path) -> None:
    from gatekit.server.registry import credential_hash

    con.execute("INSERT INTO principals (id, kind, roles, break_glass, credential_hash, created_at) "
                "VALUES ('mallory', 'reviewer', '[\"security\", \"finance\"]', 1, ?, 0)",
                (credential_hash("gk_r_mallory-knows-this"),))


def _steal_credential_in_store(con: sqlite3.Connection, state: Path) -> None:
    from gatekit.server.registry import credential_hash

    con.execute("UPDATE principals SET credential_hash = ? WHERE kind = 'reviewer'",
                (credential_hash("gk_r_mallory-knows-this"),))


def _grant_role_in_store(con: sqlite3.Connection, state: Path) -> None:
    con.execute("UPDATE principals SET roles = '[\"security\"]', break_glass = 1 WHERE kind = 'reviewer'")


def _delete_vote_in_store(con: sqlite3.Connection, state: Path) -> None:
    con.execute("DELETE FROM votes")


TAMPERS = {f.__name__.strip("_"): f for f in (_modify, _delete, _reorder, _truncate, _truncate_with_checkpoints,
                                               _wipe, _wipe_and_export, _rechain, _rechain_and_export,
                                               _forge_checkpoint, _approve_in_store, _swap_call_in_store,
                                               _add_reviewer_in_store, _steal_credential_in_store,
                                               _grant_role_in_store, _delete_vote_in_store)}


def test_a_rechain_signed_with_another_key_fails_against_the_kept_public_key(audited: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gatekit.server.audit import Chain
    from gatekit.server.keys import public_pem

    kept = tmp_path / "kept.pub"  # the operator's copy of the public key, kept away from the state directory
    kept.write_bytes((audited / "service.pub").read_bytes())
    s = tampered(audited, tmp_path / "copy")
    con = store(s)
    _rechain(con, s.state)
    attacker = Ed25519PrivateKey.generate()
    con.execute("DELETE FROM checkpoints")
    (s.state / "checkpoints.jsonl").unlink()
    chain = Chain(attacker, s.state / "checkpoints.jsonl")
    chain.exported(chain.checkpoint(con, int(time.time() * 1e6)))
    con.close()
    (s.state / "service.pub").write_bytes(public_pem(attacker.public_key()))
    checked = subprocess.run([sys.executable, "-m", "gatekit.cli", "audit", "verify", "--state", str(s.state),
                              "--public-key", str(kept)], capture_output=True, text=True)
    assert checked.returncode == 1 and "TAMPERED" in checked.stderr
    with pytest.raises(RuntimeError):  # the service checks with its own key, not with `service.pub`
        s.start()


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_tampered_audit_does_not_verify_and_the_service_refuses_it(audited: Path, tmp_path: Path,
                                                                     tamper: str) -> None:
    s = tampered(audited, tmp_path)
    con = store(s)
    TAMPERS[tamper](con, s.state)
    con.close()
    assert s.verify() == 1
    assert "TAMPERED" in s.verified and "store failed" not in s.verified  # found the tampering, not a crash
    with pytest.raises(RuntimeError):
        s.start()
    assert "refusing to start" in s.log.read_text()


# ---- agents bound to their users and context ------------------------------------------------------------
def test_a_bound_agent_cannot_claim_another_user_or_context_even_raw(shared_service: Served) -> None:
    """With its credential alone, an agent process talks to the service directly: the registry's bindings hold."""
    s = shared_service
    bot = uid("bot")
    cred = Registry(s.state).add("agent", bot, users=("u-alice",), context={"env": "prod"})
    alice = uid("u-alice")  # a reviewer who is not the bound user: the bound user's own vote is the attack
    _, reviewer = new_reviewer(s, name=alice)
    good = {**PAY, "agent": bot, "user": "u-alice", "context": {"env": "prod"}}
    status, body = s.http("POST", "/v1/requests", {"action": good}, token=cred)
    assert status == 201 and body["user"] == "u-alice"
    for claim, code in (({"user": "u-bob"}, "user_not_allowed"), ({"user": None}, "user_not_allowed"),
                        ({"context": {"env": "staging"}}, "context_mismatch"), ({"context": {}}, "context_mismatch")):
        status, body = s.http("POST", "/v1/requests", {"action": {**good, **claim}}, token=cred)
        assert (status, body["code"]) == (403, code), claim
    gate = s.gate(bot, cred, user="u-bob", context={"env": "prod"})  # a gate misconfigured the same way
    assert denial(lambda: gate.submit(PAY)).code == "user_not_allowed"
    listed = {p["id"]: p for p in Registry(s.state).list()}
    assert listed[bot]["users"] == ["u-alice"] and listed[bot]["context"] == {"env": "prod"}
    assert reviewer.list("all") is not None


def test_principals_add_binds_users_and_context_from_the_cli(shared_service: Served) -> None:
    s = shared_service
    bot = uid("bot")
    out = subprocess.run([sys.executable, "-m", "gatekit.cli", "principals", "add", "agent", bot, "--user", "U-Carol",
                          "--context", "env=prod", "--context", "region=\"eu\"", "--state", str(s.state)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().startswith("gk_a_") and len(out.stdout.splitlines()) == 1
    listed = {p["id"]: p for p in Registry(s.state).list()}
    assert listed[bot]["users"] == ["u-carol"] and listed[bot]["context"] == {"env": "prod", "region": "eu"}
    refused = subprocess.run([sys.executable, "-m", "gatekit.cli", "principals", "add", "reviewer", uid("r"),
                              "--user", "u-x", "--state", str(s.state)], capture_output=True, text=True)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr


def test_the_client_does_not_follow_a_redirect_with_its_credential(tmp_path: Path) -> None:
    import http.server

    seen: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization") or "")
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApprovalsClient(f"http://127.0.0.1:{server.server_address[1]}", "gk_a_secret")
        assert refusal(lambda: client.get("req-1")).status == 302
        assert seen == ["Bearer gk_a_secret"]  # asked once, never followed to /elsewhere
    finally:
        server.shutdown()


class _KeptAlive:
    """An HTTP/1.1 server answering every GET with a pending request; it counts the connections it accepted
    and the POSTs it read, and can be told to drop connections (a restart, an idle close) or to drop a POST
    after reading it (a crash mid-answer)."""

    def __init__(self) -> None:
        import http.server

        self.connections = 0
        self.posts: list[bytes] = []
        self.close_next = False
        self.break_posts = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802
                body = json.dumps({"id": "req-1", "status": "pending"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if outer.close_next:
                    outer.close_next = False
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                outer.posts.append(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.break_posts:
                    self.close_connection = True  # read it, answer nothing
                    return
                self.do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_client_keeps_its_connection_and_replaces_one_the_service_closed() -> None:
    fake = _KeptAlive()
    try:
        client = ApprovalsClient(fake.url, "gk_a_secret")
        for _ in range(5):
            assert client.get("req-1")["status"] == "pending"
        assert fake.connections == 1  # one handshake for five calls
        fake.close_next = True  # the service closes the connection after this answer (restart, idle timeout)
        client.get("req-1")
        time.sleep(0.05)
        assert client.get("req-1")["status"] == "pending"  # a new connection, no error
        assert fake.connections == 2
        seen: list[int] = []  # each thread its own connection

        def other() -> None:
            client.get("req-1")
            seen.append(fake.connections)
        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=10)
        assert seen == [3]
    finally:
        fake.server.shutdown()


def test_a_submission_that_broke_after_it_was_sent_on_a_kept_connection_is_not_sent_again() -> None:
    fake = _KeptAlive()
    try:
        client = ApprovalsClient(fake.url, "gk_a_secret")
        client.get("req-1")  # the connection is kept
        fake.break_posts = True
        error = refusal(lambda: client.submit({"action": {"tool": "payment.send"}}))
        assert error.code == "unreachable" and error.transient
        assert len(fake.posts) == 1  # sent once: it may have been filed, so the gate fails closed
    finally:
        fake.server.shutdown()
