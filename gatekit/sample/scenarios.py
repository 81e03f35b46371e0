"""The ordinary traffic: one scenario per agent, each returning the steps of one working session.

A scenario only plans: it draws its arguments from the run's random stream and returns steps in order. The
session around it (times, user, review) is the recording's business, so a scenario is a plain function of the
stream and can be read, and changed, on its own.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

from gatekit.sample.cast import (
    CRITICAL_IAM, FIRST, IAM_ROLES, KB, SANCTIONED, SEGMENTS, SERVICES, TABLES, UNKNOWN, VENDORS,
)
from gatekit.sample.steps import address, currency, db_query, export, payment, step


def _support(rng: random.Random) -> list[dict[str, Any]]:
    """Tickets answered from the knowledge base and the CRM, now and then with a refund."""
    steps: list[dict[str, Any]] = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
        ticket, customer = f"T-{rng.randint(10000, 99999)}", f"c-{rng.randint(10000, 99999)}"
        steps.append(step("tickets.read", {"ticket_id": ticket}))
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.55:
                steps.append(step("kb.search", {"query": rng.choice(KB)}))
            else:
                steps.append(step("crm.lookup", {"customer_id": customer}))
        if rng.random() < 0.3:
            amount = round(min(rng.lognormvariate(math.log(30), 0.8), 900), 2)
            steps.append(step("payment.refund", {"amount": amount, "currency": currency(rng),
                                                 "order_id": f"O-{rng.randint(100000, 999999)}",
                                                 "reason": rng.choice(("damaged", "late", "duplicate",
                                                                       "goodwill"))}))
        if rng.random() < 0.7:
            steps.append(step("email.send", {"to": address(rng), "recipients": 1, "template": rng.choice(
                ("ticket_reply", "refund_confirmation", "password_help", "shipping_update"))}))
        steps.append(step("tickets.update", {"ticket_id": ticket, "status": rng.choice(
            ("pending", "solved", "solved", "open"))}))
    return steps


def _billing(rng: random.Random) -> list[dict[str, Any]]:
    """Mostly a payment run (invoices queried, vendors paid, remittance sent); otherwise one billing ticket."""
    steps: list[dict[str, Any]] = []
    if rng.random() < 0.6:
        for _ in range(rng.randint(2, 5)):
            steps.append(db_query(rng, "billing", env="prod"))
        for _ in range(rng.randint(1, 5)):
            vendor = rng.choice(VENDORS)
            steps.append(step("crm.lookup", {"customer_id": f"v-{vendor}"}))
            steps.append(step("payment.send", payment(rng, vendor)))
        steps.append(step("email.send", {"to": f"ap@{rng.choice(VENDORS)}.example", "recipients": 1,
                                         "template": "remittance_advice"}))
        steps.append(step("db.update", {"database": "billing", "table": "invoices",
                                        "rows_affected": rng.randint(1, 12), "where": "status = 'due'"},
                          env="prod"))
        return steps
    steps.append(step("tickets.read", {"ticket_id": f"T-{rng.randint(10000, 99999)}"}))
    steps.append(step("crm.lookup", {"customer_id": f"c-{rng.randint(10000, 99999)}"}))
    if rng.random() < 0.4:
        steps.append(step("docs.search", {"query": rng.choice(("payment terms", "refund approval limits",
                                                               "vat rules", "vendor onboarding"))}))
    if rng.random() < 0.5:
        amount = round(min(rng.lognormvariate(math.log(240), 1.0), 9000), 2)
        steps.append(step("payment.refund", {"amount": amount, "currency": currency(rng),
                                             "order_id": f"O-{rng.randint(100000, 999999)}",
                                             "reason": "billing_error"}))
    else:
        steps.append(step("payment.send", payment(rng, rng.choice(VENDORS))))
    steps.append(step("email.send", {"to": address(rng), "recipients": 1, "template": "billing_reply"}))
    return steps


def _ops(rng: random.Random) -> list[dict[str, Any]]:
    """One change ticket: a deploy through staging to prod, a scaling, an access grant or a flag change."""
    steps: list[dict[str, Any]] = []
    kind = rng.choices(("deploy", "scale", "access", "maintenance"), weights=(42, 23, 20, 15))[0]
    service = rng.choice(SERVICES)
    steps.append(step("tickets.read", {"ticket_id": f"CHG-{rng.randint(1000, 9999)}"}))
    for _ in range(rng.randint(0, 2)):
        steps.append(step("kb.search", {"query": f"{service} runbook"}))
    if kind == "deploy":
        for service in rng.sample(SERVICES, rng.choice((1, 1, 2, 3))):
            version = f"v{rng.randint(1, 4)}.{rng.randint(0, 60)}.{rng.randint(0, 9)}"
            strategy = rng.choice(("rolling", "canary", "blue-green"))
            steps.append(step("deploy.service", {"service": service, "version": version,
                                                 "strategy": strategy}, env="staging"))
            for _ in range(rng.randint(1, 2)):
                steps.append(db_query(rng, "app", env="prod"))
            steps.append(step("deploy.service", {"service": service, "version": version,
                                                 "strategy": strategy}, env="prod"))
            if rng.random() < 0.08:
                steps.append(step("deploy.rollback", {"service": service, "to_version": "previous"},
                                  env="prod"))
    elif kind == "scale":
        before = rng.randint(2, 12)
        after = max(1, before + rng.choice((-2, -1, 1, 2, 4, before, 2 * before)))
        steps.append(step("infra.scale", {"service": service, "from_replicas": before,
                                          "to_replicas": after}, env=rng.choice(("prod", "prod", "staging"))))
    elif kind == "access":
        role = rng.choices([r for r, _ in IAM_ROLES], weights=[w for _, w in IAM_ROLES])[0]
        principal = rng.choice((f"u-{rng.choice(FIRST)}", f"svc-{service}"))
        steps.append(step("infra.iam.grant", {"principal": principal, "role": role,
                                              "resource": f"project/{rng.choice(('prod', 'prod', 'data'))}"},
                          env="prod", harm="iam_admin" if role in CRITICAL_IAM else None))
    else:
        steps.append(db_query(rng, "app", env="prod"))
        steps.append(step("db.update", {"database": "app", "table": "feature_flags",
                                        "rows_affected": rng.randint(1, 5), "where": f"service = '{service}'"},
                          env="prod"))
    return steps


def _data(rng: random.Random) -> list[dict[str, Any]]:
    """ETL, analysis, retention clean-up or a data share: the only agent that deletes rows or drops tables."""
    steps: list[dict[str, Any]] = []
    kind = rng.choices(("etl", "analysis", "retention", "share"), weights=(33, 25, 27, 15))[0]
    if kind == "etl":
        for _ in range(rng.randint(5, 25)):
            steps.append(db_query(rng, rng.choice(("orders", "analytics")), env="prod"))
        for _ in range(rng.randint(1, 3)):
            env = rng.choice(("staging", "prod"))
            args = {"database": "analytics", "table": "daily_revenue", "rows_affected": rng.randint(100, 50000),
                    "where": "day = current_date - 1"}
            unbounded = env == "prod" and rng.random() < 0.04  # the WHERE clause got lost
            if unbounded:
                del args["where"]
                args["rows_affected"] = rng.randint(2_000_000, 9_000_000)
            steps.append(step("db.update", args, env=env, harm="prod_destructive" if unbounded else None))
        if rng.random() < 0.4:
            steps.append(step("db.drop_table", {"database": "analytics",
                                                "table": f"tmp_etl_{rng.randint(100, 999)}",
                                                "rows_affected": rng.randint(1000, 90000)},
                              env=rng.choice(("staging", "dev"))))
        if rng.random() < 0.3:
            steps.append(export(rng, internal=True))
    elif kind == "analysis":
        steps.append(step("docs.search", {"query": rng.choice(("revenue definitions", "churn model",
                                                               "event schema"))}))
        for _ in range(rng.randint(3, 12)):
            steps.append(db_query(rng, rng.choice(("orders", "analytics", "billing")), env="prod"))
        if rng.random() < 0.6:
            steps.append(export(rng))
    elif kind == "share":  # "send the extract to our contractor": often somewhere nobody vetted
        steps.append(step("docs.search", {"query": "data sharing agreement"}))
        for _ in range(rng.randint(1, 4)):
            steps.append(db_query(rng, rng.choice(("orders", "billing")), env="prod"))
        steps.append(export(rng, weights=(10, 25, 65)))
    else:
        for _ in range(rng.randint(1, 3)):
            steps.append(db_query(rng, "app", env="prod"))
            env = rng.choice(("prod", "prod", "prod", "staging", "dev"))
            table = rng.choice(("sessions", "events", "api_keys", "users"))
            rows, where = int(rng.lognormvariate(math.log(150), 1.2)), "created_at < now() - interval '90 days'"
            big = rng.random() < 0.3
            if big:
                rows = rng.randint(5000, 2_000_000)
            args = {"database": "app", "table": table, "rows_affected": rows}
            if not (big and rng.random() < 0.4):
                args["where"] = where
            steps.append(step("db.delete", args, env=env,
                              harm="prod_destructive" if env == "prod" and rows > 5000 else None))
        if rng.random() < 0.3:
            prod = rng.random() < 0.25
            steps.append(step("db.drop_table", {"database": "app",
                                                "table": rng.choice(("sessions_old", "events_2024",
                                                                     "api_keys_bak")),
                                                "rows_affected": rng.randint(10000, 5_000_000)},
                              env="prod" if prod else rng.choice(("staging", "dev")),
                              harm="prod_destructive" if prod else None))
    return steps


def _growth(rng: random.Random) -> list[dict[str, Any]]:
    """Outreach e-mails, a campaign to a segment, or a sync of leads to a marketing tool."""
    steps: list[dict[str, Any]] = []
    kind = rng.choices(("outreach", "campaign", "sync"), weights=(45, 25, 30))[0]
    if kind == "outreach":
        for _ in range(rng.randint(2, 7)):
            steps.append(step("crm.lookup", {"customer_id": f"lead-{rng.randint(10000, 99999)}"}))
            steps.append(step("email.send", {"to": address(rng), "recipients": 1,
                                             "template": rng.choice(("intro", "follow_up", "demo_invite"))}))
    elif kind == "campaign":
        segment, low, high, _ = rng.choices(SEGMENTS, weights=[s[3] for s in SEGMENTS])[0]
        steps.append(db_query(rng, "orders", env="prod"))
        steps.append(step("crm.lookup", {"segment": segment}))
        steps.append(step("email.campaign.send", {
            "campaign": f"cmp-{rng.randint(100, 999)}", "segment": segment,
            "recipients": rng.randint(low, high), "template": rng.choice(("product_update", "promo_q4",
                                                                          "webinar"))},
            harm="mass_email" if segment == "all-customers" else None))
    else:
        steps.append(db_query(rng, "orders", env="prod"))
        rogue = rng.random() < 0.06  # "just send me the list" to a personal inbox
        dest = rng.choice(UNKNOWN[4:5] if rogue else SANCTIONED[:2])
        steps.append(step("data.export", {"dataset": "orders.customers", "rows": rng.randint(1000, 60000),
                                          "destination": dest + f"leads-q4-{rng.randint(10, 99)}.csv",
                                          "format": "csv"}, harm="external_export" if rogue else None))
    return steps


def _audit(rng: random.Random) -> list[dict[str, Any]]:
    """Read-only: queries, documents, tickets and CRM look-ups."""
    steps: list[dict[str, Any]] = []
    for _ in range(rng.randint(10, 40)):
        tool = rng.choice(("db.query", "docs.search", "tickets.read", "crm.lookup"))
        if tool == "db.query":
            steps.append(db_query(rng, rng.choice(tuple(TABLES)), env="prod"))
        elif tool == "docs.search":
            steps.append(step(tool, {"query": rng.choice(("access policy", "retention policy", "soc2"))}))
        elif tool == "tickets.read":
            steps.append(step(tool, {"ticket_id": f"T-{rng.randint(10000, 99999)}"}))
        else:
            steps.append(step(tool, {"customer_id": f"c-{rng.randint(10000, 99999)}"}))
    return steps


def _procure(rng: random.Random) -> list[dict[str, Any]]:
    """A purchase from one vendor: look it up, pay it once or more, send the order."""
    steps: list[dict[str, Any]] = []
    vendor = rng.choice(VENDORS)
    steps.append(step("crm.lookup", {"customer_id": f"v-{vendor}"}))
    steps.append(step("docs.search", {"query": f"{vendor} contract"}))
    for _ in range(rng.randint(1, 3)):
        steps.append(step("payment.send", payment(rng, vendor)))
    steps.append(step("email.send", {"to": f"orders@{vendor}.example", "recipients": 1,
                                     "template": "purchase_order"}))
    return steps


# Every agent of the cast has exactly one scenario: a new agent needs a line here as well as in `cast.AGENTS`.
SCENARIOS: dict[str, Callable[[random.Random], list[dict[str, Any]]]] = {
    "support-bot": _support, "billing-bot": _billing, "ops-bot": _ops, "data-bot": _data,
    "growth-bot": _growth, "audit-bot": _audit, "procure-bot": _procure,
}
