"""The service's audit chain and its store, on a Ledger in tmp_path (no HTTP).

The law: a chain written through `Ledger.write` verifies; any one tampering with the store or the exported
checkpoints, by someone without the service's private key, does not, and the problem names what happened.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekit.enforce.tokens import b64encode, key_id
from gatekit.errors import GatekitError, StoreError
from gatekit.server.audit import GENESIS, checkpoint_body, entry_hash
from gatekit.server.ledger import Ledger
from gatekit.server.registry import Refusal, Registry, credential_hash
from gatekit.server.store import FILENAME, SCHEMA_VERSION, SQLiteStore

Entry = tuple[str, dict[str, Any], "str | None"]

BATCHES: list[list[Entry]] = [
    [("start", {"policy": "service-tests"}, None)],
    [("refuse", {"tool": "payment.send", "args": {"amount": 250}}, "r-1"), ("requirements", {"tier": "standard"}, "r-1")],
    [("vote", {"by": "alice", "decision": "approve"}, "r-1"), ("approve", {}, "r-1"), ("token", {"nonce": "n-1"}, "r-1")],
    [("consume", {"by": "billing-bot", "key": "k-00000001"}, "r-1")],
]  # 7 entries, checkpoints at 1, 3, 6 and 7


def make_ledger(state: Path) -> Ledger:
    state.mkdir(parents=True, exist_ok=True)
    return Ledger(state, store=SQLiteStore(state, durable=False))


def append(ledger: Ledger, entries: list[Entry]) -> None:
    ledger.write(lambda con, now, audit: audit.extend(entries))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = make_ledger(tmp_path / "state")
    for batch in BATCHES:
        append(led, batch)
    yield led
    led.close()


# ---- tampering, as someone with the files but not the private key -------------------------------------
def raw(ledger: Ledger) -> sqlite3.Connection:
    return sqlite3.connect(ledger.state / FILENAME, isolation_level=None)


def sql(ledger: Ledger, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    con = raw(ledger)
    try:
        for statement in statements:
            text, params = (statement, ()) if isinstance(statement, str) else statement
            con.execute(text, params)
    finally:
        con.close()


def rechain(ledger: Ledger) -> None:
    """Recompute every entry's `prev` and plain sha256 `hash` so the chain is internally consistent again."""
    con = raw(ledger)
    try:
        prev = GENESIS
        for seq, kind, rid, body in con.execute("SELECT seq, kind, request_id, body FROM audit ORDER BY seq").fetchall():
            digest = entry_hash(prev, kind, rid, body)
            con.execute("UPDATE audit SET prev = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
            prev = digest
    finally:
        con.close()


def count_of(ledger: Ledger) -> int:
    con = raw(ledger)
    try:
        return con.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        con.close()


def modify(ledger: Ledger, seq: int) -> None:
    sql(ledger, ("UPDATE audit SET body = replace(body, '}', ',\"amount\":9000}') WHERE seq = ?", (seq,)))


def swap(ledger: Ledger, a: int, b: int) -> None:
    sql(ledger, ("UPDATE audit SET seq = -1 WHERE seq = ?", (a,)), ("UPDATE audit SET seq = ? WHERE seq = ?", (a, b)),
        ("UPDATE audit SET seq = ? WHERE seq = -1", (b,)))


def forge_checkpoints(ledger: Ledger, *, claim_service_key: bool) -> None:
    """Replace every checkpoint, stored and exported, by one signed with a fresh key over the current chain."""
    fresh = Ed25519PrivateKey.generate()
    kid = ledger.key_id if claim_service_key else key_id(fresh.public_key())
    con = raw(ledger)
    try:
        count, head = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        at = 1_790_000_000_000_000
        signature = b64encode(fresh.sign(checkpoint_body(count, head, at, kid)))
        con.execute("DELETE FROM checkpoints")
        con.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)", (count, head, at, kid, signature))
    finally:
        con.close()
    line = {"count": count, "head": head, "at": at, "kid": kid, "sig": signature}
    ledger.checkpoints.write_text(json.dumps(line, sort_keys=True) + "\n")


def export_lines(ledger: Ledger) -> list[str]:
    return ledger.checkpoints.read_text().splitlines()


def edit_last_export(ledger: Ledger, field: str, value: Any) -> None:
    lines = export_lines(ledger)
    last = json.loads(lines[-1])
    assert last[field] != value
    lines[-1] = json.dumps({**last, field: value}, sort_keys=True)
    ledger.checkpoints.write_text("\n".join(lines) + "\n")


