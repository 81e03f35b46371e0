"""LangGraph's tool-approval hook (`interrupt` / `Command(resume=...)`) backed by the gatekit approvals service.

    pip install langgraph && python examples/langgraph_approval.py

The graph: `agent` proposes a tool call (scripted here: put your model node in its place), `gate` decides
it with the policy, `review` pauses the graph with LangGraph's `interrupt` when the policy escalates, and
`tools` runs the call only with the approvals service's signed approval for exactly that call.

The graph holds only the agent's credential: it files and reads its own requests and never votes. The
human votes on the service with their own credential (`gatekit approvals approve REQUEST --server URL`,
the service's web page, or `ApprovalsClient` as `review_as` does here), then the host resumes the graph
(`Command(resume=...)`); the graph believes the service, not what the resume says, so every gatekit rule
holds: registered reviewers with roles from the registry, quorum, no self-approval, timeouts, evidence
binding and single use, all in the service's signed audit chain. The example starts its own service
(`gatekit serve`) in a temporary directory and stops it at the end.

`gate` files the request before `review` interrupts because LangGraph runs an interrupted node again
from its start on resume: the request must not be filed twice.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypedDict

from _service import approvals_service
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from gatekit import Denied, Gate, load_policy
from gatekit.enforce import ApprovalsClient

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


@dataclass
class Deployment:
    """A running approvals service, the agent's credential, and the reviewers' (each kept by its reviewer)."""

    url: str
    policy: Path
    agent: str
    reviewers: dict[str, str]


@contextmanager
def deployment(workdir: Path) -> Iterator[Deployment]:
    """Start a service with the policy; register the agent `ops-bot` and two SREs, `u-erin` and `u-dana` (the
    user the agent works for, who therefore cannot approve its calls)."""
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    with approvals_service(workdir / "approvals-state", policy) as (url, add_principal):
        yield Deployment(url, policy, add_principal("agent", "ops-bot"),
                         {name: add_principal("reviewer", name, "sre") for name in ("u-erin", "u-dana")})


def build(deployed: Deployment) -> tuple[Any, Gate]:
    gate = Gate(load_policy(deployed.policy), mode="enforce", approvals=deployed.url, credential=deployed.agent,
                agent="ops-bot", user="u-dana", timeout=60)
    service = gate.service  # the agent's own client: reads its requests, cannot vote
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
        request = service.get(state["request_id"])  # type: ignore[union-attr, arg-type]
        interrupt({"request_id": request["id"], "tool": request["tool"], "args": request["action"]["args"],
                   "reasons": request["reasons"], "needs": {"approvals": request["approvals"],
                                                            "roles": request["roles"]},
                   "evidence_hash": request["digest"]})
        return {}  # resumed: whatever the resume says, the next edge asks the service

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
    # still pending (more approvals needed, or no vote counted yet): interrupt again for the next reviewer
    graph.add_conditional_edges("review", lambda s: "review" if service.get(s["request_id"])["status"] == "pending"
                                else "tools", ["review", "tools"])  # type: ignore[union-attr]
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=InMemorySaver()), gate


PLAN = [
    {"tool": "deploy", "args": {"service": "api", "env": "staging"}},
    {"tool": "deploy", "args": {"service": "api", "env": "prod"}},
    {"tool": "git.push", "args": {"branch": "main", "force": True}},
]


def review_as(deployed: Deployment, reviewer: str, asked: dict[str, Any], *, approve: bool,
              role: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """The reviewer's side, in the reviewer's own process: vote with their credential on what they were shown
    (its evidence hash). A refused vote (self-approval, a role not held) raises `ServiceError`."""
    client = ApprovalsClient(deployed.url, deployed.reviewers[reviewer])
    return client.vote(asked["request_id"], "approve" if approve else "deny", evidence=asked["evidence_hash"],
                       role=role, reason=reason)


def run(workdir: Path, answer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the plan until LangGraph interrupts for approval, have `answer["reviewer"]` vote (`approve`, and
    optional `role` and `reason`), resume; returns both outputs."""
    with deployment(workdir) as deployed:
        app, _ = build(deployed)
        config = {"configurable": {"thread_id": "demo"}}
        paused = app.invoke({"plan": PLAN, "transcript": []}, config)
        vote = dict(answer)
        review_as(deployed, vote.pop("reviewer"), paused["__interrupt__"][0].value, **vote)
        done = app.invoke(Command(resume="voted"), config)
    return paused, done


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        paused, done = run(Path(tmp), {"reviewer": "u-erin", "role": "sre", "approve": True, "reason": "change CHG-42"})
        print("interrupted for:", paused["__interrupt__"][0].value)
        for line in done["transcript"]:
            print(line)
