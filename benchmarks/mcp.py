"""Latency the MCP gateway adds per `tools/call`, against the same client talking to the server directly.

    python -m benchmarks mcp                     # stdio and Streamable HTTP, 2,000 timed calls per contender
    python -m benchmarks mcp --n 5000 --rounds 10 --mode auto

The server is `tests/mcp/toolserver.py` (the SDK's `MCPServer`), the call `echo {"text": "hi"}`, which the
gateway decides with `benchmarks/policies/twenty.yaml` (20 rules, 2 windows; allowed after every rule is
checked) and forwards. Contenders, each its own processes, all started before timing:

- **stdio, direct**: the SDK's `Client` over stdio to the server;
- **stdio, gateway**: the client over stdio to `gatekit mcp proxy`, which holds the server over stdio;
- **stdio, gateway + log**: the same with `--log` (one JSON line written and flushed per call);
- **HTTP, direct**: the client over Streamable HTTP to the server on loopback;
- **HTTP, gateway**: the client over HTTP to `gatekit mcp proxy --listen`, which holds the same server over HTTP
  (`--upstream`);
- **HTTP, gateway, stdio upstream**: the client over HTTP to a listening gateway that holds its own server over
  stdio (against *HTTP, direct*: the HTTP hop is the same, the gateway's upstream hop is stdio);
- **HTTP, gateway, JSON responses** and **HTTP, gateway, stdio upstream, JSON responses**: the same two with
  `--json-response` (one JSON body per request instead of an SSE stream).

With `--baseline DIR` (another checkout, e.g. the commit before a change), its gateway joins the same run as
*stdio, gateway (baseline)*, *HTTP, gateway (baseline)* and *HTTP, gateway, stdio upstream (baseline)*, so a change is measured side by side.

Each call is timed alone (`perf_counter`) in the client. On Linux the table also has the CPU time per call of
the process the client talks to (the gateway; for *stdio, direct*, the server), from `/proc/PID/stat` over the
timed calls: on a loaded machine the latency is partly waiting for a core, the CPU time much less so. Rounds interleave the contenders (each round runs
`n / rounds` calls of every contender in turn), so the machine's load falls on all alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVER = REPO / "tests" / "mcp" / "toolserver.py"
POLICY = HERE / "policies" / "twenty.yaml"


def _children() -> set[int]:
    """This process's child processes (Linux `/proc`; empty elsewhere)."""
    me, out = os.getpid(), set()
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc/self/stat").exists() else ():
        try:
            if int(entry.read_text().rsplit(")", 1)[1].split()[1]) == me:
                out.add(int(entry.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _cpu(pid: int | None) -> float | None:
    """A process's CPU time so far (user + system), in seconds."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


class _Child:
    """A process whose first stdout line is its URL (the HTTP server, the listening gateway)."""

    def __init__(self, cmd: list[str], cwd: Path = REPO) -> None:
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                      text=True, cwd=cwd, start_new_session=True)
        assert self.popen.stdout is not None
        self.url = self.popen.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError(f"{cmd[:4]}... printed no URL: {self.url!r}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)


async def _run(args: argparse.Namespace, log: Path) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    from mcp import Client, StdioServerParameters

    server = [sys.executable, str(SERVER)]
    proxy = [sys.executable, "-m", "gatekit.cli", "mcp", "proxy", "--policy", str(POLICY), "--context", "env=prod"]
    children: list[_Child] = []
    try:
        http_server = _Child([*server, "--http"])
        children.append(http_server)
        http_gateway = _Child([*proxy, "--listen", "127.0.0.1:0", "--upstream", http_server.url])
        children.append(http_gateway)
        http_stdio_gateway = _Child([*proxy, "--listen", "127.0.0.1:0", "--", *server])
        children.append(http_stdio_gateway)
        json_gateway = _Child([*proxy, "--listen", "127.0.0.1:0", "--json-response", "--upstream", http_server.url])
        children.append(json_gateway)
        json_stdio_gateway = _Child([*proxy, "--listen", "127.0.0.1:0", "--json-response", "--", *server])
        children.append(json_stdio_gateway)
        targets: dict[str, Any] = {
            "stdio, direct": StdioServerParameters(command=server[0], args=server[1:]),
            "stdio, gateway": StdioServerParameters(command=proxy[0], args=[*proxy[1:], "--", *server]),
            "stdio, gateway + log": StdioServerParameters(command=proxy[0],
                                                          args=[*proxy[1:], "--log", str(log), "--", *server]),
            "HTTP, direct": http_server.url,
            "HTTP, gateway": http_gateway.url,
            "HTTP, gateway, stdio upstream": http_stdio_gateway.url,
            "HTTP, gateway, JSON responses": json_gateway.url,
            "HTTP, gateway, stdio upstream, JSON responses": json_stdio_gateway.url,
        }
        if args.baseline is not None:  # the same gateway commands, run from the other checkout
            base = Path(args.baseline).resolve()
            targets["stdio, gateway (baseline)"] = StdioServerParameters(
                command=proxy[0], args=[*proxy[1:], "--", *server], cwd=str(base))
            base_http = _Child([*proxy, "--listen", "127.0.0.1:0", "--upstream", http_server.url], cwd=base)
            children.append(base_http)
            targets["HTTP, gateway (baseline)"] = base_http.url
            base_http_stdio = _Child([*proxy, "--listen", "127.0.0.1:0", "--", *server], cwd=base)
            children.append(base_http_stdio)
            targets["HTTP, gateway, stdio upstream (baseline)"] = base_http_stdio.url
        times: dict[str, list[float]] = {name: [] for name in targets}
        # whose CPU each contender measures: the process the client talks to (the HTTP server is also the HTTP
        # gateways' upstream, so its CPU is not one contender's)
        pids: dict[str, int | None] = {"HTTP, direct": None, "HTTP, gateway": http_gateway.popen.pid,
                                       "HTTP, gateway, stdio upstream": http_stdio_gateway.popen.pid,
                                       "HTTP, gateway, JSON responses": json_gateway.popen.pid,
                                       "HTTP, gateway, stdio upstream, JSON responses": json_stdio_gateway.popen.pid}
        if args.baseline is not None:
            pids["HTTP, gateway (baseline)"] = base_http.popen.pid
            pids["HTTP, gateway, stdio upstream (baseline)"] = base_http_stdio.popen.pid
        async with AsyncExitStack() as stack:
            clients = {}
            for name, target in targets.items():
                before = _children()
                clients[name] = await stack.enter_async_context(Client(target, mode=args.mode))
                if name not in pids:
                    started = _children() - before
                    pids[name] = started.pop() if len(started) == 1 else None
            for client in clients.values():
                await client.list_tools()  # as a client does before calling (2026-07-28 checks calls against it)
                for _ in range(args.warmup):
                    await client.call_tool("echo", {"text": "hi"})
            per_round = max(1, args.n // args.rounds)
            timer = time.perf_counter
            cpu0 = {name: _cpu(pid) for name, pid in pids.items()}
            for _ in range(args.rounds):
                for name, client in clients.items():
                    call, out = client.call_tool, times[name]
                    for _ in range(per_round):
                        t0 = timer()
                        result = await call("echo", {"text": "hi"})
                        out.append((timer() - t0) * 1000)
                        if result.is_error:
                            raise RuntimeError(f"{name}: the call failed: {result.content}")
            cpu: dict[str, float | None] = {}
            for name, pid in pids.items():
                start, end = cpu0[name], _cpu(pid)
                cpu[name] = None if start is None or end is None else (end - start) * 1000 / len(times[name])
        return times, cpu
    finally:
        for child in children:
            child.stop()


def main(argv: list[str] | None = None) -> int:
    import anyio

    ap = argparse.ArgumentParser(prog="python -m benchmarks mcp")
    ap.add_argument("--n", type=int, default=2000, help="timed calls per contender")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--warmup", type=int, default=200, help="untimed calls per contender first")
    ap.add_argument("--mode", choices=["legacy", "auto"], default="legacy",
                    help="the client's protocol: legacy (the handshake, 2025-11-25) or auto (2026-07-28)")
    ap.add_argument("--baseline", metavar="DIR", default=None,
                    help="another checkout whose gateway joins the run (its `gatekit` package is imported from DIR)")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("mcp") is None:
        print("the MCP benchmark needs the `mcp` extra: pip install -e '.[mcp]'", file=sys.stderr)
        return 2
    from importlib.metadata import version

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "calls.jsonl"
        times, cpu = anyio.run(_run, args, log)
        # inside the gateway, per call: the handler's time less the upstream's (decide, log, bookkeeping)
        own = sorted(r["latency_ms"] - r["upstream_ms"] for r in map(json.loads, log.read_text().splitlines())
                     if r.get("upstream_ms") is not None)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    baseline = f" --baseline {args.baseline}" if args.baseline else ""
    print(f"command: python -m benchmarks mcp --n {args.n} --rounds {args.rounds} --warmup {args.warmup} "
          f"--mode {args.mode}{baseline}")
    print(f"{os.cpu_count()} cores, load average {load}; python {platform.python_version()}, "
          f"mcp {version('mcp')}; policy {POLICY.relative_to(REPO)}\n")
    print("| path | calls | p50 ms | p90 ms | p99 ms | mean ms | added p50 ms | added p99 ms | CPU ms/call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base: dict[str, tuple[float, float]] = {}
    added_p50: dict[str, float] = {}
    for name, values in times.items():
        values.sort()
        p50, p90, p99 = (_quantile(values, q) for q in (0.5, 0.9, 0.99))
        transport = name.split(",")[0]
        if name.endswith("direct"):
            base[transport] = (p50, p99)
            added = "", ""
        else:
            added_p50[name] = p50 - base[transport][0]
            added = f"{p50 - base[transport][0]:+.2f}", f"{p99 - base[transport][1]:+.2f}"
        print(f"| {name} | {len(values):,} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {statistics.fmean(values):.2f} | "
              f"{added[0]} | {added[1]} | {'' if cpu.get(name) is None else f'{cpu[name]:.2f}'} |")
    pairs = [(n[:-len(" (baseline)")], n) for n in times if n.endswith(" (baseline)")]
    if pairs:
        print("\nthis gateway against the baseline's, same run (this / baseline):\n")
        print("| path | added p50 ms | baseline added p50 ms | ratio | CPU ms/call | baseline CPU ms/call | ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for mine, theirs in pairs:
            a, b = added_p50[mine], added_p50[theirs]
            c, d = cpu.get(mine), cpu.get(theirs)
            ratio = f"{a / b:.2f}" if b > 0 else ""
            cpu_cells = (f"{c:.2f} | {d:.2f} | {c / d:.2f}" if c is not None and d is not None and d > 0
                         else " |  | ")
            print(f"| {mine} | {a:+.2f} | {b:+.2f} | {ratio} | {cpu_cells} |")
    own = own[args.warmup:]
    print(f"\ninside the gateway's tools/call handler, the upstream call excluded (decide, log, bookkeeping; "
          f"from its log, {len(own):,} calls): p50 {_quantile(own, 0.5) * 1000:.0f} µs, "
          f"p99 {_quantile(own, 0.99) * 1000:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
