"""The sample generator: deterministic bytes, contract-shaped records, and a manifest that tells the truth."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatekit.action import FIELDS, evidence_hash, parse_ts
from gatekit.errors import GatekitError
from gatekit.sample import START, generate, write_sample

BUNDLED = Path(__file__).resolve().parents[1] / "sample_logs"
OUTCOMES = {"executed", "denied", "timed_out", "blocked", "failed"}
ID = re.compile(r"^a-\d+$")


def _read_seed(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != "README.md"}


def _load(directory: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh)
    return records


def _latency(approval: dict[str, Any]) -> float:
    return (parse_ts(approval["decided_at"]) - parse_ts(approval["requested_at"])).total_seconds()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regeneration of the bundled sample from its own SEED file."""
    seed = _read_seed(BUNDLED / "SEED")
    out = tmp_path_factory.mktemp("fresh")
    write_sample(out, n_actions=int(seed["n_actions"]), seed=int(seed["seed"]),
                 start=parse_ts(seed["start"]), days=int(seed["days"]))
    return out


@pytest.fixture(scope="module")
def records(fresh: Path) -> list[dict[str, Any]]:
    return _load(fresh)


@pytest.fixture(scope="module")
def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["action_id"]: r for r in records}


@pytest.fixture(scope="module")
def planted(fresh: Path) -> dict[str, Any]:
    return json.loads((fresh / "PLANTED.json").read_text(encoding="utf-8"))


# -- determinism -------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    write_sample(tmp_path / "a", n_actions=2000, seed=11)
    # another process with another string-hash seed: nothing may depend on set or dict-of-str ordering
    code = "import sys; from pathlib import Path; from gatekit.sample import write_sample; " \
           "write_sample(Path(sys.argv[1]), n_actions=2000, seed=11)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], check=True, env=env)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) >= 4
    assert a == b


def test_different_seed_gives_different_logs(tmp_path: Path) -> None:
    write_sample(tmp_path / "a", n_actions=2000, seed=11)
    write_sample(tmp_path / "b", n_actions=2000, seed=12)
    a, b = _load(tmp_path / "a"), _load(tmp_path / "b")
    assert len(a) == len(b) == 2000
    # the traffic itself differs, not only the ids derived from the seed
    assert [(r["ts"], r["tool"], r["args"]) for r in a] != [(r["ts"], r["tool"], r["args"]) for r in b]
    planted = [json.loads((tmp_path / d / "PLANTED.json").read_text()) for d in "ab"]
    assert planted[0]["execution_drift"] != planted[1]["execution_drift"]


def test_bundled_sample_equals_a_fresh_regeneration(fresh: Path) -> None:
    bundled, regenerated = _files(BUNDLED), _files(fresh)
    assert sorted(bundled) == sorted(regenerated)
    for name in bundled:
        assert bundled[name] == regenerated[name], f"sample_logs/{name} differs from its regeneration"


def test_files_hold_generate_in_log_order(records: list[dict[str, Any]], planted: dict[str, Any]) -> None:
    expected = list(generate(planted["n_actions"], seed=planted["seed"], start=parse_ts(planted["start"]),
                             days=planted["days"]))
    assert records == expected
    assert len(records) == planted["n_actions"] == 20000


def test_bundled_defaults_match_the_cli_command() -> None:
    seed = _read_seed(BUNDLED / "SEED")
    assert seed == {"seed": "7", "n_actions": "20000", "start": "2026-10-05T00:00:00.000Z", "days": "28"}
    assert parse_ts(seed["start"]) == START
    assert "gatekit sample --out sample_logs --n 20000 --seed 7" in (BUNDLED / "README.md").read_text()


def test_too_few_actions_is_refused() -> None:
    with pytest.raises(GatekitError, match="at least 1000"):
        generate(10)


# -- the action contract -----------------------------------------------------------------------------------


def test_every_record_satisfies_the_action_contract(records: list[dict[str, Any]]) -> None:
    ids = set()
    for rec in records:
        assert tuple(rec) == FIELDS
        assert isinstance(rec["tool"], str) and rec["tool"]
        assert rec["ts"].endswith("Z") and parse_ts(rec["ts"]) >= START
        assert isinstance(rec["args"], dict) and isinstance(rec["context"], dict)
        assert rec["label"] in ("harmful", "benign", None)
        assert rec["outcome"] in OUTCOMES
        assert ID.match(rec["action_id"]) and rec["action_id"] not in ids
        ids.add(rec["action_id"])
        assert rec["user"].startswith("u-") and rec["session"].startswith("s-")
        assert rec["evidence_hash"] == evidence_hash(rec)
        ran = rec["outcome"] in ("executed", "failed")
        assert (rec["executed_hash"] is not None) == ran
        assert isinstance(rec["approvals"], list)
        for a in rec["approvals"]:
            assert set(a) - {"reason"} == {"reviewer", "role", "decision", "requested_at", "decided_at",
                                           "break_glass"}
            assert a["decision"] in ("approve", "deny") and isinstance(a["break_glass"], bool)
            assert _latency(a) > 0


