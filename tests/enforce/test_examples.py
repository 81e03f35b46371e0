"""The integration examples in examples/ run, and do what they say, through a real approvals service.

Each example starts its own `gatekit serve` in a temporary directory; every test also checks that no service
outlives it (a process whose command line names the test's directory).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

from gatekit.enforce import ApprovalsClient, ServiceError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:  # the examples import their shared `_service`, as scripts do
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # dataclasses and TypedDict hints look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def serving(root: Path) -> list[int]:
    """PIDs of live processes whose command line mentions `root` (a service an example left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root) in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test's directory, also the temporary directory of examples (and scripts) run in it; afterwards, no
    process started under it is left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    yield tmp_path
    assert serving(tmp_path) == [], "an example left a process running"


def script(name: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], input=stdin, capture_output=True,
                          text=True, check=True, timeout=120).stdout


def test_agent_loop(workdir: Path) -> None:
    transcript = load("agent_loop").run(workdir)
    assert [s for s, _ in transcript] == ["ok", "ok", "denied", "denied", "ok", "ok", "ok", "denied", "denied"]
    assert transcript[1] == ("ok", "paid 250.00 to Globex")  # escalated, approved by the reviewer (u-bob)
    assert "[denied]" in transcript[2][1] and "u-bob" in transcript[2][1]  # escalated, denied by the reviewer
    assert "[policy]" in transcript[3][1] and "email-burst" in transcript[7][1]
    assert (workdir / "approvals-state").is_dir()  # the approvals lived in the service's state, not the agent's


def test_agent_loop_runs_as_a_script(workdir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(EXAMPLES / "agent_loop.py")], capture_output=True, text=True,
                          check=True, timeout=120, env=env)  # this tree's gatekit
    out = done.stdout
    assert "paid 250.00 to Globex" in out
    assert [line.split()[0] for line in out.splitlines()].count("denied") == 4
    # while a payment waits, the agent says for what, on stderr (the gate logs it; the example shows the log)
    assert "waiting for approval of `payment.send`" in done.stderr and "missing role `finance`" in done.stderr, \
        done.stderr


def test_mcp_dispatcher(workdir: Path) -> None:
    answers = {a["id"]: a for a in asyncio.run(load("mcp_dispatcher").scripted())}
    assert [t["name"] for t in answers[2]["result"]["tools"]] == ["refund", "sql"]
    assert answers[3]["result"]["isError"] is False  # allowed
    assert answers[4]["result"]["isError"] is False  # escalated, approved by the reviewers
    assert answers[5]["result"]["_meta"]["gatekit"] == {"code": "denied", "decision": "escalate", "rules": ["big-refund"]}
    assert answers[6]["result"]["_meta"]["gatekit"]["code"] == "policy"


def test_mcp_dispatcher_over_stdio(workdir: Path) -> None:
    lines = "\n".join(json.dumps(m) for m in load("mcp_dispatcher").SESSION[2:4]) + "\n"
    out = script("mcp_dispatcher", "--stdio", stdin=lines)  # stdout is JSON-RPC only: the service writes none
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["id"] for a in answers] == [3, 4] and not any(a["result"]["isError"] for a in answers)


def test_langgraph_interrupt_approve(workdir: Path) -> None:
    pytest.importorskip("langgraph", reason="the LangGraph example needs `pip install langgraph`")
    example = load("langgraph_approval")
    paused, done = example.run(workdir, {"reviewer": "u-erin", "role": "sre", "approve": True})
    asked = paused["__interrupt__"][0].value
    assert asked["tool"] == "deploy" and asked["args"] == {"service": "api", "env": "prod"}
    assert asked["needs"] == {"approvals": 1, "roles": ["sre"]} and asked["evidence_hash"].startswith("sha256:")
    assert paused["transcript"] == ["deployed api to staging"]
    assert done["transcript"][1:] == ["deployed api to prod",
                                      "denied: `git.push` denied by policy `langgraph-example`: No force pushes "
                                      "(rules: no-force-push)"]


def test_langgraph_interrupt_deny_and_self_approval(workdir: Path) -> None:
    pytest.importorskip("langgraph", reason="the LangGraph example needs `pip install langgraph`")
    from langgraph.types import Command

    example = load("langgraph_approval")
    (workdir / "a").mkdir()
    _, denied = example.run(workdir / "a", {"reviewer": "u-erin", "role": "sre", "approve": False, "reason": "freeze"})
    assert denied["transcript"][1] == "denied: `deploy` was denied by a reviewer: denied by u-erin: freeze"

    (workdir / "b").mkdir()
    with example.deployment(workdir / "b") as deployed:
        app, _ = example.build(deployed)
        config = {"configurable": {"thread_id": "t"}}
        asked = app.invoke({"plan": example.PLAN[1:2], "transcript": []}, config)["__interrupt__"][0].value
        with pytest.raises(ServiceError) as refused:  # u-dana is the user the agent works for
            example.review_as(deployed, "u-dana", asked, approve=True, role="sre")
        assert refused.value.code == "self_approval"
        with pytest.raises(ServiceError) as forbidden:  # and the graph's own credential cannot vote at all
            ApprovalsClient(deployed.url, deployed.agent).vote(asked["request_id"], "approve",
                                                               evidence=asked["evidence_hash"])
        assert forbidden.value.code == "forbidden"
        again = app.invoke(Command(resume="voted"), config)  # a resume is not an approval: asked again
        assert again["__interrupt__"] and again["transcript"] == []
        example.review_as(deployed, "u-erin", asked, approve=True, role="sre")
        done = app.invoke(Command(resume="voted"), config)
        assert done["transcript"][-1] == "deployed api to prod"
