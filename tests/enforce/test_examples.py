"""The integration examples in examples/ run, and do what they say."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # dataclasses and TypedDict hints look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_agent_loop(tmp_path: Path) -> None:
    transcript = load("agent_loop").run(tmp_path)
    assert [s for s, _ in transcript] == ["ok", "ok", "denied", "denied", "ok", "ok", "ok", "denied", "denied"]
    assert transcript[1] == ("ok", "paid 250.00 to Globex")  # escalated, approved by the reviewer thread
    assert "[denied]" in transcript[2][1] and "[policy]" in transcript[3][1] and "email-burst" in transcript[7][1]


def test_agent_loop_runs_as_a_script() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "agent_loop.py")], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "paid 250.00 to Globex" in out
    assert [line.split()[0] for line in out.splitlines()].count("denied") == 4


def test_mcp_dispatcher() -> None:
    answers = {a["id"]: a for a in asyncio.run(load("mcp_dispatcher").scripted())}
    assert [t["name"] for t in answers[2]["result"]["tools"]] == ["refund", "sql"]
    assert answers[3]["result"]["isError"] is False  # allowed
    assert answers[4]["result"]["isError"] is False  # escalated, approved by the reviewers
    assert answers[5]["result"]["_meta"]["gatekit"] == {"code": "denied", "decision": "escalate", "rules": ["big-refund"]}
    assert answers[6]["result"]["_meta"]["gatekit"]["code"] == "policy"


def test_mcp_dispatcher_over_stdio() -> None:
    import json

    lines = "\n".join(json.dumps(m) for m in load("mcp_dispatcher").SESSION[2:4]) + "\n"
    out = subprocess.run([sys.executable, str(EXAMPLES / "mcp_dispatcher.py"), "--stdio"], input=lines,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["id"] for a in answers] == [3, 4] and not any(a["result"]["isError"] for a in answers)


def test_langgraph_interrupt_approve(tmp_path: Path) -> None:
    pytest.importorskip("langgraph", reason="the LangGraph example needs `pip install langgraph`")
    example = load("langgraph_approval")
    paused, done = example.run(tmp_path, {"reviewer": "u-erin", "role": "sre", "approve": True})
    asked = paused["__interrupt__"][0].value
    assert asked["tool"] == "deploy" and asked["args"] == {"service": "api", "env": "prod"}
    assert asked["needs"] == {"approvals": 1, "roles": ["sre"]} and asked["evidence_hash"].startswith("sha256:")
    assert paused["transcript"] == ["deployed api to staging"]
    assert done["transcript"][1:] == ["deployed api to prod",
                                      "denied: `git.push` denied by policy `langgraph-example`: No force pushes "
                                      "(rules: no-force-push)"]


def test_langgraph_interrupt_deny_and_self_approval(tmp_path: Path) -> None:
    pytest.importorskip("langgraph", reason="the LangGraph example needs `pip install langgraph`")
    from langgraph.types import Command

    example = load("langgraph_approval")
    (tmp_path / "a").mkdir()
    _, denied = example.run(tmp_path / "a", {"reviewer": "u-erin", "role": "sre", "approve": False, "reason": "freeze"})
    assert denied["transcript"][1].startswith("denied: `deploy` was denied by a reviewer: u-erin (freeze)")

    (tmp_path / "b").mkdir()
    app, gate = example.build(tmp_path / "b")
    config = {"configurable": {"thread_id": "t"}}
    app.invoke({"plan": example.PLAN[1:2], "transcript": []}, config)
    again = app.invoke(Command(resume={"reviewer": "u-dana", "role": "sre", "approve": True}), config)  # the user
    assert "vote refused" in again["transcript"][0] and again["__interrupt__"]  # asked again, not approved
    done = app.invoke(Command(resume={"reviewer": "u-erin", "role": "sre", "approve": True}), config)
    assert done["transcript"][-1] == "deployed api to prod"
