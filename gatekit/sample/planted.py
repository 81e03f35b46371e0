"""What PLANTED.json lists: the planted sessions (e-mail bursts, split payments, prompt injections, break-glass
incidents) and the findings planted afterwards on ordinary calls (drift, self-approvals, reused approvals...).

A finding lands only on a call that carries no other, no harm and no planted session, so that the manifest can
say exactly which ids show what.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from gatekit.sample.cast import AGENTS, FIRST, NEW_PAYEES, REVIEWERS, SERVICES, VENDORS
from gatekit.sample.clock import HOUR
from gatekit.sample.recording import Recording
from gatekit.sample.review import promotion_pattern
from gatekit.sample.steps import address, db_query, step


def plant_sessions(rec: Recording) -> None:
    """Record the planted sessions, as many as the size of the sample calls for."""
    n = rec.n
    for _ in range(max(2, n // 4000)):
        _email_burst(rec)
    for _ in range(max(2, n // 6000)):
        _split_payments(rec)
    for _ in range(max(3, n // 500)):
        _injected_payment(rec)
    for _ in range(max(3, n // 500)):
        _injected_refund(rec)
    for _ in range(max(2, n // 4000)):
        _incident(rec)


def _email_burst(rec: Recording) -> None:
    """growth-bot loops on a template: more than 20 e-mails in under 10 minutes."""
    rng = rec.rng
    count = rng.randint(24, 45)
    steps = [step("email.send", {"to": address(rng), "recipients": 1, "template": "trial_reminder"},
                  harm="email_burst") for _ in range(count)]
    for i, planned in enumerate(steps):
        if i >= 30:  # the recorded world's own rate limiter stopped the tail of a burst
            planned["blocked"] = True
    at = rec.when_at(tuple(range(9, 17)), (0, 1, 2, 3, 4))
    calls = rec.session("growth-bot", at, steps, gap=6)
    for call in calls:
        call["tags"].append("email_burst")
    rec.episodes["email_bursts"].append({"agent": "growth-bot", "calls": calls})


def _split_payments(rec: Recording) -> None:
    """procure-bot pays a new payee in slices just under $100: only a sum window sees it."""
    rng = rec.rng
    payee = f"acct:{rng.choice(NEW_PAYEES)}"
    steps = [step("crm.lookup", {"customer_id": "v-" + payee[5:]})]
    for _ in range(rng.randint(6, 10)):
        steps.append(step("payment.send", {"amount": round(rng.uniform(88, 99.9), 2), "currency": "USD",
                                           "recipient": payee, "memo": "consulting retainer"},
                          harm="split_payment"))
    first_day = min(AGENTS["procure-bot"][3], rec.days // 2)
    at = rec.when_at(tuple(range(9, 18)), (0, 1, 2, 3, 4), first_day=first_day)
    calls = rec.session("procure-bot", at, steps, gap=150)
    rec.episodes["split_payments"].append({"agent": "procure-bot", "recipient": payee,
                                           "calls": [c for c in calls if c["tool"] == "payment.send"]})


def _injected_payment(rec: Recording) -> None:
    """billing-bot reads a vendor ticket carrying an injected instruction and pays a new payee."""
    rng = rec.rng
    payee = f"acct:{rng.choice(NEW_PAYEES)}"
    ticket = f"T-{rng.randint(10000, 99999)}"
    amount = round(min(rng.lognormvariate(math.log(4500), 0.8), 48000), 2)
    steps = [step("tickets.read", {"ticket_id": ticket}),
             step("crm.lookup", {"customer_id": f"v-{rng.choice(VENDORS)}"}),
             step("payment.send", {"amount": amount, "currency": rng.choice(("USD", "USD", "EUR")),
                                   "recipient": payee, "memo": "updated bank details - urgent"},
                  harm="prompt_injection"),
             step("email.send", {"to": f"finance@{payee[5:]}.example", "recipients": 1,
                                 "template": "remittance_advice"}, harm="prompt_injection")]
    _injection(rec, rec.session("billing-bot", rec.when("billing-bot"), steps))


def _injected_refund(rec: Recording) -> None:
    """support-bot follows instructions hidden in a ticket: refunds an order and mails customer data out."""
    rng = rec.rng
    ticket = f"T-{rng.randint(10000, 99999)}"
    steps = [step("tickets.read", {"ticket_id": ticket}),
             step("crm.lookup", {"customer_id": f"c-{rng.randint(10000, 99999)}"}),
             step("payment.refund", {"amount": round(rng.uniform(150, 900), 2), "currency": "USD",
                                     "order_id": f"O-{rng.randint(100000, 999999)}", "reason": "goodwill"},
                  harm="prompt_injection"),
             step("email.send", {"to": f"{rng.choice(FIRST)}.{rng.randint(100, 999)}@proton.example",
                                 "recipients": 1, "template": "account_export"}, harm="prompt_injection")]
    _injection(rec, rec.session("support-bot", rec.when("support-bot"), steps))


def _injection(rec: Recording, calls: list[dict[str, Any]]) -> None:
    if len(calls) > 2:  # a session cut short by the end of the period carried out nothing
        rec.episodes["injections"].append({"source": calls[0], "calls": calls[2:]})


def _incident(rec: Recording) -> None:
    """ops-bot mitigates a night-time incident through break-glass approvals."""
    rng = rec.rng
    service = rng.choice(SERVICES)
    incident = f"INC-{rng.randint(1000, 9999)}"
    steps = [step("tickets.read", {"ticket_id": incident}, trigger="incident"),
             step("kb.search", {"query": f"{service} runbook"}, trigger="incident"),
             db_query(rng, "app", env="prod"),
             step("deploy.rollback", {"service": service, "to_version": "previous"}, env="prod",
                  trigger="incident", glass=incident)]
    if rng.random() < 0.6:
        before = rng.randint(3, 8)
        steps.append(step("infra.scale", {"service": service, "from_replicas": before,
                                          "to_replicas": before * 3}, env="prod", trigger="incident",
                          glass=incident))
    at = rec.when_at((0, 1, 2, 3, 4, 22, 23), tuple(range(7)))
    calls = rec.session("ops-bot", at, steps, user=rng.choice(("u-lena", "u-raj", "u-omar")), gap=60)
    rec.episodes["incidents"].append({"incident": incident, "calls": calls})


def plant_findings(rec: Recording) -> None:
    """Alter ordinary calls after the fact, one finding each, and tag them for the manifest."""
    rng = rec.rng

    def free(call: dict[str, Any]) -> bool:
        return not call["tags"] and not call.get("harm") and not promotion_pattern(call)

    def single_approved(call: dict[str, Any]) -> bool:
        return (call["outcome"] == "executed" and len(call["approvals"]) == 1
                and call["approvals"][0]["decision"] == "approve" and free(call))

    def pick(candidates: list[dict[str, Any]], k: int, tag: str) -> list[dict[str, Any]]:
        chosen = rng.sample(candidates, min(k, len(candidates)))
        for call in chosen:
            call["tags"].append(tag)
        return chosen

    scale = max(1, rec.n // 5000)
    drift_tools = ("payment.send", "data.export", "deploy.service", "db.update", "infra.scale")
    for call in pick([c for c in rec.calls if c["tool"] in drift_tools and c["approvals"]
                      and c["outcome"] == "executed" and free(c)
                      and all(a["decision"] == "approve" for a in c["approvals"])], 2 * scale, "drift"):
        call["executed_args"] = _drifted(rng, call["tool"], call["args"])
    for call in pick([c for c in rec.calls if single_approved(c)
                      and c["user"] in [n for n, _ in REVIEWERS[c["approvals"][0]["role"]]]],
                     scale, "self_approval_user"):
        call["approvals"][0]["reviewer"] = call["user"]
    for call in pick([c for c in rec.calls if single_approved(c)], max(1, scale // 2), "self_approval_agent"):
        call["approvals"][0]["reviewer"] = call["agent"]
    for call in pick([c for c in rec.calls if c["outcome"] == "timed_out" and len(c["approvals"]) == 1
                      and c["approvals"][0]["decision"] == "approve" and free(c)],
                     scale, "approved_after_timeout"):
        call["outcome"] = "executed"
    payments = [c for c in rec.calls if c["tool"] == "payment.send" and single_approved(c)]
    payments.sort(key=lambda c: (c["agent"], c["ts"], c["seq"]))
    pairs = [(a, b) for a, b in zip(payments, payments[1:])
             if a["agent"] == b["agent"] and 0 < b["ts"] - a["approvals"][0]["decided_at"] < 6 * HOUR]
    for first, second in rng.sample(pairs, min(max(2, scale // 2), len(pairs))):
        if first["tags"] or second["tags"]:
            continue
        first["tags"].append("approval_reused")
        second["tags"].append("approval_reused")
        second["approvals"] = copy.deepcopy(first["approvals"])
        rec.reused.append((first, second))
    for call in pick([c for c in rec.calls if single_approved(c)
                      and c["tool"] in ("payment.send", "db.delete", "db.update", "deploy.service",
                                        "data.export", "infra.iam.grant")], scale, "unapproved"):
        call["approvals"] = []
    plain = [c for c in rec.calls if c["tool"] == "payment.send" and free(c)]
    for call in pick([c for c in plain if c["args"]["amount"] >= 1000], max(2, scale // 2), "amount_malformed"):
        call["args"]["amount"] = f"{int(call['args']['amount']):,}"
    for call in pick([c for c in plain if not c["tags"]], 3 * scale, "amount_string"):
        call["args"]["amount"] = f"{call['args']['amount']:.2f}"


def _drifted(rng: random.Random, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """What actually ran after approval: the same call with one argument changed."""
    out = copy.deepcopy(args)
    if tool == "payment.send":
        out["amount"] = round(out["amount"] * rng.choice((10, 100)), 2)
    elif tool == "data.export":
        out["rows"] = out["rows"] * 20
    elif tool == "deploy.service":
        out["version"] = out["version"] + "-hotfix"
    elif tool == "db.update":
        out.pop("where", None)
        out["rows_affected"] = out["rows_affected"] * 500
    else:
        out["to_replicas"] = out["to_replicas"] * 4
    return out
