"""The store suite: every test here runs on SQLite (the state directory's file) and on a real PostgreSQL
server (a fresh database on the session's throwaway cluster), through the same seam the service uses.

So the two stores cannot drift: the same schema, the same SQL, the same answers, and the same guarantees
under concurrency (one audit chain, a vote counted once, a token consumed once) and under tampering.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekit.errors import StoreError
from gatekit.server.approvals import Service
from gatekit.server.ledger import Ledger
from gatekit.server.registry import Refusal
from gatekit.server.store import KIND, SCHEMA_VERSION, SQLiteStore, Store, open_store
from tests.server.conftest import POLICY


def opened(url: str | None, state: Path, **options: Any) -> Store:
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return open_store(url, state, **({"durable": False} if url is None else {}), **options)


class Raw:
    """A connection straight to the store's database, around the service (an operator's, or an attacker's)."""

    def __init__(self, url: str | None, state: Path) -> None:
        if url is None:
            import sqlite3

            self.con: Any = sqlite3.connect(state / "approvals.sqlite", isolation_level=None)
        else:
            import psycopg

            from gatekit.server.postgres import Connection

            self._pg = psycopg.connect(url, autocommit=True)
            self.con = Connection(self._pg)

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.con.execute(sql, params)

    def close(self) -> None:
        (self._pg if hasattr(self, "_pg") else self.con).close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def store(store_url: str | None, state: Path) -> Iterator[Store]:
    s = opened(store_url, state)
    yield s
    s.close()


@pytest.fixture
def raw(store: Store, store_url: str | None, state: Path) -> Iterator[Raw]:
    r = Raw(store_url, state)
    yield r
    r.close()


def service(state: Path, url: str | None, **options: Any) -> Service:
    policy = state.parent / "policy.yaml"
    if not policy.exists():
        policy.write_text(POLICY)
    svc = Service(Ledger(state, store=opened(url, state)), policy, **options)
    svc.start()
    return svc


# ---- the schema and its migrations ---------------------------------------------------------------------
def test_both_stores_have_one_schema(tmp_path: Path, pg_url: str) -> None:
    lite, pg = opened(None, tmp_path / "a"), opened(pg_url, tmp_path / "b")
    try:
        for table in ("meta", "principals", "requests", "votes", "sessions", "audit", "checkpoints"):
            with lite.read() as a, pg.read() as b:
                columns = [[d[0] for d in con.execute(f"SELECT * FROM {table} WHERE 1 = 0").description]
                           for con in (a, b)]
            assert columns[0] == columns[1], table
    finally:
        lite.close()
        pg.close()


def test_a_new_store_records_its_kind_and_schema_version(store: Store, store_url: str | None, state: Path) -> None:
    opened(store_url, state).close()  # reopening migrates nothing and refuses nothing
    with store.read() as con:
        assert dict(con.execute("SELECT key, value FROM meta").fetchall()) == {
            "kind": KIND, "schema_version": str(SCHEMA_VERSION)}


def test_a_store_from_a_newer_gatekit_is_refused(raw: Raw, store_url: str | None, state: Path) -> None:
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this gatekit"):
        opened(store_url, state)


def test_a_database_that_is_not_a_gatekit_store_is_refused_and_not_migrated(store_url: str | None,
                                                                              state: Path) -> None:
    if store_url is None:
        SQLiteStore(state, durable=False).close()
        (state / "approvals.sqlite").unlink()
    raw = Raw(store_url, state)
    try:
        raw.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        with pytest.raises(StoreError, match="not a gatekit approvals store"):
            opened(store_url, state)
        tables = ("SELECT name FROM sqlite_master WHERE type = 'table'" if store_url is None else
                  "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        assert {r[0] for r in raw.execute(tables).fetchall()} == {"notes"}
    finally:
        raw.close()


def test_an_unknown_store_url_is_refused(state: Path) -> None:
    with pytest.raises(StoreError, match="not a store gatekit knows"):
        open_store("mysql://db/approvals", state)


# ---- transactions, snapshots, wake-ups -----------------------------------------------------------------
def test_a_transaction_commits_whole_or_not_at_all(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as con:
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
        raise RuntimeError("boom")
    with pytest.raises(StoreError), store.transaction() as con:
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("b", "1"))
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("kind", "duplicate key"))
    with store.transaction() as con:  # the store still works, and upserts the same way on both
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                    "excluded.value", ("c", "1"))
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                    "excluded.value", ("c", "2"))
    with store.read() as con:
        keys = dict(con.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?)", ("a", "b", "c")).fetchall())
    assert keys == {"c": "2"}