def test_timestamps_are_mostly_in_order(records: list[dict[str, Any]], planted: dict[str, Any]) -> None:
    ts = [parse_ts(r["ts"]) for r in records]
    backwards = {records[i]["action_id"] for i in range(1, len(ts)) if ts[i] < ts[i - 1]}
    assert 0 < len(backwards) < 0.005 * len(records)
    assert backwards <= set(planted["out_of_order"])


def test_traffic_has_the_promised_shape(records: list[dict[str, Any]]) -> None:
    tools = {r["tool"] for r in records}
    assert {"payment.send", "payment.refund", "db.query", "db.update", "db.delete", "db.drop_table",
            "email.send", "email.campaign.send", "deploy.service", "deploy.rollback", "infra.scale",
            "infra.iam.grant", "data.export", "crm.lookup", "docs.search", "tickets.read", "kb.search"} <= tools
    agents = defaultdict(int)
    for r in records:
        agents[r["agent"]] += 1
    assert {"billing-bot", "support-bot", "ops-bot", "data-bot", "growth-bot"} <= set(agents)
    assert sum(n < 0.05 * len(records) for n in agents.values()) >= 1  # a rarer agent
    times = [parse_ts(r["ts"]) for r in records]
    office = sum(t.weekday() < 5 and 8 <= t.hour < 19 for t in times) / len(times)
    weekend = sum(t.weekday() >= 5 for t in times) / len(times)
    assert office > 0.6 and 0.03 < weekend < 0.25
    assert {r["context"]["env"] for r in records if r["tool"].startswith("db.")} == {"prod", "staging", "dev"}
    sessions = defaultdict(int)
    for r in records:
        sessions[r["session"]] += 1
    assert 3 <= statistics.median(sessions.values()) <= 40
    amounts = [r["args"]["amount"] for r in records if r["tool"] == "payment.send"
               and isinstance(r["args"]["amount"], float)]
    assert statistics.median(amounts) < 500 and 10000 < max(amounts) <= 50000
    assert any(r["args"].get("recipients", 0) > 10000 for r in records if r["tool"] == "email.campaign.send")


# -- the manifest against the records ----------------------------------------------------------------------


def _ids_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if ID.match(value) else []
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ids_in(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ids_in(v)]
    return []


