"""`gatekit approvals list|show|approve|deny` and `gatekit audit verify|export`, through the real
`gatekit.cli.main` (exit codes are mapped there, and only there)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from gatekit import Gate, cli
from gatekit.enforce import Broker

PAY = {"tool": "payment.send", "args": {"amount": 20000, "recipient": "ACME"}}


@pytest.fixture
def filed(tmp_path: Path, policy) -> tuple[Path, str]:
    db = tmp_path / "approvals.db"
    pending = Gate(policy, broker=Broker(db, durable=False), agent="bot", user="u-ann").submit(PAY)
    return db, pending.request_id


@pytest.fixture
def run(gatekit_cli) -> Callable[..., str]:
    """`gatekit ARGS...` expected to exit with `code`: its stdout."""
    def invoke(*args: str, code: int = 0) -> str:
        got, out, err = gatekit_cli(*args)
        assert got == code, (out, err)
        assert "Traceback" not in err
        return out
    return invoke


def test_list_and_show(run, filed) -> None:
    db, rid = filed
    assert rid in run("approvals", "list", "--broker", str(db))
    listed = json.loads(run("approvals", "list", "--broker", str(db), "--json"))
    assert isinstance(listed, list)
    assert [r["id"] for r in listed] == [rid] and listed[0]["roles"] == ["security", "finance"]
    shown = run("approvals", "show", rid, "--broker", str(db))
    assert '"recipient": "ACME"' in shown and "pay-10k" in shown and "sha256:" in shown
    assert json.loads(run("approvals", "show", rid, "--broker", str(db), "--json"))["evidence_intact"] is True


def test_approve_to_quorum(run, filed) -> None:
    db, rid = filed
    assert "pending" in run("approvals", "approve", rid, "--broker", str(db), "--reviewer", "sam", "--role", "security")
    out = run("approvals", "approve", rid, "--broker", str(db), "--reviewer", "fiona", "--role", "finance")
    assert "approved" in out
    assert run("approvals", "list", "--broker", str(db), "--status", "approved").count(rid) == 1


def test_refusals_surface_as_approval_errors(run, filed, gatekit_cli) -> None:
    db, rid = filed
    code, _, err = gatekit_cli("approvals", "approve", rid, "--broker", str(db), "--reviewer", "u-ann")
    assert code == cli.EXIT_APPROVAL and err.startswith("error: `u-ann` cannot approve") and "self-approval" in err
    code, _, err = gatekit_cli("approvals", "approve", rid, "--broker", str(db), "--reviewer", "x", "--break-glass")
    assert code == cli.EXIT_APPROVAL and err == "error: break-glass needs a reason\n"


def test_deny_and_break_glass(run, filed, tmp_path: Path, policy) -> None:
    db, rid = filed
    assert "denied" in run("approvals", "deny", rid, "--broker", str(db), "--reviewer", "sam", "--reason", "no")
    other = Gate(policy, broker=Broker(db, durable=False), agent="bot", user="u-ann").submit(PAY).request_id
    out = run("approvals", "approve", other, "--broker", str(db), "--reviewer", "oncall", "--break-glass",
              "--reason", "incident 9", "--for", "10m")
    assert "approved" in out and "break-glass" in out
    assert other in run("approvals", "list", "--broker", str(db), "--status", "all", "--flagged")


def test_audit_verify_and_tampering(run, filed) -> None:
    db, _ = filed
    assert "ok: 2 entries" in run("audit", "verify", "--broker", str(db))
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE receipts SET body = replace(body, 'ACME', 'EVIL') WHERE seq = 2")
    con.close()
    out = run("audit", "verify", "--broker", str(db), code=1)
    assert "entry 2 modified" in out
    assert not json.loads(run("audit", "verify", "--broker", str(db), "--json", code=1))["ok"]


def test_audit_verify_against_an_anchor_kept_elsewhere(run, filed) -> None:
    db, _ = filed
    count, head = Broker(db).receipts.anchor()
    run("audit", "verify", "--broker", str(db), "--expect", f"{count}:{head}")
    run("audit", "verify", "--broker", str(db), "--expect", f"{count + 5}:{head}", code=1)


def test_audit_export_writes_action_records_and_refuses_a_broken_chain(run, filed, tmp_path: Path) -> None:
    db, _ = filed
    out = tmp_path / "live.jsonl"
    assert "wrote 1 action records" in run("audit", "export", "--broker", str(db), "--out", str(out))
    record = json.loads(out.read_text())
    assert record["tool"] == "payment.send" and record["outcome"] == "pending" and record["rules"] == ["pay-100", "pay-10k"]
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM receipts WHERE seq = 1")
    con.close()
    run("audit", "export", "--broker", str(db), "--out", str(out), code=1)


def test_a_missing_store_is_a_store_error(gatekit_cli, tmp_path: Path) -> None:
    code, _, err = gatekit_cli("approvals", "list", "--broker", str(tmp_path / "nope.db"))
    assert code == cli.EXIT_STORE and err == f"error: no broker store at `{tmp_path / 'nope.db'}`\n"


def test_the_old_name_of_broker_still_works(run, filed, gatekit_cli) -> None:
    """`--db` named the broker before it named the DuckDB store everywhere: hidden now, and still working."""
    db, rid = filed
    code, out, err = gatekit_cli("approvals", "list", "--db", str(db), "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [rid]
    assert "deprecated" in err and "--broker" in err
    assert "ok: 2 entries" in run("audit", "verify", "--db", str(db), "--quiet")
    code, _, err = gatekit_cli("approvals", "list", "--db", str(db), "--broker", str(db.with_name("x.db")))
    assert code == cli.EXIT_USAGE and "give one of them" in err
    assert "--db" not in run("approvals", "list", "--help")


def test_a_tampered_chain_is_exit_1_with_one_error_line(filed, gatekit_cli) -> None:
    db, _ = filed
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE receipts SET body = replace(body, 'ACME', 'EVIL') WHERE seq = 2")
    con.close()
    code, out, err = gatekit_cli("audit", "verify", "--broker", str(db))
    assert code == cli.EXIT_TAMPERED == 1 and "entry 2 modified" in out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: audit chain TAMPERED: 1 problem(s) in 2 entries")


def test_approval_refusals_map_to_their_exit_code(run, filed, gatekit_cli) -> None:
    db, rid = filed
    code, _, _ = gatekit_cli("approvals", "approve", rid, "--broker", str(db), "--reviewer", "bot")
    assert code == cli.EXIT_APPROVAL
