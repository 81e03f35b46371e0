"""Every command, asked wrongly, says what is wrong in one `error:` line and exits non-zero: no traceback.

The commands are enumerated from the click group, so a new command without bad invocations here fails
`test_every_command_has_bad_invocations`. They run through the real `gatekit.cli:main`, in-process (as
`tests/conftest.py`'s `gatekit_cli` does) and, for the headline case, in a subprocess.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import click
import pytest

from gatekit import Gate, cli, load_policy
from gatekit.enforce import Broker

POLICY = """\
version: 1
name: pay
tiers:
  standard: {approvals: 1, timeout: 4h}
rules:
  - id: big-payment
    tool: payment.send
    action: escalate
    tier: standard
    when: {args.amount: {gt: 100}}
"""
BAD_POLICY = "version: 1\nname: broken\ncolour: blue\nrules: []\n"
LOG = [{"action_id": f"a-{i}", "ts": f"2026-11-02T10:0{i}:00Z", "tool": "payment.send", "agent": "bot",
        "user": "u-ann", "args": {"amount": 50 * i}} for i in range(1, 6)]


def leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every runnable command under `group`, subcommands of subgroups included (and a group that
    runs by itself, as `gatekit runs` does)."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            if command.invoke_without_command:
                yield (*prefix, name)
            yield from leaves(command, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = [" ".join(path) for path in leaves(cli.cli)]


def bad_invocations(w: dict[str, str]) -> dict[str, list[list[str]]]:
    """For each command, invocations a user gets wrong; `w` names the files of the `world` fixture."""
    policy, store, broker, rid, state = w["policy"], w["store"], w["broker"], w["request"], w["state"]
    nowhere = w["nowhere"]  # a directory that does not exist
    return {
        "validate": [[w["bad"]], [f"{nowhere}/p.yaml"], ["--catalog", f"{nowhere}/c.yaml", policy],
                     ["--catalog", w["bad_catalog"], policy], ["--catalog", policy, policy]],
        "catalog": [["--db", w["fresh"]], [], ["--db", store, "--run", "nope"], ["--db", store, "--policy", w["bad"]],
                    ["--db", store, "--policy", policy, "--run", "first"], ["--db", store, "--out", f"{nowhere}/c.yaml"],
                    ["--db", store, "--out", w["bad_catalog"]], ["--db", store, "--policy", f"{nowhere}/p.yaml"]],
        "test": [[policy, f"{nowhere}/cases.yaml"], [w["bad"]], [policy], [policy, w["bad"]],
                 [policy, w["log"]], []],
        "check": [["--db", w["fresh"], "--policy", policy, "--max-escalation-rate", "0.1"],
                  ["--db", store, "--policy", policy], ["--db", store, "--policy", policy, "--max-bother", "2"],
                  ["--db", store, "--policy", policy, "--against", "first"],
                  ["--db", store, "--policy", policy, "--max-changed", "0.1"],
                  ["--db", store, "--policy", policy, "--against", "nope", "--max-changed", "0.1"],
                  ["--db", store, "--policy", policy, "--min-catch", "0.5"],
                  ["--db", store, "--policy", policy, "--max-escalation-rate", "many"],
                  ["--db", store, "--policy", w["bad"], "--max-escalation-rate", "0.1"], ["--db", store]],
        "schema": [["--out", f"{nowhere}/schema.json"], ["--out", f"{policy}/schema.json"]],
        "decide": [["--policy", policy, "not json"], ["--policy", policy, "[1]"], ["--policy", w["bad"], "{}"],
                   ["{}"], ["--policy", policy, "--exit-code", "not json"], ["--policy", policy, "--exit-code=yes", "{}"]],
        "ingest": [[f"{nowhere}/log.jsonl", "--db", w["fresh"]], [w["log"], "--db", w["fresh"], "--format", "nope"],
                   [w["log"], "--db", w["fresh"], "--mapping", f"{nowhere}/map.yaml"], [w["log"]],
                   [w["empty"], "--db", w["fresh"]]],
        "quarantine": [["--db", w["fresh"]], ["--db", store, "--limit", "-1"], ["--db", store, "--limit", "many"],
                       []],
        "replay": [["--db", w["fresh"], "--policy", policy], ["--db", store, "--policy", policy, "--out", "x.csv"],
                   ["--db", store, "--policy", policy, "--name", "bad name"], ["--db", store, "--policy", w["bad"]],
                   ["--db", store], ["--policy", policy],
                   ["--engine", "spark", "--policy", policy, "--out", "decisions"],
                   ["--engine", "spark", "--policy", policy, "--input", f"{nowhere}/log.jsonl", "--out", "decisions"],
                   ["--engine", "spark", "--policy", policy, "--input", w["log"]],
                   ["--engine", "spark", "--policy", policy, "--input", w["log"], "--out", policy],
                   ["--engine", "spark", "--policy", policy, "--input", w["log"], "--out", "d", "--db", store],
                   ["--engine", "spark", "--policy", policy, "--input", w["log"], "--out", "d",
                    "--spark-master", "local[1]", "--spark-remote", "sc://localhost"],
                   ["--engine", "spark", "--policy", w["bad"], "--input", w["log"], "--out", "d"],
                   ["--engine", "flink", "--policy", policy, "--input", w["log"], "--out", "d"],
                   ["--db", store, "--policy", policy, "--input", w["log"]],
                   ["--policy", policy, "--input", w["log"], "--out", "d"],
                   ["--policy", policy, "--input", f"{nowhere}/a.parquet", "--out", "d"],
                   ["--policy", policy, "--input", w["log"], "--out", "d", "--name", "x"],
                   ["--policy", policy, "--input", w["log"], "--out", "d", "--replace"],
                   ["--db", store, "--policy", policy, "--memory-limit", "lots"],
                   ["--db", store, "--policy", policy, "--memory-limit", "-4GB"],
                   ["--engine", "spark", "--policy", policy, "--input", w["log"], "--out", "d",
                    "--memory-limit", "1GB"]],
        "runs": [["--db", w["fresh"]], [], ["--db", store, "nope"]],
        "runs delete": [["first"], ["nope", "--db", store], ["first", "--db", w["fresh"]], ["--db", store]],
        "report": [["--db", store, "--run", "nope"],
                   ["--db", store, "--run", "first", "--sweep", "nope", "args.amount"],
                   ["--db", store, "--run", "first", "--html", f"{nowhere}/r.html"], ["--db", w["fresh"], "--run", "x"],
                   ["--db", store, "--run", "first", "--against", "nope"],
                   ["--db", w["two_runs"]], ["--run", "first"], ["--db", store, "--run", "first", "--input", w["log"]],
                   ["--db", store, "--run", "first", "--policy", policy],
                   ["--db", store, "--run", "first", "--spark-master", "local[1]"],
                   ["--engine", "spark", "--policy", policy], ["--engine", "spark", "--input", w["log"]],
                   ["--engine", "spark", "--input", f"{nowhere}/log.jsonl", "--policy", policy],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--db", store],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--run", "first"],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--sweep", "big-payment",
                    "args.amount"],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--against", "first"],
                   ["--engine", "spark", "--input", w["log"], "--policy", w["bad"]],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--against", w["bad"]],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--decisions", f"{nowhere}/d"],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--spark-master", "local[1]",
                    "--spark-remote", "sc://localhost"],
                   ["--engine", "flink", "--input", w["log"], "--policy", policy],
                   ["--db", store, "--run", "first", "--memory-limit", "4 gallons"],
                   ["--engine", "spark", "--input", w["log"], "--policy", policy, "--memory-limit", "1GB"]],
        "diff": [["--db", store, "--run", "first"], ["--db", store, "--run", "first", "--run", "first",
                                                     "--examples", "-1"],
                 ["--db", store, "--run", "first", "--run", "nope"], ["--db", w["fresh"], "--policy", policy,
                                                                     "--policy", policy],
                 ["--db", store, "--policy", policy, "--run", "first"],
                 ["--db", store, "--run", "first", "--run", "first", "--keep"]],
        "evaluate": [["--db", store, "--run", "first", "--sweep", "nope", "args.amount"],
                     ["--db", store, "--run", "first", "--sweep", "big-payment", "args.nope"],
                     ["--db", store, "--run", "nope"], ["--db", store, "--run", "first", "--sweep", "big-payment"],
                     ["--db", w["two_runs"]], ["--db", w["no_runs"]]],
        "tune": [["--db", store, "--policy", policy], ["--db", store, "--policy", policy, "--out", f"{nowhere}/t.yaml"],
                 ["--db", store, "--policy", policy, "--out", "t.yaml", "--max-bother", "2"],
                 ["--db", store, "--policy", policy, "--out", "t.yaml", "--holdout", "agent"],
                 ["--db", store, "--policy", policy, "--out", "t.yaml", "--holdout", "model=x"],
                 ["--db", store, "--policy", w["bad"], "--out", "t.yaml"],
                 ["--db", store, "--policy", policy, "--out", "t.yaml", "--catalog", f"{nowhere}/c.yaml"],
                 ["--db", store, "--policy", policy, "--out", "t.yaml", "--catalog", w["bad"]],
                 ["--db", w["fresh"], "--policy", policy, "--out", "t.yaml"]],
        "sample": [["--out", w["samples"], "--n", "5"], ["--out", w["samples"], "--n", "-1"],
                   ["--out", w["samples"], "--n", "many"], ["--out", f"{policy}/samples", "--n", "1000"], []],
        "demo": [["--db", w["fresh"], "--logs", nowhere], ["--db", w["fresh"], "--policy", f"{nowhere}/p.yaml"],
                 ["--db", w["fresh"], "--policy", w["bad"]]],
        "dashboard": [["--db", store, "--port", "0"], ["--port", "8501"], ["--db", store, "--port", "http"]],
        "serve": [["--state", state, "--policy", policy, "--approval-ttl", "nope"],
                  ["--state", state, "--policy", f"{nowhere}/p.yaml", "--port", "0"],
                  ["--state", state, "--policy", policy, "--tls-cert", policy], ["--policy", policy]],
        "principals add": [["reviewer", "alice", "--state", nowhere], ["boss", "alice", "--state", state],
                           ["reviewer", "--state", state]],
        "principals list": [["--state", nowhere], []],
        "approvals list": [[], ["--broker", broker, "--server", "http://127.0.0.1:1"], ["--broker", broker,
                                                                                        "--status", "nope"],
                           ["--broker", f"{nowhere}/b.db"]],
        "approvals show": [[rid, "--broker", f"{nowhere}/b.db"], ["nope", "--broker", broker], ["--broker", broker]],
        "approvals approve": [[rid, "--broker", broker], [rid, "--broker", broker, "--reviewer", "u-ann"],
                              [rid, "--broker", broker, "--reviewer", "sam", "--break-glass", "--reason", "x",
                               "--for", "soon"], ["nope", "--broker", broker, "--reviewer", "sam"]],
        "approvals deny": [["nope", "--broker", broker, "--reviewer", "sam"], [rid, "--broker", broker]],
        "audit verify": [[], ["--broker", broker, "--expect", "3"], ["--broker", f"{nowhere}/b.db"],
                         ["--state", nowhere], ["--broker", broker, "--state", state]],
        "audit export": [["--out", "x.jsonl"], ["--broker", broker, "--out", f"{nowhere}/x.jsonl"],
                         ["--broker", broker]],
        "mcp proxy": [["--policy", policy], ["--policy", policy, "--listen", "nope", "--", "true"],
                      ["--policy", f"{nowhere}/p.yaml", "--", "true"],
                      ["--policy", policy, "--approvals", "http://127.0.0.1:1", "--broker", broker, "--", "true"],
                      ["--policy", policy, "--json-response", "--", "true"]],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store with run `first`, a broker with one pending request, a good and a bad policy."""
    from gatekit.logs import ingest
    from gatekit.logs.store import Store
    from gatekit.replay import replay

    root = tmp_path_factory.mktemp("world")
    (root / "policy.yaml").write_text(POLICY)
    (root / "bad.yaml").write_text(BAD_POLICY)
    (root / "bad-catalog.yaml").write_text("catalog: 1\ntools:\n  payment.send:\n    tags: {impact: huge}\n")
    (root / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in LOG))
    policy = load_policy(root / "policy.yaml")
    with Store(root / "store.duckdb") as store:
        ingest(store, [root / "log.jsonl"])
        replay(store, policy, "first")
    with Store(root / "two-runs.duckdb") as store:  # where `--run` cannot default to the only run
        ingest(store, [root / "log.jsonl"])
        replay(store, policy, "first")
        replay(store, policy, "second")
    with Store(root / "no-runs.duckdb") as store:
        ingest(store, [root / "log.jsonl"])
    pending = Gate(policy, broker=Broker(root / "broker.db", durable=False), agent="bot", user="u-ann").submit(
        {"tool": "payment.send", "args": {"amount": 500}})
    (root / "state").mkdir()
    (root / "empty").mkdir()
    return {"empty": str(root / "empty"), "policy": str(root / "policy.yaml"), "bad": str(root / "bad.yaml"),
            "bad_catalog": str(root / "bad-catalog.yaml"),
            "log": str(root / "log.jsonl"), "store": str(root / "store.duckdb"), "two_runs": str(root / "two-runs.duckdb"),
            "no_runs": str(root / "no-runs.duckdb"), "broker": str(root / "broker.db"), "request": pending.request_id,
            "state": str(root / "state"), "fresh": str(root / "fresh.duckdb"), "samples": str(root / "samples"),
            "nowhere": str(root / "no" / "such" / "dir")}