def test_statements_sent_together_or_at_the_commit_commit_whole_or_not_at_all(store: Store) -> None:
    """What PostgreSQL sends in one message (`in_turn`; `defer`red to the COMMIT's message) is atomic with
    the rest of the transaction: a failing one commits nothing of it, the statements after it included."""
    from gatekit.server.store import in_turn

    with pytest.raises(StoreError), store.transaction() as con:
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
        store.defer(con, "INSERT INTO meta (key, value) VALUES (?, ?)", ("kind", "duplicate key"))
        store.defer(con, "INSERT INTO meta (key, value) VALUES (?, ?)", ("b", "1"))
    with pytest.raises(StoreError), store.transaction() as con:
        in_turn(con, ("INSERT INTO meta (key, value) VALUES (?, ?)", ("c", "1")),
                ("INSERT INTO meta (key, value) VALUES (?, ?)", ("kind", "duplicate key")))
    with store.transaction() as con:  # the first statement of a transaction, and values that need quoting
        first = in_turn(con, ("INSERT INTO meta (key, value) VALUES (?, ?)", ("d", "it's 100% 'quoted' ?")),
                        ("SELECT value FROM meta WHERE key = ?", ("d",))).fetchall()
        store.defer(con, "INSERT INTO meta (key, value) VALUES (?, ?)", ("e", "\\ ; COMMIT; --"))
    assert first == [("it's 100% 'quoted' ?",)]
    with store.read() as con:
        keys = dict(con.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?, ?)",
                                ("a", "b", "c", "d", "e")).fetchall())
    assert keys == {"d": "it's 100% 'quoted' ?", "e": "\\ ; COMMIT; --"}


def test_what_a_write_answers_is_what_a_read_then_shows(store_url: str | None, state: Path) -> None:
    """Submit, vote and consume answer the request as their own statements left it (no read after the
    write): the same view a read right after returns, for every way a vote ends."""
    svc = service(state, store_url)
    try:
        reg = svc.registry
        bot = svc.authenticate(reg.add("agent", "bot"))
        alice = svc.authenticate(reg.add("reviewer", "alice", ("finance",), break_glass=True))
        wendy = svc.authenticate(reg.add("reviewer", "wendy", ("security",)))

        def filed(amount: int) -> dict[str, Any]:
            view = svc.submit(bot, {"action": {"tool": "payment.send", "args": {"amount": amount}}})
            assert view == svc.get(bot, view["id"])
            return view

        one = filed(500)
        approved = svc.vote(alice, one["id"], "approve", evidence=one["digest"])
        assert approved["status"] == "approved" and approved == svc.get(alice, one["id"])
        done = svc.consume(bot, svc.get(bot, one["id"])["token"], "k-00000001")
        assert done["status"] == "executed" and done == svc.get(bot, one["id"])
        two = filed(20000)  # two approvals with roles: the first is recorded, the request stays pending
        first = svc.vote(wendy, two["id"], "approve", evidence=two["digest"])
        assert first["status"] == "pending" and len(first["votes"]) == 1 and first == svc.get(wendy, two["id"])
        taken_back = svc.vote(wendy, two["id"], "deny", evidence=two["digest"], reason="changed my mind")
        assert taken_back["status"] == "denied" and taken_back == svc.get(wendy, two["id"])
        three = filed(500)
        denied = svc.vote(wendy, three["id"], "deny", evidence=three["digest"], reason="no")
        assert denied["status"] == "denied" and denied == svc.get(wendy, three["id"])
        four = filed(20000)
        glass = svc.vote(alice, four["id"], "approve", evidence=four["digest"], break_glass=True,
                         reason="the payroll run is stuck", duration="10m")
        assert glass["status"] == "approved" and glass["break_glass"] and glass["flagged"]
        assert glass == svc.get(alice, four["id"])
        assert svc.verify().ok
    finally:
        svc.ledger.close()


