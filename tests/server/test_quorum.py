"""The quorum as reviewers and agents see it: approvals that count, what is still missing, approvals that
would count for nothing refused at vote time, an approval taken back by a deny, and a waiting gate that says
what it waits for."""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

import pytest
from click.testing import CliRunner

from gatekit.cli import cli
from gatekit.enforce import Waiting
from tests.server.conftest import Served
from tests.server.test_attacks import (BIG, PAY, approve, audit_kinds, denial, new_agent, new_reviewer, refusal,
                                       wait_for)


def test_the_request_says_which_role_is_missing_and_never_counts_past_the_requirement(
        shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, fin1 = new_reviewer(s, "finance")
    _, fin2 = new_reviewer(s, "finance")
    sec_name, sec = new_reviewer(s, "security")
    rid = s.gate(bot, cred).submit(BIG).request_id  # critical: 2 approvals, roles security and finance
    assert fin1.get(rid)["quorum"] == {
        "required": 2, "roles": ["security", "finance"], "counted": 0, "counted_by": [], "not_counting": [],
        "missing": 2, "missing_roles": ["security", "finance"], "met": False,
        "summary": "0 of 2 approvals; missing roles `security`, `finance`"}
    approve(fin1, rid)
    q = fin1.get(rid)["quorum"]
    assert (q["counted"], q["missing_roles"], q["summary"]) == (1, ["security"], "1 of 2 approvals; missing role `security`")
    # a second finance approval fills no seat: refused at vote time, saying why, and nothing is recorded
    err = refusal(lambda: approve(fin2, rid))
    assert (err.status, err.code) == (409, "vote_not_counted")
    assert "role `finance` is already approved" in str(err) and "missing role `security`" in str(err)
    shown = fin1.get(rid)
    assert shown["status"] == "pending" and len(shown["votes"]) == 1 and shown["quorum"]["counted"] == 1
    done = approve(sec, rid)
    assert done["status"] == "approved"
    assert (done["quorum"]["counted"], done["quorum"]["required"], done["quorum"]["met"]) == (2, 2, True)
    assert done["quorum"]["summary"] == "2 of 2 approvals" and sec_name in done["quorum"]["counted_by"]


def test_the_cli_shows_what_is_still_missing(shared_service: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, fin = new_reviewer(s, "finance")
    rid = s.gate(bot, cred).submit(BIG).request_id
    approve(fin, rid)
    monkeypatch.setenv("GATEKIT_TOKEN", fin.credential)
    listed = CliRunner().invoke(cli, ["approvals", "list", "--server", s.url])
    line = next(x for x in listed.output.splitlines() if x.startswith(rid))
    assert "approvals 1/2 roles security,finance (missing role `security`)" in line, listed.output
    shown = CliRunner().invoke(cli, ["approvals", "show", rid, "--server", s.url])
    assert "approvals: 1 of 2 approvals; missing role `security`" in shown.output, shown.output


def test_an_approval_taken_back_by_a_deny_denies_and_is_audited(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    name, fin = new_reviewer(s, "finance")
    gate = s.gate(bot, cred)
    pending = gate.submit(BIG)
    rid = pending.request_id
    approve(fin, rid)
    assert refusal(lambda: approve(fin, rid)).code == "already_voted"  # one approval per person, still
    digest = fin.get(rid)["digest"]
    denied = fin.vote(rid, "deny", digest, reason="wrong invoice")
    assert denied["status"] == "denied" and f"denied by {name}, who had approved it earlier" in denied["note"]
    # the approve stays on the record as given; the deny is its own audit entry, and the chain verifies
    assert [(v["reviewer"], v["decision"]) for v in denied["votes"]] == [(name, "approve")]
    assert audit_kinds(s, rid)[-1] == "deny"
    assert denial(lambda: pending.run(lambda a: None)).code == "denied"
    assert refusal(lambda: fin.vote(rid, "deny", digest)).code == "not_pending"
    assert s.verify() == 0


def test_a_waiting_gate_reports_what_it_waits_for(shared_service: Served, caplog: pytest.LogCaptureFixture) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    _, fin = new_reviewer(s, "finance")
    _, sec = new_reviewer(s, "security")
    heard: list[Waiting] = []
    gate = s.gate(bot, cred, on_wait=heard.append, report_every=0.2)
    pending = gate.submit(BIG)
    rid = pending.request_id
    result: list[Any] = []
    caplog.set_level(logging.INFO, logger="gatekit.enforce")
    worker = threading.Thread(target=lambda: result.append(pending.run(lambda a: "paid")))
    worker.start()
    wait_for(lambda: len(heard) >= 1)
    approve(fin, rid)
    wait_for(lambda: any(h.needs == "1 of 2 approvals; missing role `security`" for h in heard))  # woken by the vote
    approve(sec, rid)
    worker.join(20)
    assert result == ["paid"]
    first = heard[0]
    assert (first.request_id, first.tool, first.status, first.missing) == (rid, "payment.send", "pending", 2)
    assert first.missing_roles == ("security", "finance") and first.left is not None and 10 < first.left <= 20  # the gate's timeout
    assert any(h.needs == "1 of 2 approvals; missing role `security`" for h in heard)
    assert heard[-1].status == "approved" and heard[-1].waited >= heard[0].waited
    messages = [r.getMessage() for r in caplog.records if r.name == "gatekit.enforce"]
    assert any(m.startswith(f"waiting for approval of `payment.send` ({rid}): 0 of 2 approvals; missing roles "
                            "`security`, `finance`; waited 0s") for m in messages), messages
    assert any(m == f"`payment.send` ({rid}): approved after {m.rsplit(' ', 1)[-1]}" for m in messages)


def test_a_gate_reports_every_interval_while_nothing_changes(shared_service: Served) -> None:
    s = shared_service
    bot, cred = new_agent(s)
    heard: list[Waiting] = []
    pending = s.gate(bot, cred, on_wait=heard.append, report_every=0.2).submit(PAY)
    assert pending.wait(timeout=1.0) == "pending"
    assert len(heard) >= 3 and {h.needs for h in heard} == {"0 of 1 approval; 1 more needed"}
    assert all(b.waited > a.waited for a, b in itertools.pairwise(heard))


def test_the_page_says_what_is_still_missing(shared_service: Served) -> None:
    from tests.server.test_web import Web

    s = shared_service
    bot, cred = new_agent(s)
    _, fin = new_reviewer(s, "finance")
    rid = s.gate(bot, cred).submit(BIG).request_id
    approve(fin, rid)
    web = Web(s.url)
    assert web.login(fin.credential).status == 303
    for page in (web.get("/").text, web.get(f"/requests/{rid}").text):
        assert "<strong>1</strong> of 2" in page
        assert "still needed: missing role <code>security</code>" in page