def problems(ledger: Ledger) -> str:
    result = ledger.verify()
    assert not result.ok and result.problems
    return "\n".join(result.problems)


# ---- a clean chain -------------------------------------------------------------------------------------
def test_a_chain_written_through_the_ledger_verifies(ledger: Ledger) -> None:
    result = ledger.verify()
    assert result.ok, result.problems
    assert result.count == 7 and result.problems == ()
    assert [json.loads(line)["count"] for line in export_lines(ledger)] == [1, 3, 6, 7]
    con = raw(ledger)
    try:
        assert [r[0] for r in con.execute("SELECT count FROM checkpoints ORDER BY count")] == [1, 3, 6, 7]
        rows = con.execute("SELECT seq, kind, request_id, body, prev, hash FROM audit ORDER BY seq").fetchall()
    finally:
        con.close()
    assert [r[1] for r in rows] == [kind for batch in BATCHES for kind, _, _ in batch]
    assert rows[0][4] == GENESIS and all(r[4] == p[5] for p, r in itertools.pairwise(rows))
    assert result.head == rows[-1][5]
    ledger.verify_or_refuse()


def test_a_new_ledger_has_nothing_to_check(tmp_path: Path) -> None:
    led = make_ledger(tmp_path / "fresh")
    try:
        result = led.verify()
        assert result.count == 0 and result.head == GENESIS
        led.verify_or_refuse()  # a new store starts
    finally:
        led.close()


