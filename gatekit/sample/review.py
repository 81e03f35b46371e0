"""The recorded world's own approval process (not gatekit's): which calls it sent for review, who answered and
how fast, and the outcome each call had in the end."""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Any

from gatekit.sample.cast import CRITICAL_IAM, INTERNAL, OVERLOADED, REVIEWERS, RUBBER_STAMP, STYLE
from gatekit.sample.clock import HOUR, MINUTE, after_hours, moment

TIMEOUT = {"standard": 4 * HOUR, "critical": 30 * MINUTE}
SLA = HOUR
# The rules of `required_review` in words, as PLANTED.json states them: kept next to the code they describe so
# that the two change together.
RULES = (
    "payment.send amount > 500: finance (> 10000: critical, finance + security)",
    "payment.refund: finance",
    "db.update, db.delete in prod: sre (db.drop_table in prod: critical, sre + security)",
    "deploy.* in prod: sre",
    "infra.scale in prod to more than twice the replicas: sre",
    "infra.iam.grant: security (admin, owner: critical, security + sre)",
    "data.export outside corp or > 50000 rows: data-protection (> 100000: critical, + security)",
    "email.campaign.send to > 5000 recipients: marketing",
)
DENY_REASONS = ("not on the approved list", "amount does not match the invoice", "no ticket for this",
                "change freeze", "too broad, narrow it down", "ask the owner first")


def required_review(call: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The recorded world's approval rules: which tier a call needed and from which roles."""
    tool, args, prod = call["tool"], call["args"], call["context"].get("env") == "prod"
    if tool == "payment.send":
        amount = args["amount"]
        if amount > 10000:
            return "critical", ("finance", "security")
        return ("standard", ("finance",)) if amount > 500 else (None, ())
    if tool == "payment.refund":
        return "standard", ("finance",)
    if tool == "db.drop_table" and prod:
        return "critical", ("sre", "security")
    if tool in ("db.update", "db.delete") and prod:
        return "standard", ("sre",)
    if tool.startswith("deploy.") and prod:
        return "standard", ("sre",)
    if tool == "infra.scale" and prod and args["to_replicas"] > 2 * args["from_replicas"]:
        return "standard", ("sre",)
    if tool == "infra.iam.grant":
        return ("critical", ("security", "sre")) if args["role"] in CRITICAL_IAM else ("standard", ("security",))
    if tool == "data.export":
        if args["rows"] > 100000:
            return "critical", ("data-protection", "security")
        if not args["destination"].startswith(INTERNAL) or args["rows"] > 50000:
            return "standard", ("data-protection",)
    if tool == "email.campaign.send" and args["recipients"] > 5000:
        return "standard", ("marketing",)
    return None, ()


def promotion_pattern(call: dict[str, Any]) -> bool:
    """Small support-bot refunds: reviewed every time and never denied, the planted promotion candidate."""
    amount = call["args"].get("amount")
    return (call["agent"] == "support-bot" and call["tool"] == "payment.refund"
            and isinstance(amount, float) and amount < 50)


def review(rng: random.Random, start: datetime, call: dict[str, Any]) -> int:
    """Set approvals and outcome as the recorded world had them; return when the agent moved on."""
    ts = call["ts"]
    call["approvals"] = []
    tier, roles = required_review(call)
    call["tier"] = tier
    if call.pop("blocked", False):
        call["outcome"] = "blocked"
        return ts
    if tier is None:
        call["outcome"] = "failed" if rng.random() < 0.012 else "executed"
        return ts
    incident = call.pop("glass", None)
    if incident:
        reviewer = OVERLOADED if call["user"] != OVERLOADED else "u-lena"  # the other on-call engineer
        decided = ts + rng.randint(5_000, 40_000)
        reason = f"{incident} SEV{rng.choice((1, 1, 2))}: {call['args']['service']} down, on-call mitigation"
        call["approvals"] = [{"reviewer": reviewer, "role": "sre", "decision": "approve", "requested_at": ts,
                              "decided_at": decided, "break_glass": True, "reason": reason}]
        call["tags"].append("break_glass")
        call["outcome"] = "executed"
        return decided
    used = {call["user"]}
    for role in roles:
        reviewer = _pick_reviewer(rng, start, role, ts, used)
        used.add(reviewer)
        call["approvals"].append(_approval(rng, start, reviewer, role, call, tier))
    late = any(a["decided_at"] - a["requested_at"] > TIMEOUT[tier] for a in call["approvals"])
    if late:
        call["outcome"] = "timed_out"
        return ts + TIMEOUT[tier]
    if any(a["decision"] == "deny" for a in call["approvals"]):
        call["outcome"] = "denied"
    else:
        call["outcome"] = "failed" if rng.random() < 0.01 else "executed"
    return max(a["decided_at"] for a in call["approvals"])


def _pick_reviewer(rng: random.Random, start: datetime, role: str, ts: int, used: set[str]) -> str:
    if role == "sre" and after_hours(moment(start, ts)) and OVERLOADED not in used and rng.random() < 0.9:
        return OVERLOADED  # on call every night this month
    pool = [(name, w) for name, w in REVIEWERS[role] if name not in used]
    return rng.choices([p[0] for p in pool], weights=[p[1] for p in pool])[0]


def _approval(rng: random.Random, start: datetime, reviewer: str, role: str, call: dict[str, Any],
              tier: str) -> dict[str, Any]:
    """One reviewer's answer to `call`, in that reviewer's style: how long they took and whether they denied."""
    median, sigma, deny_benign, deny_harmful = STYLE[reviewer]
    scale = 1.0
    if after_hours(moment(start, call["ts"])) and reviewer != RUBBER_STAMP:
        scale *= 1.3 if reviewer == OVERLOADED else 1.8
    if tier == "critical" and reviewer != RUBBER_STAMP:
        scale *= 0.22  # paged
    latency = max(1_000, int(rng.lognormvariate(math.log(median * 1000 * scale), sigma)))
    deny = deny_harmful if call.get("harm") else deny_benign
    if promotion_pattern(call):
        deny = 0.0
    approval = {"reviewer": reviewer, "role": role, "decision": "deny" if rng.random() < deny else "approve",
                "requested_at": call["ts"], "decided_at": call["ts"] + latency, "break_glass": False}
    if approval["decision"] == "deny" and rng.random() < 0.7:
        approval["reason"] = rng.choice(DENY_REASONS)
    return approval
