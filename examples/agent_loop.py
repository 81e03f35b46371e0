"""A plain Python agent loop with every tool call gated by gatekit (enforce mode), approvals on the service.

    python examples/agent_loop.py

The "model" is a scripted plan of tool calls (swap in your LLM); the tools are ordinary functions wrapped
with `@gate.guard`. The example starts an approvals service (`gatekit serve`) in a temporary directory,
registers the agent and a finance reviewer, and a reviewer thread stands in for the human answering with
their own credential (in real life: `GATEKIT_TOKEN=... gatekit approvals approve REQUEST --server URL`, or
the service's web page). The agent holds only its agent credential: it can file and read its own requests,
never vote. Denials go back to the model as tool errors, as an agent framework would do.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

from _service import approvals_service, cli, reviewing

from gatekit import Denied, Gate, load_policy

POLICY = """
version: 1
name: agent-loop-example
default: allow
on_error: escalate
tiers:
  standard: {approvals: 1, roles: [finance], timeout: 10s}
rules:
  - id: pay-over-100
    tool: payment.send
    action: escalate
    tier: standard
    when: {args.amount: {gt: 100}}
    reason: Payments over $100 need a finance approval
  - id: no-prod-deletes
    tool: db.delete
    action: deny
    when: {context.env: prod}
    reason: No destructive writes in production
  - id: email-burst
    tool: email.send
    action: deny
    when: {rate: {per: agent, window: 1m, gt: 3}}
    reason: More than 3 e-mails a minute
"""

# What the model decides to do, step by step.
PLAN: list[tuple[str, dict[str, Any]]] = [
    ("payment.send", {"amount": 40.0, "recipient": "ACME"}),
    ("payment.send", {"amount": 250.0, "recipient": "Globex"}),     # escalated: the reviewer approves
    ("payment.send", {"amount": 9000.0, "recipient": "Initech"}),   # escalated: the reviewer denies
    ("db.delete", {"table": "customers", "where": "1=1"}),          # denied by policy
    *[("email.send", {"to": f"c{i}@example.com", "body": "hello"}) for i in range(5)],  # the last 2: burst
]


def build(policy: Path, url: str, credential: str) -> tuple[Gate, dict[str, Callable[..., str]]]:
    """The agent's side: a gate on the service with the agent's credential, and the guarded tools."""
    gate = Gate(load_policy(policy), mode="enforce", approvals=url, credential=credential, agent="billing-bot",
                user="u-alice", context={"env": "prod"})

    @gate.guard("payment.send")
    def send_payment(amount: float, recipient: str) -> str:
        return f"paid {amount:.2f} to {recipient}"

    @gate.guard("db.delete")
    def delete_rows(table: str, where: str) -> str:
        return f"deleted from {table} where {where}"

    @gate.guard("email.send")
    def send_email(to: str, body: str) -> str:
        return f"mailed {to}"

    return gate, {"payment.send": send_payment, "db.delete": delete_rows, "email.send": send_email}


def finance_review(request: dict[str, Any]) -> tuple[str, str]:
    """What the finance reviewer decides, having seen the call: approves payments under 1,000, denies the rest."""
    if request["action"]["args"].get("amount", 0) < 1000:
        return "approve", "matches the invoice"
    return "deny", "no invoice on file"


def run(workdir: Path) -> list[tuple[str, str]]:
    """Run the plan; returns the transcript the model would see: ("ok" | "denied", text) per step."""
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    state = workdir / "approvals-state"
    transcript = []
    with approvals_service(state, policy) as (url, add_principal):
        agent = add_principal("agent", "billing-bot")
        bob = add_principal("reviewer", "u-bob", "finance")
        _, tools = build(policy, url, agent)
        with reviewing(url, bob, finance_review):
            for tool, args in PLAN:
                try:
                    transcript.append(("ok", tools[tool](**args)))
                except Denied as exc:  # a tool error for the model, with the rules that refused it
                    transcript.append(("denied", f"{exc} [{exc.code}]"))
        cli("audit", "verify", "--state", str(state))  # exit 1 (an error here) if the signed audit was tampered with
    return transcript


if __name__ == "__main__":
    # a waiting call says what it waits for (which approvals and roles, for how long) on the gatekit.enforce
    # logger, at INFO: here on stderr
    logging.basicConfig(level=logging.INFO, format="  %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        for status, text in run(Path(tmp)):
            print(f"{status:7} {text}")
