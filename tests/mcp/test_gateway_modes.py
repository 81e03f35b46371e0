"""The gateway's modes and options: shadow mode, a local broker, --hide-denied, oversized arguments, the
upstream's notifications relayed, and an upstream over Streamable HTTP (crashing, with restarts off)."""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import pytest
from mcp import types

from gatekit import parse_policy
from gatekit.enforce import Broker
from gatekit.mcp.hidden import always_denied
from tests.mcp.conftest import (Process, Session, World, environment, ran, stdio_session, text, toolserver_command,
                                wait_for)


@pytest.fixture(scope="module")
def local(world: World, portal) -> Iterator[Session]:
    """A gateway with a local broker (no approvals service), hiding always-denied tools, a small argument limit."""
    with stdio_session(portal, world, "local", "--broker", str(world.root / "local-broker.db"), "--agent",
                       "local-bot", "--hide-denied", "--max-args-bytes", "2000", "--progress-interval", "0.2",
                       "--timeout", "3", service=False, mode="legacy") as s:
        yield s


@pytest.fixture(scope="module")
def broker(world: World, local: Session) -> Iterator[Broker]:
    """The local gateway's broker, as a reviewer on the same machine opens it."""
    opened = Broker(world.root / "local-broker.db")
    yield opened
    opened.close()


def test_hide_denied_leaves_always_denied_tools_out_and_still_denies_them(local: Session) -> None:
    names = {t.name for t in local.run(lambda c: c.list_tools()).tools}
    assert "delete_rows" not in names  # `no-deletes` denies it whatever the arguments
    assert {"echo", "pay"} <= names  # `pay` is denied only for some arguments: still listed
    result = local.call("delete_rows", {"table": "orders"})  # calling it anyway
    assert result.is_error and "Nobody deletes rows" in text(result)
    assert not [t for t, _ in local.ran() if t == "delete_rows"]


def test_oversized_arguments_are_refused_undecided_and_never_forwarded(local: Session) -> None:
    result = local.call("size", {"data": "x" * 5000})
    assert result.is_error and "over the gateway's limit of 2,000" in text(result)
    assert result.meta["gatekit"]["code"] == "oversized"
    assert local.call("size", {"data": "x" * 100}).structured_content == {"result": 100}
    assert [t for t, _ in local.ran() if t == "size"] == ["size"]  # only the small one
    big, small = local.logged(tool="size")
    assert (big["refusal"], big["decision"], big["outcome"], big["args"]) == ("oversized", "deny", "refused", {})
    assert big["args_bytes"] > 5000 and small["outcome"] == "executed"


def test_an_escalation_through_a_local_broker_runs_once_approved(local: Session, broker: Broker) -> None:
    recipient = f"Local-{uuid.uuid4().hex[:6]}"
    call = local.start("pay", {"amount": 700, "recipient": recipient})
    request = wait_for(lambda: [r for r in broker.list() if r.action["args"].get("recipient") == recipient])[0]
    assert request.action["agent"] == "local-bot"
    broker.approve(request.id, "bob")
    assert text(call.result(timeout=20)) == f"paid 700.00 to {recipient}"
    [line] = local.logged(args__recipient=recipient)
    assert line["outcome"] == "executed" and [a["reviewer"] for a in line["approvals"]] == ["bob"]


def test_an_approval_after_the_client_gave_up_runs_nothing_even_when_accepted(local: Session,
                                                                             broker: Broker) -> None:
    recipient = f"Late-{uuid.uuid4().hex[:6]}"
    call = local.start("pay", {"amount": 700, "recipient": recipient})
    request = wait_for(lambda: [r for r in broker.list() if r.action["args"].get("recipient") == recipient])[0]
    call.cancel()
    wait_for(lambda: local.logged(args__recipient=recipient))
    # a local broker keeps the request open (it times out on its own): the approval is accepted...
    assert broker.approve(request.id, "bob").status == "approved"
    time.sleep(1.0)
    assert text(local.call("echo", {"text": "still serving"})) == "still serving"
    # ...and still nothing runs: the call that asked for it is gone
    assert not [r for r in local.ran() if r[1].get("recipient") == recipient]
    assert local.logged(args__recipient=recipient)[0]["outcome"] == "withdrawn"


