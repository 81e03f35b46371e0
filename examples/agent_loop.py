"""A plain Python agent loop with every tool call gated by gatekit (enforce mode).

    python examples/agent_loop.py

The "model" is a scripted plan of tool calls (swap in your LLM); the tools are ordinary functions wrapped
with `@gate.guard`. A reviewer thread stands in for a human answering through the Python API (in real
life: `gatekit approvals approve REQUEST --reviewer ... --db approvals.db`). Denials go back to the model
as tool errors, as an agent framework would do.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from gatekit import Denied, Gate, parse_policy
from gatekit.enforce import Broker

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


def build(workdir: Path) -> tuple[Gate, Broker, dict[str, Any]]:
    broker = Broker(workdir / "approvals.db", durable=False)
    gate = Gate(parse_policy(POLICY), mode="enforce", broker=broker, agent="billing-bot", user="u-alice",
                context={"env": "prod"}, poll=0.01)

    @gate.guard("payment.send")
    def send_payment(amount: float, recipient: str) -> str:
        return f"paid {amount:.2f} to {recipient}"

    @gate.guard("db.delete")
    def delete_rows(table: str, where: str) -> str:
        return f"deleted from {table} where {where}"

    @gate.guard("email.send")
    def send_email(to: str, body: str) -> str:
        return f"mailed {to}"

    return gate, broker, {"payment.send": send_payment, "db.delete": delete_rows, "email.send": send_email}


def reviewer(broker: Broker, stop: threading.Event) -> None:
    """A finance reviewer: approves payments under 1,000, denies the rest."""
    while not stop.is_set():
        for request in broker.list():
            if request.action["args"].get("amount", 0) < 1000:
                broker.approve(request.id, "u-bob", role="finance", reason="matches the invoice")
            else:
                broker.deny(request.id, "u-bob", role="finance", reason="no invoice on file")
        stop.wait(0.01)


def run(workdir: Path) -> list[tuple[str, str]]:
    """Run the plan; returns the transcript the model would see: ("ok" | "denied", text) per step."""
    gate, broker, tools = build(workdir)
    stop = threading.Event()
    thread = threading.Thread(target=reviewer, args=(broker, stop), daemon=True)
    thread.start()
    transcript = []
    try:
        for tool, args in PLAN:
            try:
                transcript.append(("ok", tools[tool](**args)))
            except Denied as exc:  # a tool error for the model, with the rules that refused it
                transcript.append(("denied", f"{exc} [{exc.code}]"))
    finally:
        stop.set()
        thread.join()
    assert broker.receipts.verify().ok
    return transcript


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for status, text in run(Path(tmp)):
            print(f"{status:7} {text}")
