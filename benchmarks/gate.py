"""Latency of `Gate.check` (enforce mode, in-process) for the 20-rule policy, without and with its two windows:
the gate's closure evaluator (gatekit/policy/closure.py) against the same gate running decide's evaluator.

    python -m benchmarks gate --n 100000 --warmup 20000

A realistic stream: the tools, agents and argument mix of benchmarks/synth.py, five calls a second (so
the `email-burst` and `pay-volume` windows hold tens to hundreds of calls per agent), timestamps as a
live agent has them, asserted by the host as keyword arguments. Each call is timed alone with
`perf_counter_ns`, the gate's lock and window bookkeeping included, garbage collection left on. The two
paths run in one process, call by call, which one goes first alternating (so load on a shared machine and
cache effects hit both alike); both must give the same Decision on every call (exit 1 otherwise).

Then where the time goes: each part of a check timed alone on the same calls (reading the call into a
View, the tool-name variant check, evaluation by each evaluator, the window history's bookkeeping), and
the timer's own cost.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks.synth import TOOLS
from gatekit import Gate, load_policy
from gatekit.enforce.gate import PINNED
from gatekit.policy.closure import closure
from gatekit.policy.decide import History, evaluator

HERE = Path(__file__).parent
POLICY = HERE / "policies" / "twenty.yaml"
NOWINDOW = HERE / "policies" / "twenty-nowindow.yaml"
START = datetime(2026, 10, 5, 6, 0, tzinfo=timezone.utc)
TARGETS = {"no windows": (1.0, 5.0), "2 windows": (2.0, None)}  # p50, p99 µs (issue #14, goal 5)


def calls(n: int, seed: int = 7) -> list[dict]:
    """`n` calls like benchmarks/synth.py makes for replay, 200 ms apart."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        amount: float | str = round(rng.randrange(2_000_000) / 100, 2)
        if rng.randrange(50) == 0:
            amount = f"{rng.randrange(5_000_000) / 100:.2f}"  # a numeric string now and then
        out.append({
            "ts": START + timedelta(milliseconds=200 * i),
            "agent": f"agent-{rng.randrange(12)}", "session": f"s-{i // 25}", "user": f"u-{rng.randrange(400)}",
            "tool": rng.choice(TOOLS),
            "args": {
                "amount": amount,
                "recipient": rng.choice(["acme", "globex", "initech", "mallory", "umbrella"]),
                "rows_affected": rng.randrange(5000), "rows": rng.randrange(300_000),
                "destination": rng.choice(["s3://internal/x", "s3://partner.bucket/y", "https://external.example/z"]),
                "role": rng.choice(["viewer", "editor", "org-admin"]), "replicas": rng.randrange(80),
                "recipients": rng.randrange(9000), "to": rng.choice(["a@example.com", "b@customer.org", "c@example.com"]),
                "path": rng.choice(["secret/prod/db", "secret/dev/x", "kv/app"]),
            },
            "context": {"env": rng.choice(["prod", "staging", "dev"])},
        })
    return out


def pinned(call: dict) -> dict:
    """The call's `ts`, `agent`, `session`, `user` and `context` as host code asserts them to a gate (which
    never takes them from the payload): one gate serves the whole synthetic fleet."""
    return {name: call[name] for name in PINNED if name in call}


class _DecidePath:
    """decide's `Evaluator` where the gate asks for a tool's plan: every call through `evaluate`."""

    def __init__(self, ev: Any) -> None:
        self.windows, self.evaluate = ev.windows, ev.evaluate

    def plan(self, tool: str) -> Callable[..., Any]:
        return self.evaluate


def reference_gate(path: Path) -> Gate:
    """A gate deciding with decide's evaluator (the path before the closure evaluator), all else the same."""
    gate = Gate(load_policy(path), mode="enforce")
    gate._evaluator = _DecidePath(evaluator(gate.policy))  # type: ignore[assignment]  # the same windows
    return gate


def measure(path: Path, n: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, int], int]:
    """Both paths on the same stream, interleaved: times (µs) per path, the decisions, the mismatches."""
    new, old = Gate(load_policy(path), mode="enforce"), reference_gate(path)
    stream = calls(n + warmup)
    asserted = [pinned(call) for call in stream]
    timer = time.perf_counter_ns
    check_new, check_old = new.check, old.check
    times: dict[str, list[float]] = {"decide": [], "closure": []}
    decisions = {"allow": 0, "escalate": 0, "deny": 0}
    mismatches = 0
    for i, (call, kw) in enumerate(zip(stream, asserted)):
        if i % 2:
            t0 = timer(); a = check_new(call, **kw); t1 = timer(); b = check_old(call, **kw); t2 = timer()  # noqa: E702
            dn, do = t1 - t0, t2 - t1
        else:
            t0 = timer(); b = check_old(call, **kw); t1 = timer(); a = check_new(call, **kw); t2 = timer()  # noqa: E702
            do, dn = t1 - t0, t2 - t1
        if i < warmup:
            continue
        times["closure"].append(dn / 1000)
        times["decide"].append(do / 1000)
        decisions[a.decision] += 1
        mismatches += a != b
    return times, decisions, mismatches


