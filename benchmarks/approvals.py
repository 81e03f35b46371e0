"""The approvals service under load: N agent processes filing escalations through `Gate`, M reviewer processes
approving them, on 1 or 2 replicas of `gatekit serve`, on SQLite or PostgreSQL; one replica killed -9 in
the middle (and restarted, as a supervisor would).

    python -m benchmarks approvals                                   # the matrix: sqlite x1, postgresql x1, x2
    python -m benchmarks approvals --store postgresql --replicas 2 --agents 20 --reviewers 5 --duration 30
    python -m benchmarks approvals --quick                           # what tests/test_benchmarks.py runs

Each agent process runs `--calls` concurrent gates' worth of calls, each call a `payment.send` of $500 (the
`standard` tier: one approval), unique by its `args.call`, filed with `Gate.submit` and run with
`Pending.run` (wait, verify the token, consume it, run, report the outcome). Reviewers read the oldest page
of pending requests (`PAGE`, 20, as a reviewer's screen would show them, not every request each round) and
approve their share of it. Clients reach the replicas as through a load balancer (benchmarks spread them, and
a client whose replica is down moves to the next; a submission is sent again only if it never left).

Reported: submissions a second (acknowledged by the service, over the whole run, the kill included),
submit latency (`Gate.submit`), submit-to-decision (until the approving vote is answered) and
decision-to-run (until the call's function starts) p50/p99; then the census of the store against what the
clients saw: lost, duplicated and double-consumed requests (each must be 0), and calls that failed closed
(a gate that could not finish denies). PostgreSQL runs on a throwaway cluster with its default durability
(fsync and synchronous commit on); SQLite with the service's (synchronous FULL).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/server/ holds the cluster and replica helpers
    sys.path.insert(0, str(ROOT))


PAGE = 20  # what a reviewer reads per round: the oldest page of pending requests, as a reviewer's screen shows


def process_cpu(pid: int | None, children: bool = False) -> float:
    """CPU seconds (user + system) a live process used (Linux `/proc`); `children`: with its reaped children's
    and its live children's (a PostgreSQL postmaster and its backends). 0 where it cannot be read."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                f = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[1]) == pid:
                used += int(f[11]) + int(f[12])
    return used / tick


def own_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# ---- the worker processes ------------------------------------------------------------------------------
def _wait_for_go(go: Path) -> tuple[float, float]:
    while not go.exists():
        time.sleep(0.02)
    start, stop = json.loads(go.read_text())
    while time.monotonic() < start:
        time.sleep(0.005)
    return start, stop


def agent_process(args: argparse.Namespace) -> None:
    from gatekit import Denied, Gate, load_policy
    from tests.server.replicas import FailoverClient

    urls = args.urls.split(",")
    policy = load_policy(args.policy)
    out: dict[str, Any] = {"acked": {}, "ran": {}, "submit": [], "times": {}, "denied": 0, "refused": 0}
    lock = threading.Lock()
    Path(args.ready).touch()
    _, stop = _wait_for_go(Path(args.go))

    def calls(lane: int) -> None:
        order = urls[lane % len(urls):] + urls[:lane % len(urls)]
        gate = Gate(policy, mode="enforce", approvals=FailoverClient(order, args.credential), agent=args.name,
                    timeout=60, poll=0.05)
        n = 0
        while time.monotonic() < stop:
            n += 1
            call = f"{args.name}-{lane}-{n}"
            t0 = time.monotonic()
            try:
                pending = gate.submit({"tool": "payment.send", "args": {"amount": 500, "call": call}})
            except Denied:
                with lock:
                    out["refused"] += 1  # not filed (the replica was down): the agent's call failed closed
                time.sleep(0.05)
                continue
            t1 = time.monotonic()
            with lock:
                out["acked"][pending.request_id] = call
                out["submit"].append(t1 - t0)

            def run(act: Any, call: str = call) -> None:
                with lock:
                    out["ran"][call] = out["ran"].get(call, 0) + 1
                    out["times"][pending.request_id] = (t0, time.monotonic())
            try:
                pending.run(run)
            except Denied:
                with lock:
                    out["denied"] += 1

    lanes = [threading.Thread(target=calls, args=(i + args.index,)) for i in range(args.calls)]
    cpu = own_cpu()
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    out["cpu"] = own_cpu() - cpu
    Path(args.out).write_text(json.dumps(out))


