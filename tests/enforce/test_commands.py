"""`gatekit approvals list|show|approve|deny` and `gatekit audit verify|export`, through click's runner."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gatekit import Gate
from gatekit.enforce import Broker, Refused
from gatekit.enforce.commands import approvals, audit

CLI = click.Group("gatekit", commands={"approvals": approvals, "audit": audit})
PAY = {"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}}


@pytest.fixture
def filed(tmp_path: Path, policy) -> tuple[Path, str]:
    db = tmp_path / "approvals.db"
    pending = Gate(policy, broker=Broker(db, durable=False), agent="bot", user="u-ann").submit(PAY)
    return db, pending.request_id


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(CLI, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_list_and_show(filed) -> None:
    db, rid = filed
    assert rid in run("approvals", "list", "--db", str(db))
    listed = json.loads(run("approvals", "list", "--db", str(db), "--json"))
    assert isinstance(listed, list)
    assert [r["id"] for r in listed] == [rid] and listed[0]["roles"] == ["security", "finance"]
    shown = run("approvals", "show", rid, "--db", str(db))
    assert '"recipient": "ACME"' in shown and "pay-10k" in shown and "sha256:" in shown
    assert json.loads(run("approvals", "show", rid, "--db", str(db), "--json"))["evidence_intact"] is True


def test_approve_to_quorum(filed) -> None:
    db, rid = filed
    assert "pending" in run("approvals", "approve", rid, "--db", str(db), "--reviewer", "sam", "--role", "security")
    out = run("approvals", "approve", rid, "--db", str(db), "--reviewer", "fiona", "--role", "finance")
    assert "approved" in out
    assert run("approvals", "list", "--db", str(db), "--status", "approved").count(rid) == 1


def test_refusals_surface_as_approval_errors(filed) -> None:
    db, rid = filed
    result = CliRunner().invoke(CLI, ["approvals", "approve", rid, "--db", str(db), "--reviewer", "u-ann"])
    assert isinstance(result.exception, Refused) and result.exception.code == "self_approval"
    result = CliRunner().invoke(CLI, ["approvals", "approve", rid, "--db", str(db), "--reviewer", "x",
                                      "--break-glass"])
    assert isinstance(result.exception, Refused) and result.exception.code == "reason_required"


def test_deny_and_break_glass(filed, tmp_path: Path, policy) -> None:
    db, rid = filed
    assert "denied" in run("approvals", "deny", rid, "--db", str(db), "--reviewer", "sam", "--reason", "no")
    other = Gate(policy, broker=Broker(db, durable=False), agent="bot", user="u-ann").submit(PAY).request_id
    out = run("approvals", "approve", other, "--db", str(db), "--reviewer", "oncall", "--break-glass",
              "--reason", "incident 9", "--for", "10m")
    assert "approved" in out and "break-glass" in out
    assert other in run("approvals", "list", "--db", str(db), "--status", "all", "--flagged")


def test_audit_verify_and_tampering(filed) -> None:
    db, _ = filed
    assert "ok: 2 entries" in run("audit", "verify", "--db", str(db))
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE receipts SET body = replace(body, 'ACME', 'EVIL') WHERE seq = 2")
    con.close()
    out = run("audit", "verify", "--db", str(db), code=1)
    assert "entry 2 modified" in out
    assert not json.loads(run("audit", "verify", "--db", str(db), "--json", code=1))["ok"]


def test_audit_verify_against_an_anchor_kept_elsewhere(filed) -> None:
    db, _ = filed
    count, head = Broker(db).receipts.anchor()
    run("audit", "verify", "--db", str(db), "--expect", f"{count}:{head}")
    run("audit", "verify", "--db", str(db), "--expect", f"{count + 5}:{head}", code=1)


def test_audit_export_writes_action_records_and_refuses_a_broken_chain(filed, tmp_path: Path) -> None:
    db, _ = filed
    out = tmp_path / "live.jsonl"
    assert "wrote 1 action records" in run("audit", "export", "--db", str(db), "--out", str(out))
    record = json.loads(out.read_text())
    assert record["tool"] == "payment.send" and record["outcome"] == "pending" and record["rules"] == ["pay-100", "pay-10k"]
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM receipts WHERE seq = 1")
    con.close()
    run("audit", "export", "--db", str(db), "--out", str(out), code=1)


def test_a_missing_store_is_a_store_error(tmp_path: Path) -> None:
    from gatekit.errors import StoreError

    result = CliRunner().invoke(CLI, ["approvals", "list", "--db", str(tmp_path / "nope.db")])
    assert isinstance(result.exception, StoreError)


def test_registered_with_the_main_cli_they_map_to_exit_codes(filed, monkeypatch) -> None:
    """How `gatekit.cli` will mount them: `cli.add_command(approvals)`, `cli.add_command(audit)`."""
    import sys

    import gatekit.cli as cli_module

    db, rid = filed
    root = click.Group("gatekit", commands={**cli_module.cli.commands, "approvals": approvals, "audit": audit})
    monkeypatch.setattr(cli_module, "cli", root)
    monkeypatch.setattr(sys, "argv", ["gatekit", "approvals", "approve", rid, "--db", str(db), "--reviewer", "bot"])
    with pytest.raises(SystemExit) as exit_:
        cli_module.main()
    assert exit_.value.code == cli_module.EXIT_APPROVAL