def test_an_outcome_is_recorded_once_by_the_agent_after_its_consume(store_url: str | None, state: Path) -> None:
    svc = service(state, store_url)
    try:
        reg = svc.registry
        bot, other = (svc.authenticate(reg.add("agent", name)) for name in ("bot", "other"))
        alice = svc.authenticate(reg.add("reviewer", "alice"))
        req = svc.submit(bot, {"action": {"tool": "payment.send", "args": {"amount": 500}}})

        def refused(who: Any, rid: str = req["id"]) -> str:
            with pytest.raises(Refusal) as err:
                svc.outcome(who, rid, "executed")
            return err.value.code

        assert refused(bot) == "not_consumed"  # pending: nothing ran
        svc.vote(alice, req["id"], "approve", evidence=req["digest"])
        assert refused(bot) == "not_consumed"  # approved, not consumed
        svc.consume(bot, svc.get(bot, req["id"])["token"], "k-00000001")
        assert refused(other) == "unknown_request" and refused(alice) == "not_consumed"
        assert refused(bot, "req-nope") == "unknown_request"
        svc.outcome(bot, req["id"], "failed", "boom")
        assert refused(bot) == "not_consumed"  # once
        assert svc.get(bot, req["id"])["outcome"] == "failed"
        assert svc.verify().ok
    finally:
        svc.ledger.close()


def test_a_read_is_a_snapshot(store: Store, store_url: str | None, state: Path) -> None:
    other = opened(store_url, state)
    try:
        with store.read() as con:
            before = con.execute("SELECT count(*) FROM meta").fetchone()[0]
            writer = threading.Thread(target=lambda: _insert(other, "later", "x"))
            writer.start()
            writer.join(timeout=30)
            assert con.execute("SELECT count(*) FROM meta").fetchone()[0] == before
        with store.read() as con:
            assert con.execute("SELECT count(*) FROM meta").fetchone()[0] == before + 1
    finally:
        other.close()


def _insert(store: Store, key: str, value: str) -> None:
    with store.transaction() as con:
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))