def test_timeout_caps_the_wait_and_a_timeout_is_a_refusal(local: Session) -> None:
    recipient = f"Slowpoke-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    result = local.call("pay", {"amount": 700, "recipient": recipient})  # its tier allows an hour: --timeout 3
    assert result.is_error and "not approved in time" in text(result)
    assert 2.5 < time.monotonic() - started < 15
    assert not [r for r in local.ran() if r[1].get("recipient") == recipient]
    assert local.logged(args__recipient=recipient)[0]["outcome"] == "timed_out"


def test_the_upstreams_notifications_reach_the_client(local: Session) -> None:
    assert text(local.call("announce", {"message": "hello from upstream"})) == "announced"
    wait_for(lambda: any(isinstance(m, types.ToolListChangedNotification) for m in local.messages))
    logs = [m for m in local.messages if isinstance(m, types.LoggingMessageNotification)]
    assert [m.params.data for m in logs] == ["hello from upstream"]


def test_shadow_mode_forwards_everything_and_logs_the_would_be_decisions(world: World, portal) -> None:
    with stdio_session(portal, world, "shadow", "--mode", "shadow", "--hide-denied", service=False) as s:
        assert "delete_rows" in {t.name for t in s.run(lambda c: c.list_tools()).tools}  # shadow hides nothing
        assert text(s.call("pay", {"amount": 5, "recipient": "EVIL"})) == "paid 5.00 to EVIL"
        assert text(s.call("delete_rows", {"table": "orders"})) == "deleted every row of orders"
        assert text(s.call("pay", {"amount": 500, "recipient": "ACME"})) == "paid 500.00 to ACME"  # no approval
        assert [t for t, _ in s.ran()] == ["pay", "delete_rows", "pay"]
        assert [(r["decision"], r["rules"], r["mode"], r["outcome"]) for r in s.logged()] == [
            ("deny", ["pay-blocked"], "shadow", "executed"),
            ("deny", ["no-deletes"], "shadow", "executed"),
            ("escalate", ["pay-over-100"], "shadow", "executed"),
        ]


def test_an_upstream_over_streamable_http_and_its_crash(world: World, portal) -> None:
    marker = world.root / "http-upstream.marker"
    server = Process([*toolserver_command(), "--http"], environment(marker), url_first=True)
    try:
        with stdio_session(portal, world, "via-http", "--restarts", "0", service=False,
                           http_upstream=server.url) as s:
            assert text(s.call("echo", {"text": "over http"})) == "over http"
            denied = s.call("pay", {"amount": 1, "recipient": "EVIL"})
            assert denied.is_error and "Blocked recipient EVIL" in text(denied)
            assert s.run(lambda c: c.read_resource("notes://readme")).contents[0].text == "the toolserver readme"
            result = s.call("crash", {})  # the HTTP server process dies mid-call
            assert result.is_error and "closed the connection during the call" in text(result)
            assert "restarting" not in text(result)  # --restarts 0: the gateway stops instead
            assert [(r["decision"], r["outcome"]) for r in s.logged()] == [
                ("allow", "executed"), ("deny", "blocked"), ("allow", "failed")]
    finally:
        server.stop()
    assert [t for t, _ in ran(marker)] == ["echo", "crash"]


POLICY = """\
version: 1
name: hide
default: {default}
rules:
  - {{id: never, tool: "db.drop_*", action: deny}}
  - {{id: sometimes, tool: pay, action: deny, when: {{args.amount: {{gt: 5}}}}}}
  - {{id: canary, tool: shell, action: deny, mode: shadow}}
  - {{id: reads, tool: "docs.*", action: allow}}
  - {{id: sends, tool: mail, action: escalate, when: {{args.to: {{endswith: "@evil.com"}}}}}}
"""


@pytest.mark.parametrize("default, hidden", [
    ("allow", {"db.drop_table", "DB.Drop_Table"}),
    ("deny", {"db.drop_table", "DB.Drop_Table", "pay", "shell", "search"}),
])
def test_always_denied_is_the_tools_no_call_can_get_through(default: str, hidden: set[str]) -> None:
    denied = always_denied(parse_policy(POLICY.format(default=default)))
    tools = ["db.drop_table", "DB.Drop_Table", "pay", "shell", "docs.read", "mail", "search"]
    assert {t for t in tools if denied(t)} == hidden