def test_a_failed_write_leaves_no_entry(ledger: Ledger) -> None:
    def boom(con: Any, now: int, audit: list) -> None:
        audit.append(("vote", {}, "r-2"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ledger.write(boom)
    assert ledger.verify().ok and ledger.verify().count == 7
    with pytest.raises(ValueError, match="unknown audit kind"):
        append(ledger, [("nonsense", {}, None)])
    assert ledger.verify().ok and ledger.verify().count == 7


# ---- each tampering, named -----------------------------------------------------------------------------
def test_a_modified_body_is_named(ledger: Ledger) -> None:
    modify(ledger, 2)
    assert "entry 2 modified" in problems(ledger)


def test_a_deleted_middle_entry_is_named(ledger: Ledger) -> None:
    sql(ledger, "DELETE FROM audit WHERE seq = 4")
    found = problems(ledger)
    assert "entry 4 deleted" in found and "entry 5 does not follow entry 4" in found


def test_deleted_entries_are_named_as_a_range(ledger: Ledger) -> None:
    sql(ledger, "DELETE FROM audit WHERE seq IN (2, 3, 4)")
    assert "entries 2-4 deleted" in problems(ledger)


def test_reordered_entries_are_named(ledger: Ledger) -> None:
    swap(ledger, 3, 5)
    found = problems(ledger)
    assert "entry 3 out of order: it was written after entry 4" in found
    assert "out of order" in found


def test_a_truncated_tail_is_named(ledger: Ledger) -> None:
    sql(ledger, "DELETE FROM audit WHERE seq > 4")
    found = problems(ledger)
    assert "the chain holds 4 entries but the last signed checkpoint counts 7 (truncated)" in found
    assert "entry 6 is missing" in found


def test_a_truncated_tail_with_its_checkpoints_is_caught_by_the_export(ledger: Ledger) -> None:
    sql(ledger, "DELETE FROM audit WHERE seq > 3", "DELETE FROM checkpoints WHERE count > 3")
    assert "exported checkpoint 7: entry 7 is missing" in problems(ledger)


def test_wiping_both_tables_is_named(ledger: Ledger) -> None:
    sql(ledger, "DELETE FROM audit", "DELETE FROM checkpoints")
    found = problems(ledger)
    assert "no signed checkpoint in the store" in found
    assert "exported checkpoint 7: entry 7 is missing" in found
    with pytest.raises(StoreError, match="does not verify"):
        ledger.verify_or_refuse()


def test_a_plain_sha256_rechain_after_a_modification_is_named(ledger: Ledger) -> None:
    modify(ledger, 2)
    rechain(ledger)
    found = problems(ledger)
    assert "modified" not in found and "does not follow" not in found  # the chain itself is consistent again
    assert "stored checkpoint 3: entry 3 differs from the one signed" in found
    assert "exported checkpoint 7: entry 7 differs from the one signed" in found


def test_deleting_the_checkpoints_and_rechaining_is_named(ledger: Ledger) -> None:
    modify(ledger, 5)
    rechain(ledger)
    sql(ledger, "DELETE FROM checkpoints")
    found = problems(ledger)
    assert "no signed checkpoint in the store" in found
    assert "exported checkpoint 7: entry 7 differs from the one signed" in found


def test_checkpoints_forged_with_a_fresh_key_are_named(ledger: Ledger) -> None:
    modify(ledger, 5)
    rechain(ledger)
    forge_checkpoints(ledger, claim_service_key=False)
    found = problems(ledger)
    assert "stored checkpoint 7 names key" in found and f"not this service's `{ledger.key_id}`" in found
    assert "exported checkpoint 7 names key" in found


def test_checkpoints_forged_under_the_services_key_id_do_not_verify(ledger: Ledger) -> None:
    modify(ledger, 5)
    rechain(ledger)
    forge_checkpoints(ledger, claim_service_key=True)
    found = problems(ledger)
    assert "stored checkpoint 7: the signature does not verify" in found
    assert "exported checkpoint 7: the signature does not verify" in found


def test_entries_added_without_the_key_are_named(ledger: Ledger) -> None:
    con = raw(ledger)
    try:
        prev = con.execute("SELECT hash FROM audit WHERE seq = 7").fetchone()[0]
        body = json.dumps({"kind": "approve", "at": 1}, separators=(",", ":"))
        con.execute("INSERT INTO audit VALUES (8, 'approve', 'r-9', ?, ?, ?)",
                    (body, prev, entry_hash(prev, "approve", "r-9", body)))
    finally:
        con.close()
    assert "the chain holds 8 entries but the last signed checkpoint counts 7 (entries added without the key)" \
        in problems(ledger)


def test_a_truncated_export_line_is_named(ledger: Ledger) -> None:
    text = ledger.checkpoints.read_text()
    ledger.checkpoints.write_text(text[: len(text) - 40])
    assert f"{ledger.checkpoints}:4: not a checkpoint" in problems(ledger)


@pytest.mark.parametrize(("field", "value", "named"), [
    ("head", GENESIS, "exported checkpoint 7: the signature does not verify"),
    ("count", 9, "exported checkpoint 9: the signature does not verify"),
    ("count", 2, "exported checkpoint 2: the signature does not verify"),  # lowered below an earlier line
    ("at", 1, "exported checkpoint 7: the signature does not verify"),
    ("sig", b64encode(b"\0" * 64), "exported checkpoint 7: the signature does not verify"),
    ("kid", "0123456789abcdef", "exported checkpoint 7 names key `0123456789abcdef`"),
])
def test_an_edited_export_line_is_named(ledger: Ledger, field: str, value: Any, named: str) -> None:
    edit_last_export(ledger, field, value)
    assert named in problems(ledger)


def test_an_emptied_export_is_named(ledger: Ledger) -> None:
    ledger.checkpoints.write_text("")
    assert "holds no checkpoint" in problems(ledger)


def test_a_missing_export_is_named(ledger: Ledger) -> None:
    ledger.checkpoints.unlink()
    assert f"no exported checkpoints at `{ledger.checkpoints}`" in problems(ledger)
    with pytest.raises(StoreError):
        ledger.verify_or_refuse()  # entries but no export: not a new store


def test_verifying_with_another_public_key_fails(ledger: Ledger) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    result = ledger.verify(public_key=other)
    assert not result.ok and any("names key" in p for p in result.problems)


# ---- the law, on random histories ----------------------------------------------------------------------
# kinds that bind no row of the store (a `submit` or a `vote` must match a request row: tests/server/test_attacks.py)
kinds = st.sampled_from(["token", "refuse", "outcome", "requirements", "policy", "start", "login", "logout"])
bodies = st.dictionaries(st.sampled_from(["tool", "by", "amount", "note", "ok"]),
                         st.integers(-5, 10**6) | st.text(max_size=6) | st.booleans(), max_size=3)
entries = st.tuples(kinds, bodies, st.none() | st.sampled_from(["r-1", "r-2", "r-3"]))
histories = st.lists(st.lists(entries, min_size=1, max_size=3), min_size=2, max_size=5).filter(
    lambda batches: sum(map(len, batches)) >= 3)


def _rechain_forged(ledger: Ledger, seq: int, claim: bool) -> None:
    modify(ledger, seq)
    rechain(ledger)
    forge_checkpoints(ledger, claim_service_key=claim)


def _rollback(ledger: Ledger, keep: int) -> None:
    sql(ledger, ("DELETE FROM audit WHERE seq > ?", (keep,)), ("DELETE FROM checkpoints WHERE count > ?", (keep,)))


def _cut_export(ledger: Ledger, at: int) -> None:
    text = ledger.checkpoints.read_text()
    lines = text.splitlines()
    last = lines[-1]
    lines[-1] = last[: min(at, len(last) - 1)]
    ledger.checkpoints.write_text("\n".join(lines) + "\n")


# each takes the ledger, the chain's length and a draw; every one tampers, whatever it draws
TAMPERINGS: dict[str, Callable[[Ledger, int, Callable[..., Any]], None]] = {
    "modify": lambda led, n, draw: modify(led, draw(st.integers(1, n))),
    "delete": lambda led, n, draw: sql(led, ("DELETE FROM audit WHERE seq = ?", (draw(st.integers(1, n)),))),
    "delete-middle": lambda led, n, draw: sql(led, ("DELETE FROM audit WHERE seq = ?", (draw(st.integers(2, n - 1)),))),
    "swap": lambda led, n, draw: swap(led, *draw(st.lists(st.integers(1, n), min_size=2, max_size=2, unique=True))),
    "truncate": lambda led, n, draw: sql(led, ("DELETE FROM audit WHERE seq > ?", (draw(st.integers(0, n - 1)),))),
    "rollback": lambda led, n, draw: _rollback(led, draw(st.integers(0, n - 1))),
    "wipe": lambda led, n, draw: sql(led, "DELETE FROM audit", "DELETE FROM checkpoints"),
    "rechain": lambda led, n, draw: (modify(led, draw(st.integers(1, n))), rechain(led)),
    "rechain-no-checkpoints": lambda led, n, draw: (modify(led, draw(st.integers(1, n))), rechain(led),
                                                    sql(led, "DELETE FROM checkpoints")),
    "forged": lambda led, n, draw: _rechain_forged(led, draw(st.integers(1, n)), draw(st.booleans())),
    "cut-export": lambda led, n, draw: _cut_export(led, draw(st.integers(1, 200))),
    "edit-export": lambda led, n, draw: edit_last_export(
        led, *draw(st.sampled_from([("head", GENESIS), ("count", n + 1), ("at", -1), ("kid", "ffffffffffffffff"),
                                    ("sig", b64encode(b"\1" * 64))]))),
    "lower-export-count": lambda led, n, draw: edit_last_export(led, "count", draw(st.integers(0, n - 1))),
    "empty-export": lambda led, n, draw: led.checkpoints.write_text(""),
    "missing-export": lambda led, n, draw: led.checkpoints.unlink(),
}


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.none() | st.sampled_from(sorted(TAMPERINGS)), st.data())
def test_a_chain_verifies_exactly_when_nobody_tampered_with_it(history: list[list[Entry]], tampering: str | None,
                                                               data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        led = make_ledger(Path(tmp) / "state")
        try:
            for batch in history:
                append(led, batch)
            n = count_of(led)
            if tampering is not None:
                TAMPERINGS[tampering](led, n, data.draw)
            result = led.verify()
            assert result.ok == (tampering is None), result.problems
            assert bool(result.problems) == (tampering is not None)
            if tampering is None:
                assert result.count == n == sum(map(len, history))
        finally:
            led.close()


# ---- the store -----------------------------------------------------------------------------------------
def test_a_new_store_records_its_kind_and_schema_version(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path, durable=False)
    store.close()
    SQLiteStore(tmp_path, durable=False).close()  # reopening migrates nothing and refuses nothing
    con = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert dict(con.execute("SELECT key, value FROM meta")) == {"kind": "gatekit-approvals",
                                                                   "schema_version": str(SCHEMA_VERSION)}
    finally:
        con.close()


def test_a_store_from_a_newer_gatekit_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path, durable=False).close()
    con = sqlite3.connect(tmp_path / FILENAME)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this gatekit"):
        SQLiteStore(tmp_path, durable=False)


@pytest.mark.parametrize("schema", ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",
                                    ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); "
                                     "INSERT INTO meta VALUES ('kind', 'someone-else')")])