def test_listeners_hear_what_commits_and_nothing_that_rolls_back(store: Store) -> None:
    heard: list[str | None] = []
    stop = store.listen(heard.append)
    try:
        time.sleep(0.3)  # PostgreSQL: the listener's LISTEN is in place
        heard.clear()
        with pytest.raises(RuntimeError), store.transaction() as con:
            store.changed(con, ["req-rolled-back"])
            raise RuntimeError("boom")
        with store.transaction() as con:
            store.changed(con, ["req-1", "req-2", "req-1"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and set(heard) < {"req-1", "req-2"}:
            time.sleep(0.01)
        assert {"req-1", "req-2"} <= set(heard) and "req-rolled-back" not in heard
    finally:
        stop()


# ---- the service's SQL, the same on both ---------------------------------------------------------------
def test_the_whole_life_of_requests(store_url: str | None, state: Path) -> None:
    now = [1_800_000_000.0]
    policy = state.parent / "policy.yaml"
    policy.write_text(POLICY)
    svc = Service(Ledger(state, store=opened(store_url, state), clock=lambda: now[0]), policy)
    svc.start()
    try:
        reg = svc.registry
        bot = svc.authenticate(reg.add("agent", "billing-bot", users=("u-bob",)))
        alice = svc.authenticate(reg.add("reviewer", "alice", ("finance",)))
        wendy = svc.authenticate(reg.add("reviewer", "wendy", ("security",)))
        assert [p["id"] for p in reg.list()] == ["billing-bot", "alice", "wendy"]
        call = {"tool": "payment.send", "user": "u-bob", "args": {"amount": 250, "recipient": "ACME"}}
        req = svc.submit(bot, {"action": call})
        assert req["status"] == "pending" and req["user"] == "u-bob"
        assert [r["id"] for r in svc.list(alice)] == [req["id"]]
        svc.vote(alice, req["id"], "approve", evidence=req["digest"])
        token = svc.get(bot, req["id"])["token"]
        done = svc.consume(bot, token, "k-00000001")
        assert done["status"] == "executed" and svc.consume(bot, token, "k-00000001")["status"] == "executed"
        with pytest.raises(Refusal) as again:
            svc.consume(bot, token, "k-00000002")
        assert again.value.code == "used"
        svc.outcome(bot, req["id"], "executed")
        big = svc.submit(bot, {"action": {**call, "args": {"amount": 20000}}})
        svc.vote(wendy, big["id"], "approve", evidence=big["digest"])
        now[0] += 1
        svc.vote(alice, big["id"], "approve", evidence=big["digest"])
        shown = svc.get(alice, big["id"])
        assert shown["status"] == "approved" and [v["reviewer"] for v in shown["votes"]] == ["wendy", "alice"]
        late = svc.submit(bot, {"action": {**call, "args": {"amount": 300}}})
        now[0] += 5 * 3600
        assert svc.expire() == 2  # one timed out, one approval expired
        assert svc.get(alice, late["id"])["status"] == "timed_out"
        assert svc.get(alice, big["id"])["status"] == "expired"
        assert svc.verify().ok
    finally:
        svc.ledger.close()


@pytest.mark.parametrize("field", ["tool", "session", "reason"])
def test_text_no_database_can_hold_is_refused_alike(store_url: str | None, state: Path, field: str) -> None:
    svc = service(state, store_url)
    try:
        bot = svc.authenticate(svc.registry.add("agent", "bot"))
        alice = svc.authenticate(svc.registry.add("reviewer", "alice"))
        call = {"tool": "payment.send", "args": {"amount": 500}}
        with pytest.raises(Refusal) as refused:
            if field == "reason":
                req = svc.submit(bot, {"action": call})
                svc.vote(alice, req["id"], "deny", evidence=req["digest"], reason="no\x00pe")
            else:
                svc.submit(bot, {"action": {**call, field: "payment.send\x00" if field == "tool" else "s\x00"}})
        assert refused.value.status == 400
        assert svc.verify().ok
    finally:
        svc.ledger.close()


# ---- many writers: replicas in one process, on one store ----------------------------------------------
def _replicas(store_url: str | None, state: Path, n: int = 2, **options: Any) -> list[Service]:
    """`n` services on one store and one key: each its own store connection(s), as replicas are."""
    first = service(state, store_url, **options)
    others = []
    for i in range(1, n):
        own = state.parent / f"replica-{i}"
        own.mkdir(mode=0o700, exist_ok=True)
        for name in ("service.key", "service.pub"):
            shutil.copy(state / name, own / name)
        (own / "policy.yaml").write_text(POLICY)
        if store_url is None:  # one SQLite file: a second process on the same state directory
            svc = Service(Ledger(state, store=opened(None, state)), state.parent / "policy.yaml", **options)
        else:
            svc = Service(Ledger(own, store=opened(store_url, own)), own / "policy.yaml", **options)
        svc.start()
        others.append(svc)
    return [first, *others]


def test_concurrent_writers_on_every_replica_make_one_chain(store_url: str | None, state: Path) -> None:
    replicas = _replicas(store_url, state)
    try:
        errors: list[BaseException] = []

        def write(ledger: Ledger, n: int) -> None:
            try:
                for i in range(n):
                    ledger.write(lambda con, now, audit, i=i: audit.extend(
                        [("refuse", {"i": i, "t": threading.get_ident()}, None)] * 2))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
        before = replicas[0].verify().count
        threads = [threading.Thread(target=write, args=(r.ledger, 25)) for r in replicas for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        result = replicas[0].verify()
        assert result.ok, result.problems
        assert result.count == before + 2 * 25 * 4 * len(replicas)
        with replicas[1].store.read() as con:
            seqs = [r[0] for r in con.execute("SELECT seq FROM audit ORDER BY seq").fetchall()]
        assert seqs == list(range(1, result.count + 1))  # no gap, no fork
        assert all(r.verify().ok for r in replicas)
    finally:
        for r in replicas:
            r.ledger.close()


def test_racing_votes_and_consumes_across_replicas_count_once(store_url: str | None, state: Path) -> None:
    replicas = _replicas(store_url, state)
    try:
        reg = replicas[0].registry
        bot = replicas[0].authenticate(reg.add("agent", "bot"))
        reviewers = [replicas[0].authenticate(reg.add("reviewer", f"r{i}")) for i in range(6)]
        for round_ in range(3):
            req = replicas[0].submit(bot, {"action": {"tool": "payment.send", "args": {"amount": 500 + round_}}})
            answers: list[str] = []

            def vote(i: int) -> None:
                try:
                    replicas[i % 2].vote(reviewers[i], req["id"], "approve", evidence=req["digest"])
                    answers.append("ok")
                except Refusal as exc:
                    answers.append(exc.code)
            _race(vote, len(reviewers))
            assert answers.count("ok") == 1 and set(answers) <= {"ok", "not_pending"}, answers
            token = replicas[1].get(bot, req["id"])["token"]
            used: list[str] = []

            def consume(i: int) -> None:
                try:
                    replicas[i % 2].consume(bot, token, f"key-{round_}-{i:04d}")
                    used.append("ok")
                except Refusal as exc:
                    used.append(exc.code)
            _race(consume, 8)
            assert used.count("ok") == 1 and set(used) <= {"ok", "used"}, used
        with replicas[0].store.read() as con:
            kinds = [r[0] for r in con.execute("SELECT kind FROM audit WHERE request_id IS NOT NULL").fetchall()]
        assert kinds.count("approve") == kinds.count("token") == kinds.count("consume") == 3
        assert all(r.verify().ok for r in replicas)
    finally:
        for r in replicas:
            r.ledger.close()


def test_an_agents_cap_on_waiting_requests_holds_across_replicas(store_url: str | None, state: Path) -> None:
    # each replica counts the agent's waiting requests in its own transaction: without a lock on the agent,
    # submissions racing on two replicas would each count the others' uncommitted ones as absent
    replicas = _replicas(store_url, state, max_pending=3)
    try:
        for round_ in range(4):
            bot = replicas[0].authenticate(replicas[0].registry.add("agent", f"bot{round_}"))
            answers: list[str] = []

            def submit(i: int, bot: Any = bot, answers: list[str] = answers) -> None:
                try:
                    replicas[i % 2].submit(bot, {"action": {"tool": "payment.send", "args": {"amount": 500, "i": i}}})
                    answers.append("ok")
                except Refusal as exc:
                    answers.append(exc.code)
            _race(submit, 12)
            assert answers.count("ok") == 3 and set(answers) == {"ok", "too_many_pending"}, (round_, answers)
        assert all(r.verify().ok for r in replicas)
    finally:
        for r in replicas:
            r.ledger.close()


def test_racing_writes_of_every_kind_on_two_replicas_leave_a_chain_that_matches_the_store(
        store_url: str | None, state: Path) -> None:
    # the chain's order of two writes to one request must be the order they happened in: the audit's
    # replay of the chain (submit, vote, approve, token, consume, outcome, withdraw) must end where the rows are
    replicas = _replicas(store_url, state)
    try:
        reg = replicas[0].registry
        bots = [replicas[0].authenticate(reg.add("agent", f"bot{i}")) for i in range(4)]
        reviewer = replicas[0].authenticate(reg.add("reviewer", "rev"))
        errors: list[BaseException] = []

        def life(i: int) -> None:
            one, other = replicas[i % 2], replicas[(i + 1) % 2]
            try:
                for n in range(6):
                    req = one.submit(bots[i], {"action": {"tool": "payment.send", "args": {"amount": 500, "n": n}}})
                    if n % 3 == 2:  # withdrawn on one replica while a vote races it on the other
                        threads = [threading.Thread(target=_quietly, args=(one.withdraw, bots[i], req["id"])),
                                   threading.Thread(target=_quietly, args=(other.vote, reviewer, req["id"], "approve"),
                                                    kwargs={"evidence": req["digest"]})]
                        for t in threads:
                            t.start()
                        for t in threads:
                            t.join(timeout=60)
                        continue
                    other.vote(reviewer, req["id"], "approve", evidence=req["digest"])
                    token = one.get(bots[i], req["id"])["token"]
                    other.consume(bots[i], token, f"key-{i}-{n}-0")
                    one.outcome(bots[i], req["id"], "executed")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
        _race(life, len(bots))
        assert not errors, errors
        for r in replicas:
            result = r.verify()
            assert result.ok, result.problems
    finally:
        for r in replicas:
            r.ledger.close()


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Refusal:
        pass


def _race(fn: Any, n: int) -> None:
    go = threading.Barrier(n)

    def run(i: int) -> None:
        go.wait()
        fn(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


# ---- the command line on either store ------------------------------------------------------------------
def gatekit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatekit.cli", *args], capture_output=True, text=True, timeout=120)


def test_principals_and_audit_verify_on_either_store(store_url: str | None, state: Path) -> None:
    store = ["--store", store_url] if store_url else []
    added = gatekit("principals", "add", "reviewer", "alice", "--role", "finance", "--state", str(state), *store)
    assert added.returncode == 0 and added.stdout.startswith("gk_r_"), added.stderr
    listed = gatekit("principals", "list", "--state", str(state), "--json", *store)
    assert [p["id"] for p in __import__("json").loads(listed.stdout)] == ["alice"]
    assert gatekit("audit", "verify", "--state", str(state), *store).returncode == 0
    raw = Raw(store_url, state)
    try:
        raw.execute("UPDATE principals SET roles = ? WHERE id = ?", ('["finance", "security"]', "alice"))
    finally:
        raw.close()
    tampered = gatekit("audit", "verify", "--state", str(state), *store)
    assert tampered.returncode == 1 and "principal `alice` differs from its registration" in tampered.stdout


def test_audit_verify_does_not_create_a_store(tmp_path: Path, pg_url: str, postgres: Any) -> None:
    from gatekit.server.keys import signing_key

    signing_key(tmp_path)
    done = gatekit("audit", "verify", "--state", str(tmp_path), "--store", pg_url)
    assert done.returncode == 1 and "no approvals store in" in done.stdout + done.stderr
    with pytest.raises(StoreError, match="no approvals store"):
        open_store(pg_url, tmp_path, create=False)
    assert postgres.sql(pg_url.split("/")[3].split("?")[0], "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'public'") == []


# ---- rotating the signing key (docs/operations.md) -----------------------------------------------------
def test_a_rotated_key_keeps_the_chain_verifying(store_url: str | None, state: Path) -> None:
    svc = service(state, store_url)
    bot = svc.authenticate(svc.registry.add("agent", "bot"))
    alice = svc.authenticate(svc.registry.add("reviewer", "alice"))
    req = svc.submit(bot, {"action": {"tool": "payment.send", "args": {"amount": 500}}})
    svc.vote(alice, req["id"], "approve", evidence=req["digest"])
    old_token = svc.get(bot, req["id"])["token"]
    old_kid = svc.key_id
    svc.ledger.close()
    # the documented steps: keep the old public half in retired-keys/, remove the key, start again
    (state / "retired-keys").mkdir()
    shutil.move(state / "service.pub", state / "retired-keys" / f"{old_kid}.pub")
    (state / "service.key").unlink()
    svc = service(state, store_url)
    try:
        assert svc.key_id != old_kid and svc.verify().ok
        with pytest.raises(Refusal) as refused:  # an approval signed by the retired key is not honoured
            svc.consume(bot, old_token, "k-00000001")
        assert refused.value.code == "signature"
        store = ["--store", store_url] if store_url else []
        assert gatekit("audit", "verify", "--state", str(state), *store).returncode == 0
        only_new = gatekit("audit", "verify", "--state", str(state), "--public-key", str(state / "service.pub"),
                           *store)
        assert only_new.returncode == 1 and f"names key `{old_kid}`" in only_new.stdout
    finally:
        svc.ledger.close()
