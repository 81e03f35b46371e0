"""An outside review's attacks on the approvals service and enforce mode, each tried as an attacker would
against a real `gatekit serve` on loopback (the threat model of docs/security.md: the attacker holds an
agent credential, controls the agent's process, and runs a page a reviewer visits). Each failed before the
fix it names.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gatekit import verify_approval
from gatekit.enforce.client import ServiceError
from gatekit.policy.decide import decide
from tests.server.conftest import POLICY, Served
from tests.server.test_attacks import (PAY, approve, audited, denial, new_agent, new_reviewer, record,  # noqa: F401
                                       refusal, service_key, store, tampered, uid)
from tests.server.test_web import Web


# ---- one approval, run twice through the execution-broker pattern ------------------------------------------
def test_an_executor_is_not_fooled_by_a_replayed_call_and_key(shared_service: Served) -> None:
    """docs/security.md's payment backend consumes with `key=call["action_id"]`: a key the agent writes. The
    agent sends the same approved call and token twice; an idempotent answer to the second consume would make
    the backend pay twice."""
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    runner = s.client(s.add("executor", uid("payments")))
    pending = s.gate(bot, cred).submit(PAY)
    approve(alice, pending.request_id)
    token = s.client(cred).get(pending.request_id)["token"]
    public_key = service_key(s)
    paid: list[Any] = []

    def send_payment(call: dict[str, Any], token: str) -> None:  # the backend, as the docs write it
        verify_approval(token, call, public_key)
        runner.consume(token, key=call["action_id"], action=call)
        paid.append(call["args"])

    call = {**record(PAY, bot), "action_id": "a-0000000001"}
    send_payment(call, token)
    assert refusal(lambda: send_payment(call, token)).code == "used"
    assert paid == [PAY["args"]]


# ---- an error in a rule downgrades the approval it needs ---------------------------------------------------
@pytest.mark.parametrize("amount", ["9_0000", "+90000", "90000."])
def test_an_amount_the_policy_cannot_read_keeps_the_strictest_tier(shared_service: Served, amount: str) -> None:
    """Python reads `9_0000`, `+90000` and `90000.` as 90000; the policy cannot order them, so both payment
    rules error and `on_error: escalate` escalates, but with no tier: one approval with no role would release a
    payment that needs security and finance."""
    s = shared_service
    bot, cred = new_agent(s)
    _, anyone = new_reviewer(s)
    pending = s.gate(bot, cred).submit({"tool": "payment.send", "args": {"amount": amount, "recipient": "ACME"}})
    filed = anyone.get(pending.request_id)
    assert (filed["tier"], filed["approvals"], sorted(filed["roles"])) == ("critical", 2, ["finance", "security"])
    # one approval with no role fills no seat of that tier: refused, and the request stays pending
    assert refusal(lambda: approve(anyone, pending.request_id)).code == "vote_not_counted"
    assert anyone.get(pending.request_id)["status"] == "pending"


# ---- crashing or hanging the service -----------------------------------------------------------------------
def test_an_agent_cannot_bury_other_requests_under_its_own(shared_service: Served) -> None:
    """Reviewers list (and the page shows) the oldest 1000 pending requests: one agent filing a thousand
    would hide every later request until it timed out."""
    s = shared_service
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s)
    body = {"action": {**PAY, "agent": bot}}
    codes = [s.http("POST", "/v1/requests", body, token=cred)[0] for _ in range(120)]
    assert codes.count(201) == 100 and codes[100:] == [429] * 20
    other, other_cred = new_agent(s)
    pending = s.gate(other, other_cred).submit(PAY)
    assert pending.request_id in {r["id"] for r in alice.list()}


# ---- a tampered store that verifies --------------------------------------------------------------------------
def test_requirements_lowered_in_the_store_do_not_verify(served: Served) -> None:
    """Who can write the store can lower a pending request's requirements (2 approvals with security and
    finance to 1 with none) and let one reviewer release it; the rows the chain recorded must then disagree."""
    s = served
    bot, cred = new_agent(s)
    _, alice = new_reviewer(s, "finance")
    pending = s.gate(bot, cred).submit({"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}})
    con = store(s)
    con.execute("UPDATE requests SET approvals = 1, roles = '[]', tier = 'standard' WHERE id = ?",
                (pending.request_id,))
    con.close()
    assert approve(alice, pending.request_id)["status"] == "approved"  # the service trusts its store ...
    assert s.verify() == 1 and "TAMPERED" in s.verified  # ... and the audit finds it out


def _set(sql: str) -> Any:
    def tamper(con: sqlite3.Connection) -> None:
        assert con.execute(sql).rowcount >= 1
    return tamper


ROW_TAMPERS = {
    "user": _set("UPDATE requests SET user = 'u-nobody'"),  # the self-approval check reads this column
    "approvals": _set("UPDATE requests SET approvals = 0"),
    "roles": _set("UPDATE requests SET roles = '[]', tier = NULL"),
    "ttl": _set("UPDATE requests SET approval_ttl_us = approval_ttl_us * 1000"),
    "expiry": _set("UPDATE requests SET expires_at = expires_at + 86400000000"),
    "consumer": _set("UPDATE requests SET consume_key = 'k-attacker', consumed_by = 'someone'"),
    "vote_role": _set("UPDATE votes SET role = 'security'"),
    "vote_reviewer": _set("UPDATE votes SET reviewer = 'someone-else'"),
    # the digest's last hex digit changed (to 1 where it was 0: setting it to 0 changed nothing one time in 16)
    "vote_evidence": _set("UPDATE votes SET evidence = substr(evidence, 1, length(evidence) - 1) || "
                          "CASE WHEN substr(evidence, -1) = '0' THEN '1' ELSE '0' END"),
}


@pytest.mark.parametrize("tamper", sorted(ROW_TAMPERS))
def test_a_request_or_vote_edited_in_the_store_does_not_verify(audited: Path, tmp_path: Path,  # noqa: F811
                                                              tamper: str) -> None:
    s = tampered(audited, tmp_path)
    con = store(s)
    con.execute("PRAGMA foreign_keys = OFF")
    ROW_TAMPERS[tamper](con)
    con.close()
    assert s.verify() == 1
    assert "TAMPERED" in s.verified and "store failed" not in s.verified


# ---- what reviewers are shown ----------------------------------------------------------------------------
SPOOF = "\u202eEMCA"  # a right-to-left override: shown as-is, it reads `ACME`
ESCAPE = "\x1b[2K\x1b[1A\x1b[2Kpayment.send 50 to ACME"  # erases the line above and writes another


def _spoofed(s: Served) -> tuple[str, str]:
    """A request filed raw with the agent credential: arguments, tool and the gate's reasons written to deceive."""
    bot, cred = new_agent(s)
    body = {"action": {"tool": "refund.issue\u200b\u202e", "agent": bot, "session": "s\u0085\u2028x",
                       "args": {"amount": 9000, "recipient": SPOOF, "memo": ESCAPE}},
            "decision": {"rules": ["\x1b]0;owned\x07pay-100"], "reasons": [ESCAPE], "tier": "standard"}}
    status, filed = s.http("POST", "/v1/requests", body, token=cred)
    assert status == 201 and filed["status"] == "pending"
    return filed["id"], filed["digest"]


