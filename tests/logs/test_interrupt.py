"""Ctrl-C during `gatekit ingest`, in a real subprocess sent SIGINT: the store holds all of the ingest or
none of it, the command says which, and no traceback is printed.

The deterministic cases send the signal from inside the child at a chosen step of the transaction (its
connection wrapped so that `begin` or `commit` first signals the process, or a moment into a commit); the
random case signals the running command from outside at random moments."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
LINES = 30_000

# The child: `gatekit ingest LOG --db DB`, its store's connection wrapped so that `STEP` signals first.
CHILD = textwrap.dedent("""
    import os, signal, sys, threading
    signal.signal(signal.SIGINT, signal.default_int_handler)  # see FOREGROUND
    import gatekit.logs.store as store_module
    from gatekit.cli import main

    step, delay = os.environ["SIGINT_AT"], float(os.environ.get("SIGINT_DELAY", "0"))

    class Connection:
        def __init__(self, con):
            self._con = con
        def __getattr__(self, name):
            return getattr(self._con, name)
        def _signal(self):
            kill = lambda: os.kill(os.getpid(), signal.SIGINT)
            threading.Timer(delay, kill).start() if delay else kill()
        def begin(self):
            if step == "begin":
                self._signal()
            return self._con.begin()
        def commit(self):
            if step == "commit":
                self._signal()
            return self._con.commit()

    connect = store_module._connect
    store_module._connect = lambda *a, **k: Connection(connect(*a, **k))
    sys.argv = ["gatekit", *sys.argv[1:]]
    main()
""")


# A command started in the background by a non-interactive shell (`cmd &`, as a CI script may start the test
# run) inherits SIGINT ignored, and Python then leaves it ignored: Ctrl-C cannot reach a background job. The
# children here stand for a command typed at a terminal, so they start with Python's own SIGINT handler.
FOREGROUND = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupt") / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(LINES):
            f.write(json.dumps({"action_id": f"a-{i}", "ts": "2026-11-01T10:00:00Z", "tool": "payment.send",
                                "agent": "bot", "args": {"amount": i, "memo": "x" * 40}}) + "\n")
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM actions").fetchall()[0][0]
    finally:
        con.close()


def _check(done: subprocess.CompletedProcess[str], db: Path) -> int:
    """The invariant: exit 130, no traceback, and what the command says is what the store holds."""
    shown = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, shown
    held = _stored(db)
    # the signal came after the command was done: exit 0, or, when it lands during the interpreter's own
    # shutdown after main() returned, Python's exit by SIGINT (-2) without a word
    if done.returncode in (0, -signal.SIGINT):
        assert done.stdout == f"read {LINES:,}, stored {LINES:,}, quarantined 0, duplicates 0 (1 file)\n", shown
        assert held == LINES
        return held
    assert done.returncode == 130 and done.stderr.rstrip().endswith("aborted"), shown
    if "interrupted: nothing was stored" in done.stderr:
        assert done.stdout == "" and held == 0, shown
    else:
        assert "interrupted after the commit: all of the above was stored" in done.stderr, shown
        assert done.stdout == f"read {LINES:,}, stored {LINES:,}, quarantined 0, duplicates 0 (1 file)\n", shown
        assert held == LINES, shown
    return held


@pytest.mark.parametrize(("step", "delay", "stored"), [
    ("begin", 0, 0),          # before anything is written: rolled back
    ("commit", 0, LINES),     # as the commit starts: it waits for the commit, which stores everything
    ("commit", 0.005, LINES),  # while DuckDB commits (it would raise `Query interrupted` after committing)
])
def test_sigint_at_a_step_of_the_transaction(tmp_path: Path, log: Path, step: str, delay: float,
                                             stored: int) -> None:
    db = tmp_path / "s.duckdb"
    done = subprocess.run([sys.executable, "-c", CHILD, "ingest", str(log), "--db", str(db)], capture_output=True,
                          text=True, timeout=300, env=_env() | {"SIGINT_AT": step, "SIGINT_DELAY": str(delay)})
    assert done.returncode == 130, done.stderr
    assert _check(done, db) == stored


def test_sigint_at_random_moments_of_an_ingest(tmp_path: Path, log: Path) -> None:
    rng = random.Random(16)
    for attempt in range(4):
        db = tmp_path / f"s{attempt}.duckdb"
        child = subprocess.Popen([sys.executable, "-c", FOREGROUND + "from gatekit.cli import main; main()", "ingest", str(log),
                                  "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=_env())
        deadline = time.monotonic() + 120
        while not db.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # signal once the ingest has begun: Python's own start-up is not ours to guard
        time.sleep(rng.uniform(0, 3.0))
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=300)
        _check(subprocess.CompletedProcess(child.args, child.returncode, out, err), db)