def test_a_sqlite_file_that_is_not_a_gatekit_store_is_refused_and_not_migrated(tmp_path: Path, schema: str) -> None:
    con = sqlite3.connect(tmp_path / FILENAME)
    con.executescript(schema)
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a gatekit approvals store"):
        SQLiteStore(tmp_path, durable=False)
    con = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} <= {"notes", "meta"}
    finally:
        con.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not a database, " * 200)
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path, durable=False)


def test_a_store_with_corrupt_pages_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path, durable=False)
    with store.transaction() as con:
        for i in range(400):
            con.execute("INSERT INTO audit VALUES (?, 'start', NULL, ?, ?, ?)", (i + 1, "x" * 200, "p", "h"))
    store.close()  # the last connection closing folds the WAL into the file
    data = bytearray((tmp_path / FILENAME).read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 3: page * 3 + 200] = b"\xab" * 200
    (tmp_path / FILENAME).write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        SQLiteStore(tmp_path, durable=False)


def test_a_missing_state_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state directory"):
        SQLiteStore(tmp_path / "nowhere")


# ---- the registry --------------------------------------------------------------------------------------
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(make_ledger(tmp_path / "state"))
    yield reg
    reg.ledger.close()


@pytest.mark.parametrize(("kind", "name"), [("reviewer", "alice"), ("agent", "Alice"), ("executor", "ALICE"),
                                            ("agent", "ａｌｉｃｅ"), ("reviewer", "ＡＬＩＣＥ")])
