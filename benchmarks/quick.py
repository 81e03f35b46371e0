"""Every engine decides the same actions; any disagreement is a failure. Then per-decision throughput.

    python -m benchmarks quick                 # CI: 20k actions, every engine on the first 3,000 (< 60 s)
    python -m benchmarks peers --sample 20000  # the per-decision throughput table (cedarpy, regopy, decide, Gate)

Engines: gatekit replay (the compiled SQL), the floor (hand-written CASE over typed columns), `decide`
(scalar Python), `Gate.check` (enforce), cedarpy and regopy. Without window rules all six must give the
same decision, and gatekit, decide, Gate, Cedar and Rego the same matched rules. With the window rules
(Cedar and Rego excluded: stateless), gatekit replay, the floor, decide over the log and `Gate.check`
fed in log order must agree. Fails only on a wrong decision, never on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
POLICIES = {"nowindow": HERE / "policies" / "twenty-nowindow.yaml", "window": HERE / "policies" / "twenty.yaml"}


def _actions(con: Any, n: int) -> list[dict[str, Any]]:
    rows = con.execute('SELECT seq, ts, agent, session, "user", tool, args, context FROM actions '
                       "ORDER BY seq LIMIT ?", [n]).fetchall()
    return [{"seq": r[0], "ts": r[1], "agent": r[2], "session": r[3], "user": r[4], "tool": r[5],
             "args": json.loads(r[6]), "context": json.loads(r[7])} for r in rows]


def _timed(fn: Callable[[dict[str, Any]], Any], actions: list[dict[str, Any]]) -> tuple[list[Any], float]:
    t = time.perf_counter()
    out = [fn(a) for a in actions]
    return out, time.perf_counter() - t


def check(db: Path, sample: int, peers: bool = True) -> tuple[list[str], dict[str, tuple[int, float]]]:
    """Decide with every engine; the mismatches (as messages) and per-engine (decisions, seconds)."""
    import duckdb

    from benchmarks import floor
    from benchmarks.gate import pinned
    from benchmarks.peers import Cedar, Rego
    from gatekit import Gate, decide, load_policy
    from gatekit.logs.store import Store
    from gatekit.replay import replay

    problems: list[str] = []
    speed: dict[str, tuple[int, float]] = {}
    for kind, path in POLICIES.items():
        policy = load_policy(path)
        with Store(db) as store:
            replay(store, policy, f"quick-{kind}", replace=True)
        con = duckdb.connect(str(db))
        floor.prepare(con)
        floor.run(con, window=kind == "window")
        rows = con.execute(
            f"SELECT d.seq, d.decision, d.rules, f.decision FROM decisions d JOIN floor_decisions f USING (seq) "
            f"WHERE d.run = 'quick-{kind}' ORDER BY d.seq").fetchall()
        for seq, sql_d, _, floor_d in rows:
            if sql_d != floor_d:
                problems.append(f"{kind} seq {seq}: gatekit replay `{sql_d}`, floor `{floor_d}`")
        truth = {seq: (d, frozenset(r)) for seq, d, r, _ in rows}
        actions = _actions(con, sample)
        con.close()

        engines: dict[str, Callable[[dict[str, Any]], tuple[str, frozenset[str]]]] = {}
        engines["decide (Python)"] = lambda a: _pair(decide(policy, a))
        gate = Gate(policy, mode="enforce")
        engines["Gate.check"] = lambda a: _pair(gate.check(a, **pinned(a)))  # the host asserts the log's fields
        if peers and kind == "nowindow":
            cedar, rego = Cedar(), Rego()
            engines["cedarpy"] = cedar.decide
            engines["regopy"] = rego.decide
        for name, fn in engines.items():
            if name == "decide (Python)" and kind == "window":
                from gatekit.policy.decide import decide_log
                t = time.perf_counter()
                oracle = actions[:3000]  # quadratic: the first 3,000 only
                out = [_pair(d) for d in decide_log(policy, oracle)]
                secs = 0.0  # decide_log is the quadratic test oracle: not a speed
            else:
                out, secs = _timed(fn, actions)
            speed[f"{name if secs else 'decide_log (oracle)'} ({kind})"] = (len(out), secs)
            for a, (d, rules) in zip(actions, out):
                want_d, want_rules = truth[a["seq"]]
                if d != want_d or rules != want_rules:
                    problems.append(f"{kind} seq {a['seq']} ({a['tool']}): gatekit replay `{want_d}` "
                                    f"{sorted(want_rules)}, {name} `{d}` {sorted(rules)}")
        speed[f"gatekit replay + floor rows compared ({kind})"] = (len(rows), 0.0)
    return problems, speed


def _pair(decision: Any) -> tuple[str, frozenset[str]]:
    return decision.decision, frozenset(decision.rules)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks quick")
    ap.add_argument("--n", type=int, default=20_000, help="actions in the store (SQL engines decide all)")
    ap.add_argument("--sample", type=int, default=3_000, help="the first actions, decided by every engine")
    ap.add_argument("--no-peers", action="store_true", help="skip cedarpy and regopy")
    args = ap.parse_args(argv)
    from benchmarks.synth import build

    with tempfile.TemporaryDirectory() as tmp:
        db = build(Path(tmp) / "quick.duckdb", args.n)
        problems, speed = check(db, args.sample, peers=not args.no_peers)
    load = os.getloadavg()
    print(f"command: python -m benchmarks {'peers' if args.sample > 3000 else 'quick'} --n {args.n} "
          f"--sample {args.sample}")
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| engine (policy) | decisions checked | µs per decision | decisions/s |")
    print("|---|---:|---:|---:|")
    for name, (n, secs) in speed.items():
        if secs:
            print(f"| {name} | {n:,} | {secs / n * 1e6:,.1f} | {n / secs:,.0f} |")
        else:
            print(f"| {name} | {n:,} | | |")
    if problems:
        print(f"\n{len(problems)} disagreement(s):", *problems[:20], sep="\n", file=sys.stderr)
        return 1
    print("\nevery engine gave the same decision (and the same matched rules) on every action checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
