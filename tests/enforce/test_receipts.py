"""The audit chain: tampering of every kind is found; a broken chain stops appends; export feeds ingest."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gatekit import Denied, Gate
from gatekit.enforce import ChainError, MockBroker, Receipts
from gatekit.enforce._export import action_records, export_actions


def chain(tmp_path: Path, n: int = 6, key: str | None = None) -> Receipts:
    receipts = Receipts(tmp_path / "audit.db", key=key, durable=False)
    for i in range(n):
        receipts.append("decision", {"action_id": f"a-{i}", "decision": {"decision": "allow"}}, action_id=f"a-{i}")
    return receipts


def sql(receipts: Receipts, statement: str, *args: object) -> None:
    con = sqlite3.connect(receipts.path)
    with con:
        con.execute(statement, args)
    con.close()


def test_an_untouched_chain_verifies(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    result = receipts.verify()
    assert result.ok and result.count == 6 and result.problems == ()
    entries = list(receipts.entries())
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert all(b.prev == a.hash for a, b in zip(entries, entries[1:]))
    assert receipts.anchor() == (6, entries[-1].hash)


def test_modified_entry(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    body = json.loads(sqlite3.connect(receipts.path).execute("SELECT body FROM receipts WHERE seq = 3").fetchone()[0])
    body["decision"]["decision"] = "deny"
    sql(receipts, "UPDATE receipts SET body = ? WHERE seq = 3", json.dumps(body, sort_keys=True, separators=(",", ":")))
    result = receipts.verify()
    assert not result.ok and any("entry 3 modified" in p for p in result.problems)


def test_modified_entry_with_its_hash_recomputed_breaks_the_next_link(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    row = sqlite3.connect(receipts.path).execute("SELECT prev, kind, action_id, body FROM receipts WHERE seq = 3").fetchone()
    forged_body = row[3].replace('"allow"', '"deny"')
    forged = receipts._entry_hash(row[0], row[1], row[2], forged_body)
    sql(receipts, "UPDATE receipts SET body = ?, hash = ? WHERE seq = 3", forged_body, forged)
    result = receipts.verify()
    assert not result.ok and any("entry 4 does not follow entry 3" in p for p in result.problems)


def test_deleted_entry(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    sql(receipts, "DELETE FROM receipts WHERE seq = 4")
    result = receipts.verify()
    assert not result.ok and any("entry 4 deleted" in p for p in result.problems)


def test_deleted_first_entry(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    sql(receipts, "DELETE FROM receipts WHERE seq = 1")
    assert any("entry 1 deleted" in p for p in receipts.verify().problems)


def test_reordered_entries(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    con = sqlite3.connect(receipts.path)
    rows = {seq: rest for seq, *rest in con.execute("SELECT seq, kind, action_id, body, prev, hash FROM receipts")}
    with con:
        for seq, other in ((2, 4), (4, 2)):
            con.execute("UPDATE receipts SET kind = ?, action_id = ?, body = ?, prev = ?, hash = ? WHERE seq = ?",
                        (*rows[other], seq))
    con.close()
    result = receipts.verify()
    assert not result.ok and any("out of order" in p for p in result.problems)


def test_truncated_tail_is_caught_by_the_anchor(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    sql(receipts, "DELETE FROM receipts WHERE seq > 4")
    result = receipts.verify()
    assert not result.ok and any("truncated: the anchor counts 6 entries, the log ends at 4" in p
                                 for p in result.problems)


def test_truncation_with_a_forged_anchor_is_caught_by_a_key(tmp_path: Path) -> None:
    receipts = chain(tmp_path, key="k3y")
    head = sqlite3.connect(receipts.path).execute("SELECT hash FROM receipts WHERE seq = 4").fetchone()[0]
    plain = Receipts(receipts.db)  # the forger has no key: a keyless anchor
    sql(receipts, "DELETE FROM receipts WHERE seq > 4")
    sql(receipts, "UPDATE anchor SET count = 4, head = ?, mac = ?", head, plain._anchor_mac(4, head))
    assert any("anchor was modified" in p for p in receipts.verify().problems)


def test_a_wiped_log_is_caught_by_an_anchor_kept_elsewhere(tmp_path: Path) -> None:
    receipts = chain(tmp_path)
    kept = receipts.anchor()
    sql(receipts, "DELETE FROM receipts")
    sql(receipts, "DELETE FROM anchor")
    assert receipts.verify().ok  # nothing inside the file can tell
    assert any("truncated" in p for p in receipts.verify(expect=kept).problems)


def test_the_wrong_key_does_not_verify(tmp_path: Path) -> None:
    chain(tmp_path, key="right")
    assert not Receipts(tmp_path / "audit.db", key="wrong").verify().ok
    assert Receipts(tmp_path / "audit.db", key="right").verify().ok


@pytest.mark.parametrize("tamper", [
    "UPDATE receipts SET body = replace(body, 'allow', 'deny') WHERE seq = 6",
    "DELETE FROM receipts WHERE seq = 6",
    "UPDATE anchor SET count = 7",
])
def test_a_broken_chain_refuses_appends(tmp_path: Path, tamper: str) -> None:
    receipts = chain(tmp_path)
    sql(receipts, tamper)
    with pytest.raises(ChainError):
        receipts.append("decision", {"action_id": "a-7"}, action_id="a-7")
    assert receipts.verify().count <= 6


def test_broken_chain_makes_the_gate_deny(tmp_path: Path, policy) -> None:
    broker = MockBroker(lambda r: "approve", path=tmp_path / "approvals.db")
    gate = Gate(policy, broker=broker)
    assert gate.run({"tool": "kb.search"}, lambda a: "ok") == "ok"
    sql(broker.receipts, "UPDATE receipts SET body = replace(body, 'executed', 'failed') WHERE seq = 2")
    ran: list[int] = []
    with pytest.raises(Denied) as err:  # the last entry verified by this process changed under it
        gate.run({"tool": "kb.search"}, lambda a: ran.append(1))
    assert err.value.code == "error" and err.value.decision.decision == "allow" and not ran
    with pytest.raises(Denied):
        gate.run({"tool": "payment.send", "args": {"amount": 500}}, lambda a: ran.append(1))
    assert not ran


def test_a_gate_started_on_a_tampered_chain_denies(tmp_path: Path, policy) -> None:
    first = Gate(policy, broker=MockBroker(lambda r: "approve", path=tmp_path / "approvals.db"))
    for _ in range(3):
        first.run({"tool": "kb.search"}, lambda a: "ok")
    sql(first.receipts, "UPDATE receipts SET body = replace(body, 'allow', 'deny') WHERE seq = 1")
    restarted = Gate(policy, broker=MockBroker(lambda r: "approve", path=tmp_path / "approvals.db"))
    ran: list[int] = []
    with pytest.raises(Denied) as err:  # its first append walks the whole chain
        restarted.run({"tool": "kb.search"}, lambda a: ran.append(1))
    assert "entry 1 modified" in str(err.value) and not ran


def test_entries_appended_by_others_are_checked_before_appending(tmp_path: Path) -> None:
    mine, theirs = chain(tmp_path, n=2), Receipts(tmp_path / "audit.db", durable=False)
    theirs.append("decision", {"action_id": "b-1"}, action_id="b-1")
    theirs.append("decision", {"action_id": "b-2"}, action_id="b-2")
    mine.append("decision", {"action_id": "a-9"}, action_id="a-9")  # verifies b-1 and b-2 on its way
    sql(mine, "UPDATE receipts SET body = replace(body, 'a-9', 'a-8') WHERE seq = 5")
    with pytest.raises(ChainError):
        mine.append("decision", {"action_id": "a-10"}, action_id="a-10")


# ---- export: receipts back into action records --------------------------------------------------------------
def live_log(tmp_path: Path, policy, clock) -> MockBroker:
    answers = {"approve-me": "approve", "deny-me": "deny"}
    broker = MockBroker(lambda r: answers.get(r.action["args"].get("memo")), path=tmp_path / "approvals.db",
                        clock=clock)
    gate = Gate(policy, broker=broker, agent="billing-bot", user="u-ann", sleep=clock.sleep)
    gate.run({"tool": "kb.search", "args": {"q": "x"}}, lambda a: 1)
    gate.run({"tool": "payment.send", "args": {"amount": 500, "memo": "approve-me"}}, lambda a: 2)
    for args in ({"amount": 500, "memo": "deny-me"}, {"amount": 5, "recipient": "mallory"},
                 {"amount": 700, "memo": "nobody"}):
        with pytest.raises(Denied):
            gate.run({"tool": "payment.send", "args": args}, lambda a: 3)
    with pytest.raises(ZeroDivisionError):
        gate.run({"tool": "kb.search"}, lambda a: 1 / 0)
    return broker


def test_export_gives_one_contract_record_per_call(tmp_path: Path, policy, clock) -> None:
    broker = live_log(tmp_path, policy, clock)
    records = list(action_records(broker.receipts))
    assert [r["outcome"] for r in records] == ["executed", "executed", "denied", "blocked", "timed_out", "failed"]
    approved = records[1]
    assert approved["evidence_hash"] == approved["executed_hash"] and approved["tool"] == "payment.send"
    assert approved["agent"] == "billing-bot" and approved["user"] == "u-ann" and approved["rules"] == ["pay-100"]
    assert [(a["reviewer"], a["decision"], a["break_glass"]) for a in approved["approvals"]] == [
        ("mock-reviewer-1", "approve", False)]
    assert approved["approvals"][0]["requested_at"] and approved["approvals"][0]["decided_at"]
    assert records[2]["approvals"][0]["decision"] == "deny" and records[2]["executed_hash"] is None
    assert records[3]["decision"] == "deny" and records[3]["approvals"] == []


def test_export_ingests_into_the_action_store(tmp_path: Path, policy, clock) -> None:
    from gatekit.logs.ingest import ingest
    from gatekit.logs.store import Store

    broker = live_log(tmp_path, policy, clock)
    out = tmp_path / "live.jsonl"
    assert export_actions(broker.receipts, out) == 6
    with Store(tmp_path / "store.duckdb") as store:
        report = ingest(store, [out])
        assert (report.stored, report.quarantined) == (6, 0)
        rows = store.con.execute("SELECT tool, outcome, evidence_hash = executed_hash, json_array_length(approvals) "
                                 "FROM actions ORDER BY seq").fetchall()
    assert rows[1] == ("payment.send", "executed", True, 1)
    assert [r[1] for r in rows] == ["executed", "executed", "denied", "blocked", "timed_out", "failed"]