def test_every_command_has_bad_invocations(world) -> None:
    cases = bad_invocations(world)
    assert set(COMMANDS) - set(cases) == set(), "add bad invocations of the new command(s) to this file"
    assert set(cases) - set(COMMANDS) == set(), "a command listed here is gone"
    assert len(COMMANDS) >= 22  # the enumeration reaches the subcommands of approvals, audit, principals, mcp


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_invocations_say_error_in_one_line_and_exit_non_zero(command: str, world, gatekit_cli,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("GATEKIT_TOKEN", "GATEKIT_BROKER", "GATEKIT_SERVER", "GATEKIT_STORE"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.chdir(Path(world["store"]).parent)
    for args in bad_invocations(world)[command]:
        argv = [*command.split(), *args]
        code, out, err = gatekit_cli(*argv)  # an exception other than SystemExit fails the test here
        shown = f"gatekit {' '.join(argv)}\nexit {code}\nstdout:\n{out}\nstderr:\n{err}"
        assert code != 0, shown
        assert "Traceback" not in out + err, shown
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, shown
        message = errors[0].removeprefix("error: ")
        assert message and message[0] == message[0].lower() and not message.endswith("."), shown
        assert not Path(world["fresh"]).exists(), f"a failed command left an empty store behind\n{shown}"


def test_a_bad_sweep_is_a_usage_error_in_a_subprocess(world) -> None:
    """The issue's example, run as the installed entry point runs it."""
    done = subprocess.run([sys.executable, "-c", "from gatekit.cli import main; main()", "evaluate", "--db",
                           world["store"], "--run", "first", "--sweep", "nope", "args.amount"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == cli.EXIT_USAGE == 2
    assert done.stderr == "error: no rule `nope` in policy `pay`\n" and done.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_json_and_quiet(command: str, gatekit_cli) -> None:
    target: click.Command = cli.cli
    for part in command.split():
        target = target.commands[part]  # type: ignore[attr-defined]
    names = {opt for p in target.params for opt in p.opts}
    assert {"--json", "--quiet"} <= names, f"`gatekit {command}` lacks --json or --quiet"
    code, out, err = gatekit_cli(*command.split(), "--json", "--quiet", "--help")
    assert code == 0 and "--json" in out and "--quiet" in out, err


def test_exit_codes_are_decided_only_in_main() -> None:
    """No command calls sys.exit, ctx.exit or raises SystemExit: `gatekit.cli.main` maps errors and results."""
    package = Path(cli.__file__).parent
    modules = [package / "cli.py", package / "options.py", package / "dashboard.py",
               *(package / sub / "commands.py" for sub in ("enforce", "server", "mcp"))]
    for path in modules:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and path.name == "cli.py" and node.name == "main":
                continue
            for inner in ast.walk(node) if isinstance(node, ast.FunctionDef) else ():
                if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "exit":
                    raise AssertionError(f"{path.name}:{inner.lineno}: `{ast.unparse(inner)}` outside main()")
                if isinstance(inner, ast.Raise) and inner.exc is not None and "SystemExit" in ast.unparse(inner.exc):
                    raise AssertionError(f"{path.name}:{inner.lineno}: SystemExit outside main()")


def test_failed_results_and_errors_map_to_the_documented_codes(world, gatekit_cli) -> None:
    """README: 1 a check failed (tampered audit chain, failing policy test, broken gate), 2 usage, 3 invalid policy, 4 store problem, 5 unreadable log file,
    6 approval refused."""
    assert gatekit_cli("validate", world["bad"])[0] == 3
    assert gatekit_cli("validate", world["policy"])[0] == 0
    assert gatekit_cli("report", "--db", world["store"], "--run", "nope")[0] == 4
    assert gatekit_cli("decide", "--policy", world["policy"], "not json")[0] == 5
    assert gatekit_cli("approvals", "approve", world["request"], "--broker", world["broker"],
                       "--reviewer", "u-ann")[0] == 6
    assert gatekit_cli("evaluate", "--db", world["store"], "--run", "first", "--sweep", "x", "args.amount")[0] == 2
    assert gatekit_cli("runs", "--db", world["store"], "--help")[0] == 0
    # 1 also when what was checked fails: a policy test, a CI gate
    (Path(world["store"]).parent / "cases.yaml").write_text("- {tool: payment.send, args: {amount: 500}, expect: allow}\n")
    assert gatekit_cli("test", world["policy"], Path(world["store"]).parent / "cases.yaml")[0] == 1
    assert gatekit_cli("check", "--db", world["store"], "--policy", world["policy"],
                       "--max-escalation-rate", "0.1")[0] == 1
    assert gatekit_cli("check", "--db", world["store"], "--policy", world["policy"],
                       "--max-escalation-rate", "0.9")[0] == 0
