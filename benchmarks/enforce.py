"""Enforce-mode latency: `Gate.check` against `cedarpy.is_authorized` and regopy, on the same requests.

    python -m benchmarks enforce --n 20000

The calls of benchmarks/gate.py (the synthetic mix, 200 ms apart). Each engine decides every call, each
call timed alone (`perf_counter_ns`), GC on, engines interleaved call by call so that load on the shared
machine hits all of them alike. `Gate.check` gets the call as a plain dict (its `ts`, agent, session, user and
context also as the host's keyword assertions, which is what a gate decides on) and does all its own reading;
Cedar and Rego get their request already built (the conversion is not timed: in their favour).
Gate.check runs the policy without windows (what the peers run) and, separately, with its two windows; a
third gate runs the policy without windows on decide's evaluator (the path before gatekit/policy/closure.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent


def quantile(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    from time import perf_counter_ns as timer

    from benchmarks.gate import calls, pinned, reference_gate
    from benchmarks.peers import Cedar, Rego, verdict
    from gatekit import Gate, load_policy

    ap = argparse.ArgumentParser(prog="python -m benchmarks enforce")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=2_000)
    args = ap.parse_args(argv)
    stream = calls(args.n + args.warmup)
    gate = Gate(load_policy(HERE / "policies" / "twenty-nowindow.yaml"), mode="enforce")
    gate_w = Gate(load_policy(HERE / "policies" / "twenty.yaml"), mode="enforce")
    gate_ref = reference_gate(HERE / "policies" / "twenty-nowindow.yaml")  # decide's evaluator: the path before
    cedar, rego = Cedar(), Rego()
    creq = [cedar.request(c) for c in stream]
    rreq = [rego.request(c) for c in stream]
    asserted = [pinned(c) for c in stream]  # the host's, as Cedar's and Rego's requests are built untimed
    names = ("Gate.check (no windows)", "Gate.check (2 window rules)", "cedarpy.is_authorized", "regopy query",
             "Gate.check (no windows), decide's evaluator")
    times: dict[str, list[float]] = {k: [] for k in names}
    mismatches = 0
    gc.collect()
    for i, call in enumerate(stream):
        t0 = timer(); d = gate.check(call, **asserted[i]); t1 = timer()  # noqa: E702
        gate_w.check(call, **asserted[i]); t2 = timer()  # noqa: E702
        c = cedar.authorize(creq[i]); t3 = timer()  # noqa: E702
        r = rego.authorize(rreq[i]); t4 = timer()  # noqa: E702
        ref = gate_ref.check(call, **asserted[i]); t5 = timer()  # noqa: E702
        if i < args.warmup:
            continue
        for k, dt in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[k].append(dt / 1000)
        want = d.decision
        mismatches += ref != d
        if verdict(cedar.rules(c)) != want or r.results[0].expressions[0]["decision"] != want:
            mismatches += 1
    load = os.getloadavg()
    print(f"command: python -m benchmarks enforce --n {args.n} --warmup {args.warmup}")
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| engine | calls | p50 µs | p90 µs | p99 µs | mean µs | p50 vs cedarpy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    cedar_p50 = quantile(sorted(times["cedarpy.is_authorized"]), .5)
    for k in names:
        xs = sorted(times[k])
        print(f"| {k} | {len(xs):,} | {quantile(xs, .5):.1f} | {quantile(xs, .9):.1f} | {quantile(xs, .99):.1f} | "
              f"{statistics.fmean(xs):.1f} | {quantile(xs, .5) / cedar_p50:.2f} |")
    print(f"\ndecision mismatches between Gate.check (no windows), cedarpy, regopy and decide's evaluator: {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
