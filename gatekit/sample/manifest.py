"""The manifest (PLANTED.json): what was planted and where, by action id, with the numbers a detector's
findings can be checked against."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any, Iterable

from gatekit.sample.cast import OVERLOADED, REVIEWERS, RUBBER_STAMP, STYLE
from gatekit.sample.clock import after_hours, fmt, moment
from gatekit.sample.recording import Recording
from gatekit.sample.review import RULES, SLA, TIMEOUT, promotion_pattern


def manifest(rec: Recording, calls: list[dict[str, Any]], records: list[dict[str, Any]],
             late: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of `records`, written from the `calls` they were made of (in log order, with their ids)."""
    def ids(tag: str) -> list[str]:
        return [c["id"] for c in calls if tag in c["tags"]]

    def first_id(episode: dict[str, Any]) -> str:
        return episode["action_ids"][0]

    start = rec.start
    harm: dict[str, list[str]] = {}
    for call in calls:
        if call.get("harm"):
            harm.setdefault(call["harm"], []).append(call["id"])
    labels = [r["label"] for r in records]
    n_harm, n_benign = labels.count("harmful"), labels.count("benign")
    promo = [c for c in calls if promotion_pattern(c) and c["approvals"]]
    stats = _reviewer_stats(calls, start, rec.days)
    others = [s["reviews_per_day"] for name, s in stats.items() if name != OVERLOADED]
    omar = [c for c in calls if any(a["reviewer"] == OVERLOADED for a in c["approvals"])]
    return {
        "generator": "gatekit.sample", "seed": rec.seed, "n_actions": len(records),
        "start": fmt(start, 0), "days": rec.days,
        "recorded_world": {
            "timeouts_s": {tier: ms // 1000 for tier, ms in TIMEOUT.items()}, "sla_s": SLA // 1000,
            "reviewers": {name: role for role, pool in REVIEWERS.items() for name, _ in pool},
            "review_rules": list(RULES),
        },
        "reviewers": {
            "rubber_stamp": {"reviewer": RUBBER_STAMP, **stats[RUBBER_STAMP]},
            "overloaded": {
                "reviewer": OVERLOADED, **stats[OVERLOADED],
                "others_max_reviews_per_day": max(others),
                "timed_out": [c["id"] for c in omar if c["outcome"] == "timed_out"],
                "sla_breaches": [c["id"] for c in omar if any(
                    a["reviewer"] == OVERLOADED and a["decided_at"] - a["requested_at"] > SLA
                    for a in c["approvals"])],
            },
            "all": stats,
        },
        "execution_drift": ids("drift"),
        "break_glass": ids("break_glass"),
        "incidents": sorted(({"incident": e["incident"], "action_ids": [c["id"] for c in e["calls"]]}
                             for e in rec.episodes["incidents"] if e["calls"]), key=first_id),
        "self_approvals": {"by_user": ids("self_approval_user"), "by_agent": ids("self_approval_agent")},
        "approved_after_timeout": ids("approved_after_timeout"),
        "approval_reused": sorted([a["id"], b["id"]] for a, b in rec.reused),
        "executed_without_approval": ids("unapproved"),
        "amount_strings": {"numeric": ids("amount_string"), "malformed": ids("amount_malformed")},
        "promotion_candidates": [{
            "tool": "payment.refund", "agent": "support-bot", "when": {"args.amount": {"lt": 50}},
            "reviewed": len(promo),
            "approved": sum(all(a["decision"] == "approve" for a in c["approvals"]) for c in promo),
            "denied": sum(any(a["decision"] == "deny" for a in c["approvals"]) for c in promo),
        }],
        "email_bursts": [{"agent": b["agent"], "start": fmt(start, b["calls"][0]["ts"]),
                          "end": fmt(start, b["calls"][-1]["ts"]), "count": len(b["calls"]),
                          "action_ids": [c["id"] for c in b["calls"]]}
                         for b in sorted(rec.episodes["email_bursts"], key=lambda b: b["calls"][0]["ts"])],
        "split_payments": sorted(({"agent": s["agent"], "recipient": s["recipient"],
                                   "total": round(sum(c["args"]["amount"] for c in s["calls"]), 2),
                                   "action_ids": sorted(c["id"] for c in s["calls"])}
                                  for s in rec.episodes["split_payments"]), key=first_id),
        "injections": sorted(({"agent": e["source"]["agent"], "source_action_id": e["source"]["id"],
                               "action_ids": sorted(c["id"] for c in e["calls"])}
                              for e in rec.episodes["injections"]), key=lambda e: e["source_action_id"]),
        "weekend_deploys": [c["id"] for c in calls if c["tool"].startswith("deploy.")
                            and moment(start, c["ts"]).weekday() >= 5],
        "out_of_order": sorted(c["id"] for c in late),
        "harmful": harm,
        "labels": {"harmful": n_harm, "benign": n_benign, "unlabelled": labels.count(None),
                   "harmful_rate": round(n_harm / (n_harm + n_benign), 4)},
        "counts": {"sessions": len({c["session"] for c in calls}),
                   "by_agent": _count(c["agent"] for c in calls), "by_tool": _count(c["tool"] for c in calls),
                   "by_outcome": _count(c["outcome"] for c in calls)},
    }


def _reviewer_stats(calls: list[dict[str, Any]], start: datetime, days: int) -> dict[str, dict[str, Any]]:
    """Per reviewer, over every (action, approval) pair: volume, approval rate, latency, streaks."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        for a in call["approvals"]:
            if not a["break_glass"]:
                entries.setdefault(a["reviewer"], []).append(a)
    out = {}
    # only the cast's reviewers: an agent that approved its own call is a planted finding, not a reviewer
    for name in sorted(n for n in entries if n in STYLE):
        items = sorted(entries[name], key=lambda a: (a["decided_at"], a["requested_at"]))
        streak = best = 0
        for a in items:
            streak = streak + 1 if a["decision"] == "approve" else 0
            best = max(best, streak)
        approved = sum(a["decision"] == "approve" for a in items)
        after = sum(after_hours(moment(start, a["requested_at"])) for a in items)
        out[name] = {
            "reviews": len(items), "reviews_per_day": round(len(items) / days, 2),
            "approval_rate": round(approved / len(items), 4),
            "median_latency_s": round(statistics.median(a["decided_at"] - a["requested_at"] for a in items) / 1000, 1),
            "longest_approval_streak": best, "after_hours_share": round(after / len(items), 4),
        }
    return out


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))
