"""LangGraph's tool-approval hook (`interrupt` / `Command(resume=...)`) backed by the gatekit broker.

    pip install langgraph && python examples/langgraph_approval.py

The graph: `agent` proposes a tool call (scripted here: put your model node in its place), `gate` decides
it with the policy, `review` pauses the graph with LangGraph's `interrupt` when the policy escalates, and
`tools` runs the call only if the broker released it. The human's answer (`Command(resume={...})`) is
cast as a vote in the broker, so every gatekit rule still holds: quorum, roles, no self-approval,
timeouts, evidence binding and single use; and it is in the audit chain.

`gate` files the request before `review` interrupts because LangGraph runs an interrupted node again
from its start on resume: the request must not be filed twice.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from gatekit import Denied, Gate, parse_policy
from gatekit.enforce import Broker, Refused

POLICY = """
version: 1
name: langgraph-example
default: allow
tiers:
  ops: {approvals: 1, roles: [sre], timeout: 1h}
rules:
  - {id: prod-deploy, tool: deploy, action: escalate, tier: ops, when: {args.env: prod}, reason: Production deploys need an SRE}
  - {id: no-force-push, tool: git.push, action: deny, when: {args.force: true}, reason: No force pushes}
"""


class State(TypedDict, total=False):
    plan: list[dict[str, Any]]  # the calls the (scripted) model will make
    call: dict[str, Any] | None
    request_id: str | None
    transcript: list[str]


def build(workdir: Path) -> tuple[Any, Gate]:
    broker = Broker(workdir / "approvals.db", durable=False)
    gate = Gate(parse_policy(POLICY), mode="enforce", broker=broker, agent="ops-bot", user="u-dana")
    tools = {"deploy": lambda a: f"deployed {a.args['service']} to {a.args['env']}",
             "git.push": lambda a: f"pushed {a.args['branch']}"}

    def agent(state: State) -> State:
        plan = list(state.get("plan", []))
        return {"call": plan.pop(0) if plan else None, "plan": plan, "request_id": None}

    def gate_node(state: State) -> State:
        try:
            pending = gate.submit(state["call"])  # type: ignore[arg-type]
        except Denied as exc:
            return {"call": None, "transcript": state.get("transcript", []) + [f"denied: {exc}"]}
        if pending.request is None:  # allowed: run now
            return {"call": None, "transcript": state.get("transcript", []) + [pending.run(tools[pending.action.tool])]}
        return {"request_id": pending.request_id}

    def review(state: State) -> State:
        request = broker.get(state["request_id"])  # type: ignore[arg-type]
        answer = interrupt({"request_id": request.id, "tool": request.tool, "args": request.action["args"],
                            "reasons": list(request.reasons), "needs": {"approvals": request.approvals,
                                                                        "roles": list(request.roles)},
                            "evidence_hash": request.evidence_hash})
        reviewer, role = answer["reviewer"], answer.get("role")
        try:
            if answer.get("approve"):
                broker.approve(request.id, reviewer, role=role, reason=answer.get("reason"))
            else:
                broker.deny(request.id, reviewer, role=role, reason=answer.get("reason"))
        except Refused as exc:  # a refused vote (self-approval, wrong role...): ask again
            return {"transcript": state.get("transcript", []) + [f"vote refused: {exc}"]}
        return {}

    def run_tool(state: State) -> State:
        pending = gate.resume(state["request_id"])  # type: ignore[arg-type]
        try:
            text = pending.run(tools[pending.action.tool])
        except Denied as exc:
            text = f"denied: {exc}"
        return {"call": None, "request_id": None, "transcript": state.get("transcript", []) + [text]}

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_node("gate", gate_node)
    graph.add_node("review", review)
    graph.add_node("tools", run_tool)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "gate" if s.get("call") else END, ["gate", END])
    graph.add_conditional_edges("gate", lambda s: "review" if s.get("request_id") else "agent", ["review", "agent"])
    # still pending (more approvals needed, or a vote was refused): interrupt again for the next reviewer
    graph.add_conditional_edges("review", lambda s: "review" if broker.get(s["request_id"]).status == "pending"
                                else "tools", ["review", "tools"])
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=InMemorySaver()), gate


PLAN = [
    {"tool": "deploy", "args": {"service": "api", "env": "staging"}},
    {"tool": "deploy", "args": {"service": "api", "env": "prod"}},
    {"tool": "git.push", "args": {"branch": "main", "force": True}},
]


def run(workdir: Path, answer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the plan until LangGraph interrupts for approval, resume with `answer`; returns both outputs."""
    app, _ = build(workdir)
    config = {"configurable": {"thread_id": "demo"}}
    paused = app.invoke({"plan": PLAN, "transcript": []}, config)
    done = app.invoke(Command(resume=answer), config)
    return paused, done


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        paused, done = run(Path(tmp), {"reviewer": "u-erin", "role": "sre", "approve": True, "reason": "change CHG-42"})
        print("interrupted for:", paused["__interrupt__"][0].value)
        for line in done["transcript"]:
            print(line)