def _unseen(text: str) -> list[str]:
    return sorted({c for c in text if not c.isprintable() and c not in "\n\t"})


def test_the_page_shows_bidi_overrides_and_invisible_characters(shared_service: Served) -> None:
    s = shared_service
    rid, _ = _spoofed(s)
    name = uid("rev")
    web = Web(s.url)
    assert web.login(s.add("reviewer", name)).status == 303
    for page in (web.get("/").text, web.get(f"/requests/{rid}").text):
        assert _unseen(page) == []
        assert "\\u202eEMCA" in page and "\\u001b[2K" in page


def test_the_cli_shows_no_escape_sequence_or_override_to_the_reviewer(shared_service: Served) -> None:
    import os
    import subprocess
    import sys

    s = shared_service
    rid, digest = _spoofed(s)
    env = {**os.environ, "GATEKIT_TOKEN": s.add("reviewer", uid("rev"))}
    for args in (["show", rid], ["list"], ["show", rid, "--json"], ["deny", rid, "--reason", "spoofed"]):
        done = subprocess.run([sys.executable, "-m", "gatekit.cli", "approvals", *args, "--server", s.url],
                              capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert _unseen(done.stdout + done.stderr) == [], args
    shown = subprocess.run([sys.executable, "-m", "gatekit.cli", "approvals", "show", rid, "--json", "--server",
                            s.url], capture_output=True, text=True, env=env).stdout
    assert json.loads(shown)["action"]["args"]["recipient"] == SPOOF  # JSON output still reads back exactly


# ---- the gate's own path -------------------------------------------------------------------------------------
def test_a_guarded_functions_keywords_cannot_stand_in_for_its_other_arguments(tmp_path: Path) -> None:
    """`guard` builds the call's args from the bound arguments, merging `**kwargs` in last: a keyword named
    like the `*args` parameter replaced, in what the policy saw, the arguments that actually ran."""
    from gatekit import Denied, Gate, load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nname: shell\ndefault: allow\nrules:\n"
                      "  - {id: no-rm, tool: shell.run, action: deny, when: {args.argv: {contains: rm}}}\n")
    gate = Gate(load_policy(policy), mode="enforce", agent="a")
    ran: list[Any] = []

    @gate.guard("shell.run")
    def run(*argv: str, **env: Any) -> None:
        ran.append(argv)

    assert denial(lambda: run("rm", "-rf", "/")).code == "policy"
    assert denial(lambda: run("rm", "-rf", "/", argv=["ls"])).code == "malformed"
    run("ls", "-l", LANG="C")
    assert ran == [("ls", "-l")]