def test_an_id_is_registered_once_under_all_its_spellings_and_kinds(registry: Registry, kind: str, name: str) -> None:
    registry.add("reviewer", "alice", ("finance",))
    with pytest.raises(Refusal) as refused:
        registry.add(kind, name)
    assert refused.value.code == "exists" and "as `alice`" in str(refused.value)
    assert [p["id"] for p in registry.list()] == ["alice"]
    assert registry.ledger.verify().ok


def test_only_a_hash_of_the_credential_is_kept(registry: Registry) -> None:
    credentials = [registry.add("reviewer", "alice", ("finance", "Security"), break_glass=True),
                   registry.add("agent", "billing-bot"), registry.add("executor", "runner")]
    registry.ledger.close()  # fold the WAL into the file; the bytes below are all there is
    stored = b"".join(p.read_bytes() for p in sorted(registry.ledger.state.iterdir()) if p.is_file())
    for credential in credentials:
        assert credential.startswith("gk_") and len(credential) > 40
        assert credential.encode() not in stored
        assert credential.split("_", 2)[2].encode() not in stored  # nor its secret part alone
        assert credential_hash(credential).encode() in stored  # (so these are the bytes the registry wrote)


def test_authenticate_finds_the_principal_of_a_credential_and_nothing_else(registry: Registry) -> None:
    alice = registry.add("reviewer", "Alice", ("Finance", "finance", "security"), break_glass=True)
    bot = registry.add("agent", "billing-bot")
    found = registry.authenticate(alice)
    assert found is not None and (found.id, found.kind, found.roles, found.break_glass) == \
        ("alice", "reviewer", ("finance", "security"), True)
    assert registry.authenticate(bot).id == "billing-bot"  # type: ignore[union-attr]
    assert Registry(registry.ledger).authenticate(bot) is not None  # another reader sees it at once
    for wrong in (None, 5, b"gk_", "", "garbage", "gk_", "gk_r_", alice + "x", alice[:-1], alice.upper(),
                  "xx" + alice[2:], "gk_a_" + alice[5:], " " + alice, "gk_" + "a" * 300, credential_hash(alice)):
        assert registry.authenticate(wrong) is None, wrong


@given(st.text(max_size=60) | st.text(max_size=60).map(lambda t: "gk_" + t))
@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_authenticate_refuses_any_other_text(populated: Registry, text: str) -> None:
    assert populated.authenticate(text) is None


@pytest.fixture
def populated(registry: Registry) -> Registry:
    registry.add("reviewer", "alice", ("finance",))
    registry.add("agent", "billing-bot")
    return registry


@pytest.mark.parametrize(("kind", "name", "roles", "break_glass", "why"), [
    ("auditor", "eve", (), False, "one of reviewer, agent, executor"),
    ("reviewer", "m\u0430llory", (), False, "not allowed"),
    ("reviewer", "", (), False, "non-empty"),
    ("reviewer", "alice", ("fin ance",), False, "role"),
    ("agent", "bot", ("finance",), False, "only reviewers"),
    ("executor", "runner", (), True, "only reviewers"),
])
def test_a_principal_that_cannot_be_registered_is_refused(registry: Registry, kind: str, name: str,
                                                          roles: tuple[str, ...], break_glass: bool, why: str) -> None:
    with pytest.raises(GatekitError, match=why):
        registry.add(kind, name, roles, break_glass=break_glass)
    assert registry.list() == []
