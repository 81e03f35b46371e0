"""The gateway end to end, over stdio and over Streamable HTTP: the SDK's client, `gatekit mcp proxy`, a real
MCP server, and a real approvals service with a reviewer voting from a thread.

Each transport gets one gateway and one client session for the module (stdio: the client starts the gateway,
as Claude Desktop does, and speaks the 2026-07-28 protocol; HTTP: the gateway listens on loopback and the
client speaks the handshake protocol), so the tests below run twice and share their gateway's log.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Iterator

import pytest

from tests.mcp.conftest import (AGENT, REVIEWER, USER, Session, World, http_gateway, session, stdio_session, text,
                                wait_for)


@pytest.fixture(scope="module", params=["stdio", "http"])
def gw(request: pytest.FixtureRequest, world: World, portal) -> Iterator[Session]:
    if request.param == "stdio":
        with stdio_session(portal, world, "stdio") as s:
            yield s
    else:
        with http_gateway(world, "http") as (process, marker, log):
            with session(portal, process.url, name="http", marker=marker, log=log, mode="legacy") as s:
                yield s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_client_sees_the_servers_tools_under_its_name(gw: Session) -> None:
    listed = gw.run(lambda c: c.list_tools())
    assert {t.name for t in listed.tools} >= {"echo", "pay", "delete_rows", "crash", "slow"}
    pay = next(t for t in listed.tools if t.name == "pay")
    assert set(pay.input_schema["properties"]) == {"amount", "recipient"}  # the upstream's schema, as it is
    assert gw.client.server_info.name == "toolserver"


def test_an_allowed_call_is_forwarded_and_logged(gw: Session) -> None:
    word = unique("hello")
    result = gw.call("echo", {"text": word})
    assert not result.is_error and text(result) == word
    assert ("echo", {"text": word}) in gw.ran()
    [line] = gw.logged(tool="echo", args__text=word)
    assert line["decision"] == "allow" and line["outcome"] == "executed" and line["mode"] == "enforce"
    assert line["agent"] == AGENT and line["user"] == USER and line["context"] == {"server": "toolserver"}
    assert line["executed_hash"] == line["evidence_hash"] and line["latency_ms"] > 0


def test_a_denied_call_is_an_error_result_with_the_rules_reason_and_never_runs(gw: Session) -> None:
    recipient = "EVIL"
    result = gw.call("pay", {"amount": 5, "recipient": recipient})
    assert result.is_error and "Blocked recipient EVIL" in text(result)  # a result the model reads, not an error
    assert result.meta["gatekit"]["rules"] == ["pay-blocked"] and result.meta["gatekit"]["code"] == "policy"
    table = unique("users")
    result = gw.call("delete_rows", {"table": table})
    assert result.is_error and "Nobody deletes rows through the gateway" in text(result)
    assert not [r for r in gw.ran() if r[0] == "delete_rows" or r[1].get("recipient") == recipient]
    [line] = gw.logged(tool="delete_rows", args__table=table)
    assert (line["decision"], line["outcome"], line["rules"]) == ("deny", "blocked", ["no-deletes"])
    assert line["executed_hash"] is None


def test_an_escalated_call_waits_with_progress_and_runs_once_approved(gw: Session, world: World) -> None:
    recipient = unique("ACME")
    vote = world.reviewer.vote_when_filed(recipient)
    gw.progress.clear()
    result = gw.call("pay", {"amount": 250, "recipient": recipient}, progress=True)
    assert not result.is_error and text(result) == f"paid 250.00 to {recipient}"
    request_id = vote.result(timeout=5)["id"]
    assert [r for r in gw.ran() if r[1].get("recipient") == recipient] == [("pay", {"amount": 250.0,
                                                                                  "recipient": recipient})]
    assert any(request_id in (m or "") for _, _, m in gw.progress)  # the client was told what it waits for
    values = [v for v, _, _ in gw.progress]
    assert values == sorted(set(values))  # progress only increases
    assert world.reviewer.client.get(request_id)["status"] == "executed"
    [line] = gw.logged(tool="pay", args__recipient=recipient)
    assert (line["decision"], line["outcome"], line["request_id"]) == ("escalate", "executed", request_id)
    assert [(a["reviewer"], a["decision"]) for a in line["approvals"]] == [(REVIEWER, "approve")]


def test_a_reviewers_denial_is_a_refusal(gw: Session, world: World) -> None:
    recipient = unique("Globex")
    vote = world.reviewer.vote_when_filed(recipient, "deny")
    result = gw.call("pay", {"amount": 300, "recipient": recipient})
    vote.result(timeout=5)
    assert result.is_error and "denied by a reviewer" in text(result) and result.meta["gatekit"]["code"] == "denied"
    assert not [r for r in gw.ran() if r[1].get("recipient") == recipient]
    [line] = gw.logged(tool="pay", args__recipient=recipient)
    assert line["outcome"] == "denied" and line["approvals"][0]["decision"] == "deny"


def test_an_escalation_nobody_answers_times_out_as_a_refusal(gw: Session) -> None:
    recipient = unique("Initech")
    started = time.monotonic()
    result = gw.call("pay", {"amount": 20000, "recipient": recipient})  # tier `brief`: two seconds
    assert result.is_error and "not approved in time" in text(result)
    assert result.meta["gatekit"]["code"] == "timed_out" and time.monotonic() - started < 15
    assert not [r for r in gw.ran() if r[1].get("recipient") == recipient]
    [line] = gw.logged(tool="pay", args__recipient=recipient)
    assert (line["decision"], line["tier"], line["outcome"]) == ("escalate", "brief", "timed_out")


def test_a_cancelled_wait_withdraws_the_request_and_a_late_approval_runs_nothing(gw: Session, world: World) -> None:
    recipient = unique("Umbrella")
    call = gw.start("pay", {"amount": 900, "recipient": recipient})
    request = wait_for(lambda: world.reviewer.pending(recipient))
    call.cancel()  # the client sends notifications/cancelled
    with pytest.raises(CancelledError):
        call.result(timeout=5)
    shown = wait_for(lambda: (r := world.reviewer.client.get(request["id"]))["status"] != "pending" and r)
    assert shown["status"] == "withdrawn" and "cancelled" in shown["note"]
    with pytest.raises(Exception) as late:  # the reviewer approves after the client gave up
        world.reviewer.client.vote(request["id"], "approve", request["digest"])
    assert getattr(late.value, "code", None) == "not_pending"
    line = wait_for(lambda: gw.logged(tool="pay", args__recipient=recipient))[0]
    assert line["outcome"] == "withdrawn" and line["request_id"] == request["id"]
    time.sleep(0.3)
    assert not [r for r in gw.ran() if r[1].get("recipient") == recipient]


@pytest.mark.parametrize("gw", ["http"], indirect=True)  # over stdio the client going away ends the gateway:
def test_an_http_client_going_away_while_a_call_waits_withdraws_it(gw: Session, world: World, portal) -> None:
    # test_gateway_faults.py covers that case
    recipient = unique("Vanished")
    with session(portal, gw.url, name="second", marker=gw.marker, log=gw.log, mode="legacy") as other:
        other.start("pay", {"amount": 650, "recipient": recipient})
        request = wait_for(lambda: world.reviewer.pending(recipient))
    # the second client closed its session (DELETE); the gateway keeps serving the first
    shown = wait_for(lambda: (r := world.reviewer.client.get(request["id"]))["status"] != "pending" and r)
    assert shown["status"] == "withdrawn"
    assert wait_for(lambda: gw.logged(args__recipient=recipient))[0]["outcome"] == "withdrawn"
    assert not [r for r in gw.ran() if r[1].get("recipient") == recipient]


def test_concurrent_calls_each_get_their_own_answer(gw: Session, world: World) -> None:
    recipient = unique("Hooli")
    vote = world.reviewer.vote_when_filed(recipient)
    waiting = gw.start("pay", {"amount": 400, "recipient": recipient})
    words = [unique("w") for _ in range(12)]
    calls = [gw.start("echo", {"text": w}) for w in words]
    slow = [gw.start("slow", {"seconds": 0.3}) for _ in range(3)]
    denied = [gw.start("pay", {"amount": 1, "recipient": "EVIL"}) for _ in range(3)]
    assert [text(c.result(timeout=30)) for c in calls] == words  # answered while the payment still waits
    assert all(text(c.result(timeout=30)) == "slept 0.3" for c in slow)
    assert all(c.result(timeout=30).is_error for c in denied)
    vote.result(timeout=10)
    assert text(waiting.result(timeout=30)) == f"paid 400.00 to {recipient}"
    assert len([r for r in gw.ran() if r[1].get("recipient") == recipient]) == 1


def test_the_upstreams_progress_reaches_a_client_that_asked_for_it(gw: Session) -> None:
    gw.progress.clear()
    assert text(gw.call("slow", {"seconds": 0.05}, progress=True)) == "slept 0.05"
    assert [m for _, _, m in gw.progress] == ["sleeping"]  # the server's own, relayed (an allowed call: no wait)
    gw.progress.clear()
    gw.call("slow", {"seconds": 0.05})  # no progress token: nothing to relay
    assert gw.progress == []


def test_resources_prompts_and_templates_are_relayed(gw: Session) -> None:
    resources = gw.run(lambda c: c.list_resources())
    assert [r.uri for r in resources.resources] == ["notes://readme"]
    templates = gw.run(lambda c: c.list_resource_templates())
    assert [t.uri_template for t in templates.resource_templates] == ["notes://{name}"]
    assert gw.run(lambda c: c.read_resource("notes://readme")).contents[0].text == "the toolserver readme"
    assert gw.run(lambda c: c.read_resource("notes://kept")).contents[0].text == "note kept"
    prompts = gw.run(lambda c: c.list_prompts())
    assert [p.name for p in prompts.prompts] == ["review"]
    got = gw.run(lambda c: c.get_prompt("review", {"code": "x = 1"}))
    assert "x = 1" in got.messages[0].content.text


def test_the_server_crashing_mid_call_is_an_error_result_and_it_is_restarted(gw: Session) -> None:
    result = gw.call("crash", {})
    assert result.is_error and "closed the connection during the call" in text(result)
    word = unique("after-crash")
    assert text(gw.call("echo", {"text": word})) == word  # a fresh server answers the next call
    [line] = gw.logged(tool="crash")
    assert line["decision"] == "allow" and line["outcome"] == "failed" and "crashed" in line["error"]


def test_the_log_ingests_without_quarantine_and_replays_to_the_gateways_decisions(gw: Session, world: World,
                                                                               gatekit_cli, tmp_path: Path) -> None:
    gw.call("echo", {"text": unique("last")})  # windows: echo-chatty (shadow) has matched by now
    lines = gw.logged()
    assert len(lines) >= 20 and len({r["action_id"] for r in lines}) == len(lines)
    assert {"allow", "deny", "escalate"} <= {r["decision"] for r in lines}
    assert any("echo-chatty" in r["rules"] for r in lines)
    db = tmp_path / "store.duckdb"
    code, out, err = gatekit_cli("ingest", gw.log, "--db", db, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["quarantined"] == 0 and report["stored"] == len(lines)
    rows = tmp_path / "rows.jsonl"
    code, out, err = gatekit_cli("replay", "--db", db, "--policy", world.served.policy_path, "--name", "gw",
                                 "--out", rows, "--json")
    assert code == 0, err
    replayed = {r["action_id"]: r for r in map(json.loads, rows.read_text().splitlines())}
    decided = [r for r in lines if "refusal" not in r]  # refused before the policy (oversized): not the policy's
    assert decided and all(r["action_id"] in replayed for r in decided)
    assert [(r["decision"], r["rules"], r["tier"]) for r in decided] == [
        (replayed[r["action_id"]]["decision"], list(replayed[r["action_id"]]["rules"]),
         replayed[r["action_id"]]["tier"]) for r in decided]