def test_every_planted_id_exists(planted: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> None:
    ids = _ids_in(planted)
    assert len(ids) > 500
    assert [i for i in ids if i not in by_id] == []


def test_execution_drift(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    drifted = {r["action_id"] for r in records if r["executed_hash"] and r["executed_hash"] != r["evidence_hash"]}
    assert len(planted["execution_drift"]) >= 5
    assert drifted == set(planted["execution_drift"])
    for rec in records:
        if rec["action_id"] in drifted:
            assert rec["approvals"] and all(a["decision"] == "approve" for a in rec["approvals"])


def test_break_glass(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    glass = [r for r in records if any(a["break_glass"] for a in r["approvals"])]
    assert len(glass) >= 4
    assert {r["action_id"] for r in glass} == set(planted["break_glass"])
    incidents = {i: e["incident"] for e in planted["incidents"] for i in e["action_ids"]}
    for rec in glass:
        assert all(incidents[rec["action_id"]] in a["reason"] for a in rec["approvals"])
        assert all(a["reviewer"] != rec["user"] for a in rec["approvals"])
        assert rec["outcome"] == "executed" and rec["context"]["env"] == "prod"


def test_self_approvals(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    by_user = {r["action_id"] for r in records if any(a["reviewer"] == r["user"] for a in r["approvals"])}
    by_agent = {r["action_id"] for r in records if any(a["reviewer"] == r["agent"] for a in r["approvals"])}
    assert by_user and by_agent
    assert by_user == set(planted["self_approvals"]["by_user"])
    assert by_agent == set(planted["self_approvals"]["by_agent"])


def test_approvals_decided_after_the_timeout(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    timeout = planted["recorded_world"]["timeouts_s"]["standard"]
    late = {r["action_id"] for r in records if r["outcome"] == "executed"
            and any(_latency(a) > timeout for a in r["approvals"])}
    assert late and late == set(planted["approved_after_timeout"])


def test_approval_reused(planted: dict[str, Any], by_id: dict[str, dict[str, Any]],
                         records: list[dict[str, Any]]) -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        for a in rec["approvals"]:
            seen[json.dumps(a, sort_keys=True)].append(rec["action_id"])
    shared = sorted(sorted(ids) for ids in seen.values() if len(ids) > 1)
    assert shared and shared == sorted(sorted(pair) for pair in planted["approval_reused"])
    for first, second in planted["approval_reused"]:
        a, b = by_id[first], by_id[second]
        assert a["approvals"] == b["approvals"] and a["evidence_hash"] != b["evidence_hash"]
        assert a["outcome"] == b["outcome"] == "executed"
        assert parse_ts(b["approvals"][0]["decided_at"]) < parse_ts(b["ts"])


def _needed_review(rec: dict[str, Any]) -> bool:
    """The recorded world's review rules, restated independently of the generator."""
    tool, args, prod = rec["tool"], rec["args"], rec["context"].get("env") == "prod"
    if tool == "payment.send":
        return float(str(args["amount"]).replace(",", "")) > 500
    if tool in ("db.update", "db.delete", "db.drop_table") or tool.startswith("deploy."):
        return prod
    if tool == "infra.scale":
        return prod and args["to_replicas"] > 2 * args["from_replicas"]
    if tool == "data.export":
        return not args["destination"].startswith(("s3://corp-", "bq://corp-")) or args["rows"] > 50000
    if tool == "email.campaign.send":
        return args["recipients"] > 5000
    return tool in ("payment.refund", "infra.iam.grant")


def test_executed_without_required_approval(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    missing = {r["action_id"] for r in records
               if r["outcome"] == "executed" and not r["approvals"] and _needed_review(r)}
    assert missing and missing == set(planted["executed_without_approval"])


def test_amount_strings(planted: dict[str, Any], by_id: dict[str, dict[str, Any]],
                        records: list[dict[str, Any]]) -> None:
    numeric, malformed = planted["amount_strings"]["numeric"], planted["amount_strings"]["malformed"]
    assert len(numeric) >= 5 and len(malformed) >= 2
    for i in numeric:
        assert float(by_id[i]["args"]["amount"]) > 0
    for i in malformed:
        text = by_id[i]["args"]["amount"]
        assert "," in text
        with pytest.raises(ValueError):
            float(text)
    strings = {r["action_id"] for r in records if isinstance(r["args"].get("amount"), str)}
    assert strings == set(numeric) | set(malformed)


def test_promotion_candidate_is_never_denied(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    (candidate,) = planted["promotion_candidates"]
    assert candidate["when"] == {"args.amount": {"lt": 50}}
    matching = [r for r in records if r["tool"] == candidate["tool"] and r["agent"] == candidate["agent"]
                and r["args"]["amount"] < 50]
    assert len(matching) >= 100 and len(matching) == candidate["reviewed"] == candidate["approved"]
    assert all(r["approvals"] and all(a["decision"] == "approve" for a in r["approvals"]) for r in matching)
    assert candidate["denied"] == 0
    # the same tool above the threshold is sometimes denied: the pattern, not the tool, is safe
    above = [r for r in records if r["tool"] == candidate["tool"] and r["args"]["amount"] >= 50]
    assert any(a["decision"] == "deny" for r in above for a in r["approvals"])


def _reviews(records: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for rec in records:
        for a in rec["approvals"]:
            if not a["break_glass"]:
                out[a["reviewer"]].append((rec, a))
    return out


def test_rubber_stamping_reviewer(planted: dict[str, Any], records: list[dict[str, Any]]) -> None:
    stamp = planted["reviewers"]["rubber_stamp"]
    reviews = _reviews(records)
    mine = sorted((a for _, a in reviews[stamp["reviewer"]]), key=lambda a: (a["decided_at"], a["requested_at"]))
    assert len(mine) == stamp["reviews"] >= 100
    assert sum(a["decision"] == "approve" for a in mine) / len(mine) >= 0.99
    assert statistics.median(_latency(a) for a in mine) < 10
    streak = best = 0
    for a in mine:
        streak = streak + 1 if a["decision"] == "approve" else 0
        best = max(best, streak)
    assert best == stamp["longest_approval_streak"] >= 100
    others = [statistics.median(_latency(a) for _, a in items) for name, items in reviews.items()
              if name != stamp["reviewer"] and len(items) >= 10]
    assert others and min(others) > 60


def test_overloaded_reviewer(planted: dict[str, Any], by_id: dict[str, dict[str, Any]],
                             records: list[dict[str, Any]]) -> None:
    busy = planted["reviewers"]["overloaded"]
    name = busy["reviewer"]
    reviews = _reviews(records)
    counts = {n: len(items) for n, items in reviews.items() if n in planted["recorded_world"]["reviewers"]}
    assert counts[name] == busy["reviews"]
    assert counts[name] >= 1.8 * max(c for n, c in counts.items() if n != name)

    def after_hours(ts: str) -> bool:
        t = parse_ts(ts)
        return t.weekday() >= 5 or not 8 <= t.hour < 19

    mine = [a for _, a in reviews[name]]
    assert sum(after_hours(a["requested_at"]) for a in mine) / len(mine) > 0.3
    assert statistics.median(_latency(a) for a in mine) > planted["recorded_world"]["sla_s"] / 2
    assert busy["timed_out"] and busy["sla_breaches"]
    for i in busy["timed_out"]:
        assert by_id[i]["outcome"] == "timed_out" and any(a["reviewer"] == name for a in by_id[i]["approvals"])
    for i in busy["sla_breaches"]:
        assert any(a["reviewer"] == name and _latency(a) > planted["recorded_world"]["sla_s"]
                   for a in by_id[i]["approvals"])


def test_email_bursts(planted: dict[str, Any], by_id: dict[str, dict[str, Any]],
                      records: list[dict[str, Any]]) -> None:
    bursts = planted["email_bursts"]
    assert len(bursts) >= 3
    in_bursts = set()
    for burst in bursts:
        calls = [by_id[i] for i in burst["action_ids"]]
        assert len(calls) == burst["count"] > 20
        assert all(c["tool"] == "email.send" and c["agent"] == burst["agent"] for c in calls)
        assert parse_ts(burst["end"]) - parse_ts(burst["start"]) < timedelta(minutes=10)
        in_bursts.update(burst["action_ids"])
    # outside the planted bursts no agent sends more than 20 e-mails in any 10 minutes
    per_agent: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for rec in records:
        if rec["tool"] == "email.send":
            per_agent[rec["agent"]].append((parse_ts(rec["ts"]), rec["action_id"]))
    for calls in per_agent.values():
        calls = sorted(c for c in calls if c[1] not in in_bursts)
        lo = 0
        for hi in range(len(calls)):
            while calls[hi][0] - calls[lo][0] >= timedelta(minutes=10):
                lo += 1
            assert hi - lo + 1 <= 20


def test_split_payments(planted: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> None:
    assert len(planted["split_payments"]) >= 2
    for episode in planted["split_payments"]:
        calls = [by_id[i] for i in episode["action_ids"]]
        assert len(calls) >= 5
        assert all(c["tool"] == "payment.send" and c["args"]["recipient"] == episode["recipient"]
                   and c["args"]["amount"] < 100 and c["label"] in ("harmful", None) for c in calls)
        assert round(sum(c["args"]["amount"] for c in calls), 2) == episode["total"] > 500
        times = sorted(parse_ts(c["ts"]) for c in calls)
        assert times[-1] - times[0] < timedelta(hours=2)


def test_injections(planted: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> None:
    assert len(planted["injections"]) >= 10
    for episode in planted["injections"]:
        source = by_id[episode["source_action_id"]]
        assert source["tool"] == "tickets.read" and source["agent"] == episode["agent"]
        calls = [by_id[i] for i in episode["action_ids"]]
        assert calls and any(c["tool"].startswith("payment.") for c in calls)
        for call in calls:
            assert call["session"] == source["session"] and call["ts"] > source["ts"]
            assert call["label"] in ("harmful", None)


def test_harmful_labels(planted: dict[str, Any], by_id: dict[str, dict[str, Any]],
                        records: list[dict[str, Any]]) -> None:
    labels = [r["label"] for r in records]
    harmful, benign = labels.count("harmful"), labels.count("benign")
    rate = harmful / (harmful + benign)
    assert 0.02 <= rate <= 0.05
    assert 0.03 < labels.count(None) / len(labels) < 0.15
    assert planted["labels"] == {"harmful": harmful, "benign": benign, "unlabelled": labels.count(None),
                                 "harmful_rate": round(rate, 4)}
    categories = planted["harmful"]
    assert {"prompt_injection", "external_export", "prod_destructive", "iam_admin", "mass_email"} <= set(categories)
    listed = {i for ids in categories.values() for i in ids}
    assert all(by_id[i]["label"] in ("harmful", None) for i in listed)
    assert {r["action_id"] for r in records if r["label"] == "harmful"} <= listed
    for i in categories["iam_admin"]:
        assert by_id[i]["args"]["role"] in ("admin", "owner")
    for i in categories["mass_email"]:
        assert by_id[i]["args"]["segment"] == "all-customers"
    for i in categories["prod_destructive"]:
        assert by_id[i]["context"]["env"] == "prod" and by_id[i]["tool"].startswith("db.")