def reviewer_process(args: argparse.Namespace) -> None:
    import zlib

    from gatekit.enforce.client import ServiceError
    from tests.server.replicas import FailoverClient

    urls = args.urls.split(",")
    order = urls[args.index % len(urls):] + urls[:args.index % len(urls)]
    client = FailoverClient(order, args.credential, timeout=10)
    decided: dict[str, float] = {}
    Path(args.ready).touch()
    _wait_for_go(Path(args.go))
    cpu = own_cpu()
    done = Path(args.done)
    while True:
        try:
            waiting = [r for r in client.list(limit=PAGE) if zlib.crc32(r["id"].encode()) % args.of == args.index]
        except ServiceError:
            time.sleep(0.05)
            continue
        if not waiting:
            if done.exists():
                break
            time.sleep(0.01)
            continue
        for r in waiting:
            try:
                client.vote(r["id"], "approve", r["digest"])
                decided[r["id"]] = time.monotonic()
            except ServiceError:
                pass  # decided already (a retried vote), or the replica died: listed again next round
    Path(args.out).write_text(json.dumps({"decided": decided, "cpu": own_cpu() - cpu}))


# ---- the run -------------------------------------------------------------------------------------------
def run(store: str, replicas: int, agents: int, reviewers: int, duration: float, calls: int, kill: bool,
        work: Path, cluster: Any = None) -> dict[str, Any]:
    from tests.server.conftest import POLICY, Served
    from tests.server.replicas import census, start_replicas

    work.mkdir(parents=True, exist_ok=True)
    if store == "postgresql":
        url = cluster.database(f"bench_{replicas}_{int(time.time() * 1000) % 10**9}")
        served = start_replicas(work, url, replicas)
        census_of = url
    else:
        if replicas != 1:
            raise SystemExit("SQLite serves one replica (one host's file): use --store postgresql for replicas")
        (work / "r0").mkdir()
        served = [Served(work / "r0", POLICY)]
        census_of = str(served[0].state / "approvals.sqlite")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = ",".join(s.url for s in served)
        go, done = work / "go.json", work / "done"
        roles = [("agent", i, served[0].add("agent", f"bench-agent-{i}")) for i in range(agents)]
        roles += [("reviewer", i, served[0].add("reviewer", f"bench-reviewer-{i}")) for i in range(reviewers)]
        for role, i, credential in roles:
            cmd = [sys.executable, "-m", "benchmarks.approvals", role, "--urls", urls, "--credential", credential,
                   "--index", str(i), "--of", str(reviewers), "--name", f"bench-agent-{i}",
                   "--policy", str(served[0].policy_path), "--calls", str(calls), "--go", str(go),
                   "--done", str(done), "--ready", str(work / f"{role}-{i}.ready"),
                   "--out", str(work / f"{role}-{i}.json")]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, start_new_session=True))
        while sum(1 for _ in work.glob("*.ready")) < len(roles):
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a benchmark worker died while starting")
            time.sleep(0.1)
        start = time.monotonic() + 0.5
        (work / "go.tmp").write_text(json.dumps([start, start + duration]))
        (work / "go.tmp").rename(go)  # whole, or not there: a worker never reads half of it
        service_cpu = -sum(process_cpu(s.process.pid if s.process else None) for s in served)
        pg = cluster.pid if store == "postgresql" else None
        pg_cpu = -process_cpu(pg, children=True)
        killed = None
        if kill:
            time.sleep(max(0.0, start + duration / 2 - time.monotonic()))
            victim = served[-1]
            service_cpu += process_cpu(victim.process.pid if victim.process else None)
            victim.kill()
            killed = time.monotonic() - start
            time.sleep(1.0)
            victim.start()  # a supervisor's restart (systemd Restart=always)
            service_cpu -= process_cpu(victim.process.pid if victim.process else None)
        agent_procs = procs[:agents]
        for p in agent_procs:
            p.wait(timeout=duration + 180)
        done.touch()
        for p in procs[agents:]:
            p.wait(timeout=120)
        service_cpu += sum(process_cpu(s.process.pid if s.process else None) for s in served)
        pg_cpu += process_cpu(pg, children=True)
        if any(p.returncode for p in procs):
            raise RuntimeError(f"benchmark workers failed: {[p.returncode for p in procs]}")
        acked: dict[str, str] = {}
        ran: dict[str, int] = {}
        submit: list[float] = []
        times: dict[str, tuple[float, float]] = {}
        denied = refused = 0
        agent_cpu = reviewer_cpu = 0.0
        for i in range(agents):
            out = json.loads((work / f"agent-{i}.json").read_text())
            acked.update(out["acked"])
            for call, n in out["ran"].items():
                ran[call] = ran.get(call, 0) + n
            submit += out["submit"]
            times.update({k: tuple(v) for k, v in out["times"].items()})
            denied += out["denied"]
            refused += out["refused"]
            agent_cpu += out["cpu"]
        decided: dict[str, float] = {}
        for i in range(reviewers):
            out = json.loads((work / f"reviewer-{i}.json").read_text())
            decided.update(out["decided"])
            reviewer_cpu += out["cpu"]
        to_decision = [decided[r] - t[0] for r, t in times.items() if r in decided]
        to_run = [t[1] - decided[r] for r, t in times.items() if r in decided]
        counts = census(census_of, acked, ran)
        verified = [s.verify() for s in served]
        return {"store": store, "replicas": replicas, "agents": agents, "reviewers": reviewers, "calls": calls,
                "duration": duration, "killed_at": killed, "submissions": len(acked),
                "per_second": len(acked) / duration, "submit_p50": quantile(submit, .5),
                "submit_p99": quantile(submit, .99), "decision_p50": quantile(to_decision, .5),
                "decision_p99": quantile(to_decision, .99), "run_p50": quantile(to_run, .5),
                "run_p99": quantile(to_run, .99), "not_filed": refused, "denied": denied,
                "verified": all(v == 0 for v in verified),
                # CPU per acknowledged submission (ms): what the machine's cores paid, whatever else ran on them
                "cpu_ms": {k: v * 1000 / max(1, len(acked)) for k, v in (
                    ("agents", agent_cpu), ("reviewers", reviewer_cpu), ("service", service_cpu),
                    ("postgresql", pg_cpu))}, **counts}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for s in served:
            s.kill()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("agent", "reviewer"):
        return _worker(argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks approvals")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], action="append",
                    help="repeat for several (default: the matrix sqlite x1, postgresql x1, postgresql x2)")
    ap.add_argument("--replicas", type=int, action="append")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--reviewers", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2, help="concurrent calls per agent process")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of submissions per configuration")
    ap.add_argument("--no-kill", dest="kill", action="store_false", help="no kill -9 in the middle")
    ap.add_argument("--quick", action="store_true", help="3 agents, 2 reviewers, 4 s: sqlite x1, postgresql x2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.agents, args.reviewers, args.duration, args.calls = 3, 2, 4.0, 1
    matrix = [(s, r) for s in (args.store or []) for r in (args.replicas or [1])] or \
        ([("sqlite", 1), ("postgresql", 2)] if args.quick else [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)])
    cluster = None
    results = []
    with tempfile.TemporaryDirectory(prefix="gatekit-bench-") as tmp:
        try:
            if any(s == "postgresql" for s, _ in matrix):
                from tests.server.postgres import Cluster

                cluster = Cluster(durable=True, max_connections=300)
            for n, (store, replicas) in enumerate(matrix):
                results.append(run(store, replicas, args.agents, args.reviewers, args.duration, args.calls,
                                   args.kill, Path(tmp) / f"run-{n}", cluster))
        finally:
            if cluster is not None:
                cluster.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results, argv)
    bad = [r for r in results if r["lost"] or r["duplicated"] or r["double_consumed"] or not r["verified"]]
    return 1 if bad else 0


