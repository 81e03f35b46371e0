"""The cast of the recorded world: its agents and their teams, its reviewers and how each one reviews, and the
vendors, people, tables, services and destinations that their calls name.

Plain constants in a fixed order: the random choices draw from them by position, so reordering or adding an
entry changes the bytes of every sample, the bundled `sample_logs/` included.
"""

from __future__ import annotations

# share of sessions, hour-of-week profile, median seconds between calls, first day active
AGENTS = {
    "support-bot": (28, "support", 15, 0), "billing-bot": (14, "office", 20, 0),
    "ops-bot": (20, "ops", 25, 0), "data-bot": (16, "batch", 6, 0), "growth-bot": (15, "office", 18, 0),
    "audit-bot": (1, "office", 8, 0), "procure-bot": (4, "office", 25, 14),
}
TEAMS = {
    "support-bot": ("u-ana", "u-ben", "u-carla", "u-dev", "u-emma", "u-felix", "u-gina", "u-hugo"),
    "billing-bot": ("u-maria", "u-priya", "u-ivan", "u-jade", "u-karl"),
    "ops-bot": ("u-lena", "u-raj", "u-omar", "u-nina", "u-oscar", "u-pete"),
    "data-bot": ("u-quinn", "u-rosa", "u-sam", "u-theo", "u-ines"),
    "growth-bot": ("u-chloe", "u-uma", "u-vic", "u-will"),
    "audit-bot": ("u-kenji", "u-sara"),
    "procure-bot": ("u-xena", "u-yusuf", "u-jade"),
}

# Who reviews for each role in the recorded world, with how often each is picked. Some are also users of the
# agents they review: that is what makes a self-approval possible to plant.
REVIEWERS: dict[str, tuple[tuple[str, int], ...]] = {
    "finance": (("u-tom", 36), ("u-maria", 36), ("u-priya", 28)),
    "security": (("u-kenji", 55), ("u-sara", 45)),
    "sre": (("u-omar", 75), ("u-lena", 15), ("u-raj", 10)),
    "data-protection": (("u-ines", 60), ("u-paul", 40)),
    "marketing": (("u-chloe", 55), ("u-marco", 45)),
}
RUBBER_STAMP = "u-tom"
OVERLOADED = "u-omar"
# median latency (s), lognormal sigma, chance of denying a benign call, a harmful one
STYLE = {
    "u-tom": (4, 0.45, 0.002, 0.0),
    "u-maria": (420, 0.9, 0.04, 0.65), "u-priya": (600, 0.9, 0.05, 0.6),
    "u-kenji": (720, 0.8, 0.06, 0.7), "u-sara": (540, 0.9, 0.05, 0.7),
    "u-omar": (2700, 1.1, 0.03, 0.3), "u-lena": (480, 0.8, 0.05, 0.6), "u-raj": (540, 0.9, 0.05, 0.6),
    "u-ines": (1200, 0.8, 0.07, 0.75), "u-paul": (900, 0.9, 0.06, 0.7),
    "u-chloe": (840, 0.9, 0.04, 0.5), "u-marco": (780, 0.9, 0.05, 0.55),
}

VENDORS = ("acme-corp", "globex", "initech", "umbrella-supply", "stark-industrial", "wayne-logistics",
           "hooli-cloud", "vandelay-imports", "soylent-foods", "tyrell-systems", "cyberdyne-hw",
           "wonka-catering", "gringotts-leasing", "oscorp-labs", "dunder-paper", "pied-piper-io")
NEW_PAYEES = ("northbridge-holdings-lt", "alder-trade-ltd", "quickwire-fx", "baltic-settlements",
              "crestline-consulting-cy", "meridian-payouts", "silverleaf-escrow", "harbor-clearing-pa")
FIRST = ("jane", "omar", "li", "sofia", "max", "aiko", "liam", "nora", "ravi", "eva", "tariq", "mia")
LAST = ("doe", "khan", "wei", "rossi", "muller", "sato", "brown", "berg", "patel", "silva", "haddad")
TABLES = {"billing": ("invoices", "payments", "vendors"), "orders": ("orders", "order_items", "customers"),
          "analytics": ("events", "sessions", "daily_revenue"), "app": ("users", "feature_flags", "api_keys")}
SERVICES = ("checkout", "search", "auth", "notifications", "billing-api", "catalog", "gateway")
KB = ("reset password", "refund policy", "shipping delay", "cancel subscription", "invoice copy",
      "two-factor setup", "change plan", "export my data", "duplicate charge", "api rate limits")
INTERNAL = ("s3://corp-warehouse/exports/", "bq://corp-analytics.reports.", "s3://corp-finance/archive/")
SANCTIONED = ("hubspot://lists/", "salesforce://campaigns/", "sftp://partner.globex.example/inbound/")
UNKNOWN = ("https://transfer.sh/", "s3://dl-share-7731/", "gs://tmp-bucket-kx/", "https://files.wetransfer.com/",
           "mailto:backup.dump@gmail.com?file=", "sftp://203.0.113.45/upload/")
SEGMENTS = (("trial-users", 800, 4000, 30), ("churn-risk", 300, 2000, 20), ("newsletter", 8000, 20000, 25),
            ("enterprise-admins", 200, 800, 15), ("all-customers", 38000, 42000, 10))
IAM_ROLES = (("viewer", 40), ("editor", 25), ("deployer", 20), ("billing-viewer", 7), ("admin", 11),
             ("owner", 4))
CRITICAL_IAM = ("admin", "owner")
