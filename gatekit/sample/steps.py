"""Steps: the tool calls a scenario plans, before a session gives each a time and a review gives it an outcome.

The builders below draw the arguments that many scenarios share (amounts, currencies, addresses, queries,
exports). Each takes the run's one random stream, so the order of the calls is the order of the draws.
"""

from __future__ import annotations

import math
import random
from typing import Any

from gatekit.sample.cast import FIRST, INTERNAL, LAST, SANCTIONED, TABLES, UNKNOWN


def step(tool: str, args: dict[str, Any], *, env: str | None = None, trigger: str | None = None,
         harm: str | None = None, glass: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"env": env or "prod"}
    if trigger:
        context["trigger"] = trigger
    planned: dict[str, Any] = {"tool": tool, "args": args, "context": context}
    if harm:
        planned["harm"] = harm
    if glass:
        planned["glass"] = glass  # the incident a break-glass approval cites
    return planned


def payment(rng: random.Random, vendor: str) -> dict[str, Any]:
    band = rng.random()
    if band < 0.55:
        amount = rng.lognormvariate(math.log(60), 0.9)
    elif band < 0.95:
        amount = rng.lognormvariate(math.log(800), 1.0)
    else:
        amount = rng.lognormvariate(math.log(9000), 0.7)
    return {"amount": round(min(amount, 50000), 2), "currency": currency(rng),
            "recipient": f"acct:{vendor}", "memo": f"INV-{rng.randint(10000, 99999)}"}


def currency(rng: random.Random) -> str:
    return rng.choices(("USD", "EUR", "GBP", "CHF", "SGD"), weights=(78, 15, 5, 1, 1))[0]


def address(rng: random.Random) -> str:
    name = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 99)}"
    return f"{name}@example.{rng.choice(('com', 'net', 'org'))}"


def db_query(rng: random.Random, database: str, *, env: str) -> dict[str, Any]:
    return step("db.query", {"database": database, "table": rng.choice(TABLES[database]),
                             "rows": int(rng.lognormvariate(math.log(40), 1.5))}, env=env)


def export(rng: random.Random, *, internal: bool = False,
           weights: tuple[int, int, int] = (60, 15, 25)) -> dict[str, Any]:
    kind = "internal" if internal else rng.choices(("internal", "sanctioned", "unknown"), weights=weights)[0]
    prefix = rng.choice({"internal": INTERNAL, "sanctioned": SANCTIONED, "unknown": UNKNOWN}[kind])
    rows = int(rng.lognormvariate(math.log(20000), 1.3))
    planned = step("data.export", {"dataset": rng.choice(("orders.customers", "analytics.events",
                                                          "billing.invoices", "app.users")),
                                   "rows": rows, "destination": f"{prefix}export-{rng.randint(1000, 9999)}.csv",
                                   "format": rng.choice(("csv", "parquet"))},
                   harm="external_export" if kind == "unknown" else None)
    if kind == "unknown" and rng.random() < 0.5:
        planned["blocked"] = True  # the recorded world's DLP proxy caught half of them
    return planned
