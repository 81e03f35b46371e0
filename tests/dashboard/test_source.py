"""How the dashboard reads the store: the same frames the metrics read, kept until the store changes, and a
page that keeps rendering (stale, flagged) while another process holds the write lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatekit.dashboards import source
from gatekit.logs.store import Store
from gatekit.run import decisions_frame
from gatekit.policy import load_policy
from gatekit.replay import replay

from .conftest import STARTER, STRICT, charts, ok, texts

# Holds the store open for writing, with a committed change (so its version moves), until told to stop.
WRITER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO meta VALUES ('writer', 'holding') ON CONFLICT DO UPDATE SET value = 'again'")
print("holding", flush=True)
sys.stdin.readline()
con.close()
"""


@pytest.fixture
def copy(tmp_path: Path, sample_store: Path) -> Path:
    path = tmp_path / "copy.duckdb"
    shutil.copyfile(sample_store, path)
    return path


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, copy: Path) -> Path:
    monkeypatch.setenv(source.DB_ENV, str(copy))
    return copy


class Writer:
    """Another process holding the write lock on a store."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "holding"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=30) == 0


def test_decisions_are_the_metrics_frame(db: Path) -> None:
    with Store(db, read_only=True) as store:
        for run in ("starter", "strict"):
            assert source.decisions(run).equals(decisions_frame(store, run))


def test_decisions_of_a_run_older_than_some_actions(db: Path) -> None:
    with Store(db) as store:  # actions ingested after the run: the run covers a prefix of the log
        store.con.execute("INSERT INTO actions SELECT seq + 100000, action_id || '-new', ts, agent, session, "
                          '"user", tool, args, context, evidence_hash, executed_hash, outcome, approvals, label, '
                          "extra, source, source_line, ingested_at FROM actions WHERE seq <= 50")
    with Store(db, read_only=True) as store:
        expected = decisions_frame(store, "starter")
    assert source.decisions("starter").equals(expected)


def test_decisions_of_a_run_with_gaps(db: Path) -> None:
    with Store(db) as store:
        store.con.execute("DELETE FROM decisions WHERE run = 'starter' AND seq % 7 = 0")
    with Store(db, read_only=True) as store:
        expected = decisions_frame(store, "starter")
    assert source.decisions("starter").equals(expected)


def test_a_read_is_kept_until_the_store_changes(db: Path) -> None:
    calls = []

    def count(store: Store) -> int:
        calls.append(1)
        return store.count_actions()

    assert source.read("count-test", count) == source.read("count-test", count) == 20_000
    assert len(calls) == 1
    before = source.version(db)
    with Store(db) as store:
        replay(store, load_policy(STARTER), "again")
    assert source.version(db) != before
    assert "again" in source.contents().run_names
    source.read("count-test", count)
    assert len(calls) == 2


def test_a_loaded_run_is_kept_until_it_is_replaced(db: Path) -> None:
    first = source.run("starter")
    source.read("count-test-2", lambda store: store.count_actions())
    assert source.run("starter") is first  # the same run: its policy parsed and its frame assembled once
    assert source.policy("starter") is first.policy and source.decisions("starter") is first.frame
    with Store(db) as store:  # the store changes, the run does not
        replay(store, load_policy(STARTER), "other")
    assert source.run("starter") is first
    with Store(db) as store:  # the run is replaced: loaded again
        replay(store, load_policy(STRICT), "starter", replace=True)
    again = source.run("starter")
    assert again is not first and again.policy.name == "starter-strict"
    with Store(db, read_only=True) as store:
        assert again.frame.equals(decisions_frame(store, "starter"))
    assert not again.frame["decision"].equals(first.frame["decision"])


def test_no_connection_is_held_between_reads(db: Path) -> None:
    source.contents()
    source.decisions("starter")
    with Store(db, timeout=0) as store:  # a writer gets the file at once
        assert store.count_actions() == 20_000


def test_a_page_keeps_rendering_while_another_process_writes(open_page, copy: Path) -> None:
    ok(open_page("overview", copy))  # read once
    writer = Writer(copy)
    try:
        started = time.monotonic()
        at = ok(open_page("overview", copy))
        took = time.monotonic() - started
    finally:
        writer.stop()
    assert "is being written by another process" in texts(at.warning)
    assert len(charts(at)) == 4  # what the store held before
    assert took < 3 * source.LOCK_WAIT  # one wait per page, not one per read
    after = ok(open_page("overview", copy))
    assert "is being written" not in texts(after.warning)


def test_a_page_with_nothing_read_yet_says_the_store_is_busy(open_page, copy: Path) -> None:
    writer = Writer(copy)
    try:
        at = ok(open_page("drift", copy))
    finally:
        writer.stop()
    assert "The store is being written" in texts(at.info)
    assert len(charts(ok(open_page("drift", copy)))) == 3
