"""`gatekit replay --engine spark --spark-remote sc://...` for real: a local Spark Connect server (the
connect jar pyspark ships, started with spark-submit on 127.0.0.1, stopped by its PID), the replay over
Connect (the Arrow UDFs, the session's time zone), its decisions equal to DuckDB's replay of the same log.

Needs the Spark Connect client (`pyspark[connect]`: grpcio, grpcio-status, googleapis-common-protos, zstandard),
which the `spark` extra installs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("pyspark")
pytest.importorskip("grpc", reason="the Spark Connect client (the `spark` extra: pyspark[connect]) is not installed")

ROOT = Path(__file__).resolve().parents[2]
POLICY = """\
version: 1
name: connect
timezone: Europe/Berlin
tiers:
  standard: {approvals: 1, timeout: 4h}
rules:
  - {id: big-payment, tool: payment.send, action: escalate, tier: standard, when: {args.amount: {gt: 100}}}
  - {id: odd-memo, tool: payment.send, action: deny, when: {args.memo: {matches: "^x$"}}}
  - {id: glob, tool: "pay?ent.*", action: escalate, tier: standard, when: {time.hour: {lt: 12}}}
  - {id: burst, tool: "payment.*", action: deny, when: {rate: {window: 2h, per: agent, gt: 1}}}
  - {id: volume, tool: payment.send, action: deny, when: {sum: {field: args.amount, per: agent, window: 1h, gt: 600}}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import pyspark

    home = Path(pyspark.__file__).parent
    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    env = dict(os.environ, SPARK_HOME=str(home), PYSPARK_PYTHON=sys.executable)
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(home / "bin" / "spark-submit"), "--master", "local[2]",
             "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
             "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
             "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
             "--conf", "spark.driver.memory=1g"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Spark Connect server did not start:\n" + log.read_text()[-3000:])
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: spark-submit and the JVM it started
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_replay_over_spark_connect_equals_duckdb(connect_server: str, tmp_path: Path, gatekit_cli) -> None:
    acts = [{"action_id": f"a-{i}", "ts": f"2026-11-02T{8 + i % 6:02d}:00:{i:02d}Z", "agent": f"bot-{i % 2}",
             "tool": "payment.send" if i % 3 else "payment.refund",
             "args": {"amount": 90 + 40 * i, "memo": "x\n" if i == 4 else ("x" if i == 7 else "y")}}
            for i in range(1, 13)]
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(json.dumps(a) for a in acts) + "\n")
    (tmp_path / "policy.yaml").write_text(POLICY)
    out = tmp_path / "decisions"
    # its own process, as a user runs it: pyspark refuses a remote session beside the suite's classic one
    done = subprocess.run([sys.executable, "-m", "gatekit.cli", "replay", "--engine", "spark", "--spark-remote",
                           connect_server, "--input", str(logs), "--policy", str(tmp_path / "policy.yaml"),
                           "--out", str(out), "--json", "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["actions"] == len(acts)
    got = duckdb.connect().execute(f"SELECT action_id, decision, rules, errors, tier FROM "
                                   f"read_parquet('{out}/*.parquet') ORDER BY action_id").fetchall()

    db = tmp_path / "store.duckdb"
    for args in (("ingest", str(logs), "--db", str(db)),
                 ("replay", "--policy", str(tmp_path / "policy.yaml"), "--db", str(db), "--name", "duck")):
        code, _, err = gatekit_cli(*args, "--quiet")
        assert code == 0, err
    want = duckdb.connect(str(db), read_only=True).execute(
        "SELECT a.action_id, d.decision, d.rules, d.errors, d.tier FROM decisions d JOIN actions a USING (seq) "
        "WHERE d.run = 'duck' ORDER BY a.action_id").fetchall()
    assert got == want
    # the policy's every path ran: RE2's `$` (a-4's "x\n" does not match, a-7's "x" does), the `?` glob,
    # the time of day in Berlin, the rate and the exact sum windows
    by_id = {r[0]: r for r in got}
    assert "odd-memo" in by_id["a-7"][2] and "odd-memo" not in by_id["a-4"][2]
    assert any("volume" in r[2] for r in got) and any("burst" in r[2] for r in got)
    assert any("glob" in r[2] for r in got)