def cpu(path: Path, n: int, warmup: int) -> dict[str, float]:
    """CPU µs per check (`process_time`, this process only: less moved by other load than wall time), each
    path over the whole stream on its own, fresh gates."""
    stream = calls(n + warmup)
    asserted = [pinned(call) for call in stream]
    out = {}
    for name, gate in (("decide", reference_gate(path)), ("closure", Gate(load_policy(path), mode="enforce"))):
        check = gate.check
        for call, kw in zip(stream[:warmup], asserted[:warmup]):
            check(call, **kw)
        t0 = time.process_time()
        for call, kw in zip(stream[warmup:], asserted[warmup:]):
            check(call, **kw)
        out[name] = (time.process_time() - t0) / n * 1e6
    return out


def parts(path: Path, n: int, warmup: int) -> dict[str, float]:
    """The p50 (µs) of each part of a check, each timed alone on the same calls."""
    gate = Gate(load_policy(path), mode="enforce")
    stream = calls(n + warmup)
    asserted = [pinned(call) for call in stream]
    views = [gate._view(call, kw) for call, kw in zip(stream, asserted)]
    timer = time.perf_counter_ns

    def p50(fn: Callable[[int], Any]) -> float:
        xs = []
        for i in range(len(stream)):
            t0 = timer(); fn(i); t1 = timer()  # noqa: E702
            if i >= warmup:
                xs.append((t1 - t0) / 1000)
        return statistics.median(xs)

    ref, fast = evaluator(gate.policy), closure(gate.policy)
    h_ref, h_fast, h_add = History(ref), History(fast), History(fast)
    out = {
        "timer alone": p50(lambda i: None),
        "Gate.check, whole (closure)": p50(lambda i: gate.check(stream[i], **asserted[i])),
        "reading the call into a View (`_view`)": p50(lambda i: gate._view(stream[i], asserted[i])),
        "tool-name variant check": p50(lambda i: gate._variants.of(views[i].tool)),
        "evaluate: decide's Evaluator": p50(lambda i: (ref.evaluate(views[i], h_ref), h_ref.add(views[i]))),
        "evaluate: closure evaluator": p50(lambda i: (fast.evaluate(views[i], h_fast), h_fast.add(views[i]))),
    }
    out["window history `add`"] = p50(lambda i: h_add.add(views[i])) if fast.windows else 0.0
    return out


def quantile(sorted_times: list[float], q: float) -> float:
    return sorted_times[min(len(sorted_times) - 1, int(q * len(sorted_times)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks gate")
    ap.add_argument("--n", type=int, default=100_000, help="timed calls per policy")
    ap.add_argument("--warmup", type=int, default=20_000, help="calls before timing (fills the windows)")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    print(f"command: python -m benchmarks gate --n {args.n} --warmup {args.warmup}")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; policies benchmarks/policies/twenty-nowindow.yaml and "
          "twenty.yaml (20 rules)\n")
    print("| policy | Gate.check with | calls | p50 µs | p90 µs | p99 µs | p99.9 µs | mean µs | allow | escalate | deny |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary, bad, breakdown, cpus = [], 0, {}, {}
    for label, path in (("no windows", NOWINDOW), ("2 windows", POLICY)):
        times, decisions, mismatches = measure(path, args.n, args.warmup)
        bad += mismatches
        p = {}
        for name in ("decide", "closure"):
            xs = sorted(times[name])
            p[name] = (quantile(xs, .5), quantile(xs, .99))
            what = "decide's evaluator (before)" if name == "decide" else "the closure evaluator (now)"
            print(f"| {label} | {what} | {len(xs):,} | {quantile(xs, .5):.2f} | {quantile(xs, .9):.2f} | "
                  f"{quantile(xs, .99):.2f} | {quantile(xs, .999):.2f} | {statistics.fmean(xs):.2f} | "
                  f"{decisions['allow']:,} | {decisions['escalate']:,} | {decisions['deny']:,} |")
        summary.append((label, p))
        cpus[label] = cpu(path, args.n, args.warmup)
        breakdown[label] = parts(path, max(args.n // 5, 1000), min(args.warmup, 5000))
    print()
    for label, p in summary:
        print(f"{label}: p50 {p['decide'][0] / p['closure'][0]:.2f}x faster, p99 "
              f"{p['decide'][1] / p['closure'][1]:.2f}x (decide's evaluator / the closure evaluator, same run)")
    print(f"decisions that differ between the two paths: {bad}\n")
    print("CPU per check (process_time over the timed calls, each path on its own):\n")
    print("| policy | decide's evaluator µs | closure evaluator µs | ratio |")
    print("|---|---:|---:|---:|")
    for label, c in cpus.items():
        print(f"| {label} | {c['decide']:.2f} | {c['closure']:.2f} | {c['decide'] / c['closure']:.2f}x |")
    print()
    print("Where the time goes (each part timed alone on the same calls, p50 µs, the timer's cost included):\n")
    print("| part | no windows | 2 windows |")
    print("|---|---:|---:|")
    for part in breakdown["no windows"]:
        print(f"| {part} | {breakdown['no windows'][part]:.2f} | {breakdown['2 windows'][part]:.2f} |")
    print(flush=True)
    for label, p in summary:
        p50_target, p99_target = TARGETS[label]
        ok = p["closure"][0] <= p50_target and (p99_target is None or p["closure"][1] <= p99_target)
        want = f"p50 <= {p50_target:g} µs" + (f" and p99 <= {p99_target:g} µs" if p99_target else "")
        print(f"target ({label}) {want}: {'met' if ok else 'NOT met'}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