def _print(results: list[dict[str, Any]], argv: list[str]) -> None:
    load = os.getloadavg()
    print(f"command: python -m benchmarks approvals {' '.join(argv)}".rstrip())
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| store | replicas | agents x calls | reviewers | submissions/s | submit p50 / p99 ms | "
          "submit-to-decision p50 / p99 ms | decision-to-run p50 / p99 ms | kill -9 at s | lost | duplicated | "
          "double-consumed | failed closed | chain | CPU ms per submission: agents / reviewers / service / PostgreSQL |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        ms = lambda a, b: f"{r[a] * 1000:.1f} / {r[b] * 1000:.1f}"
        killed = f"{r['killed_at']:.1f}" if r["killed_at"] is not None else "-"
        print(f"| {r['store']} | {r['replicas']} | {r['agents']} x {r['calls']} | {r['reviewers']} | "
              f"{r['per_second']:.0f} | {ms('submit_p50', 'submit_p99')} | {ms('decision_p50', 'decision_p99')} | "
              f"{ms('run_p50', 'run_p99')} | {killed} | {r['lost']} | {r['duplicated']} | {r['double_consumed']} | "
              f"{r['failed_closed'] + r['not_filed']} | {'verifies' if r['verified'] else 'DOES NOT VERIFY'} | "
              + " / ".join(f"{v:.1f}" for v in r["cpu_ms"].values()) + " |")
    print("\nfailed closed: calls whose gate denied them (not filed while a replica was down, or filed and not "
          "finished); none ran. CPU: user + system seconds of each kind of process over the run, per submission "
          "(PostgreSQL: its postmaster and backends; the service: every replica, the killed one until its kill).")


def _worker(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["agent", "reviewer"])
    for name in ("urls", "credential", "name", "policy", "go", "done", "ready", "out"):
        ap.add_argument(f"--{name}", required=True)
    for name in ("index", "of", "calls"):
        ap.add_argument(f"--{name}", type=int, required=True)
    args = ap.parse_args(argv)
    (agent_process if args.role == "agent" else reviewer_process)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
