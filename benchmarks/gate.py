"""Latency of `Gate.check` (enforce mode, in-process) for the 20-rule policy, window rules included.

    python -m benchmarks.gate

A realistic stream: the tools, agents and argument mix of benchmarks/synth.py, five calls a second (so
the `email-burst` and `pay-volume` windows hold tens to hundreds of calls per agent), timestamps as a
live agent has them. Each call is timed alone with `perf_counter_ns`, the gate's lock and window
bookkeeping included, garbage collection left on.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks.synth import TOOLS
from gatekit import Gate, load_policy
from gatekit.enforce.gate import PINNED

HERE = Path(__file__).parent
POLICY = HERE / "policies" / "twenty.yaml"
START = datetime(2026, 10, 5, 6, 0, tzinfo=timezone.utc)


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


def measure(n: int, warmup: int) -> tuple[list[float], dict[str, int]]:
    gate = Gate(load_policy(POLICY), mode="enforce")
    stream = calls(n + warmup)
    asserted = [pinned(call) for call in stream]
    for call, kw in zip(stream[:warmup], asserted):
        gate.check(call, **kw)
    timer = time.perf_counter_ns
    check = gate.check
    times: list[float] = []
    decisions = {"allow": 0, "escalate": 0, "deny": 0}
    for call, kw in zip(stream[warmup:], asserted[warmup:]):
        t0 = timer()
        d = check(call, **kw)
        times.append((timer() - t0) / 1000)
        decisions[d.decision] += 1
    return times, decisions


def quantile(sorted_times: list[float], q: float) -> float:
    return sorted_times[min(len(sorted_times) - 1, int(q * len(sorted_times)))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="timed calls")
    ap.add_argument("--warmup", type=int, default=20_000, help="calls before timing (fills the windows)")
    args = ap.parse_args(argv)
    times, decisions = measure(args.n, args.warmup)
    times.sort()
    print(f"command: python -m benchmarks.gate --n {args.n} --warmup {args.warmup}")
    print(f"python {platform.python_version()} on {platform.machine()}, policy {POLICY.relative_to(HERE.parent)}"
          f" (20 rules, 2 windows)\n")
    print("| calls | p50 µs | p90 µs | p99 µs | p99.9 µs | mean µs | allow | escalate | deny |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(times):,} | {quantile(times, .5):.1f} | {quantile(times, .9):.1f} | {quantile(times, .99):.1f} | "
          f"{quantile(times, .999):.1f} | {statistics.fmean(times):.1f} | {decisions['allow']:,} | "
          f"{decisions['escalate']:,} | {decisions['deny']:,} |")
    p50, p99 = quantile(times, .5), quantile(times, .99)
    ok = p50 <= 10 and p99 <= 50
    print(f"\ntarget p50 <= 10 µs and p99 <= 50 µs: {'met' if ok else 'NOT met'}", file=sys.stderr)


if __name__ == "__main__":
    main()
