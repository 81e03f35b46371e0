"""The report: its JSON contract, the terminal summary and the standalone HTML, over the sample store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gatekit.report import build_report, render_html, render_text


def test_report_json_has_the_decisions_contract(gatekit_cli, sample_store: Path) -> None:
    code, out, _ = gatekit_cli("report", "--db", sample_store, "--run", "starter", "--json")
    data = json.loads(out)
    assert code == 0
    assert set(data["decisions"]) == {"allow", "escalate", "deny"}
    assert sum(data["decisions"].values()) == data["run"]["actions"] == 20_000
    # every section is there and agrees with the run's counts
    assert {"rates", "drift", "fatigue", "controls", "evaluate"} <= set(data)
    assert data["rates"]["decisions"] == data["decisions"]
    assert data["evaluate"]["caught"] + data["evaluate"]["missed"] == data["evaluate"]["harmful"]


def test_evaluate_json_has_the_contract_keys(gatekit_cli, sample_store: Path, planted: dict) -> None:
    code, out, _ = gatekit_cli("evaluate", "--db", sample_store, "--run", "strict", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"harmful", "caught", "catch_rate", "benign", "bothered", "bother_rate"} <= set(data)
    assert data["catch_rate"] == pytest.approx(data["caught"] / data["harmful"])
    assert data["bother_rate"] == pytest.approx(data["bothered"] / data["benign"])
    # unlabelled actions count in neither
    assert data["harmful"] + data["benign"] + data["unlabelled"] == 20_000


def test_report_names_the_planted_signals(store) -> None:
    text = render_text(build_report(store, "starter"))
    assert "rubber-stamp signals: u-tom" in text
    assert "overloaded: u-omar" in text
    assert "execution drift 8 of" in text


def test_report_against_another_run_shows_the_diff(store) -> None:
    report = build_report(store, "strict", against="starter")
    data = report.to_dict()["diff"]
    assert (data["run_a"], data["run_b"]) == ("starter", "strict")
    assert data["changed"] > 0
    assert "against `starter`" in render_text(report)


def test_html_report_is_standalone_with_every_chart(store, tmp_path: Path) -> None:
    report = build_report(store, "starter", sweep=("payments-over-100", "args.amount"))
    page = render_html(report)
    charts = re.findall(r"vegaEmbed\('#chart\d+', (\{.*?\}), \{actions: false\}\)", page)
    assert len(charts) >= 12
    specs = [json.loads(c.replace("<\\/", "</")) for c in charts]
    assert all(s["$schema"].startswith("https://vega.github.io/schema/vega-lite/") for s in specs)
    # data is aggregated: no chart ships anything near one row per action
    assert max(len(v) for s in specs for v in s.get("datasets", {}).values()) < 2_000
    # nothing is fetched at view time
    assert not re.search(r"<script[^>]+src=", page)
    assert "Threshold sweep: payments-over-100 args.amount" in page


def test_report_on_a_short_log_says_what_it_cannot_score(gatekit_cli, tmp_path: Path) -> None:
    """Five actions over a few minutes: both drift windows cannot have actions, so the PSI is n/a, not a crash
    (issue #16 item 1), in the text, the JSON and the HTML."""
    log = tmp_path / "short.jsonl"
    log.write_text("".join(json.dumps({
        "action_id": f"a-{i}", "ts": f"2026-11-01T10:0{i}:00Z", "agent": "bot",
        "tool": "payment.send" if i % 2 else "email.send", "args": {"amount": 50 * i}}) + "\n" for i in range(5)))
    db = tmp_path / "short.duckdb"
    policy = Path(__file__).resolve().parents[2] / "policies" / "starter.yaml"
    assert gatekit_cli("ingest", log, "--db", db)[0] == 0
    assert gatekit_cli("replay", "--db", db, "--policy", policy, "--name", "short")[0] == 0

    code, out, err = gatekit_cli("report", "--db", db, "--run", "short")
    assert code == 0, err
    assert "tool-mix PSI n/a (too little data" in out
    code, out, err = gatekit_cli("report", "--db", db, "--run", "short", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["drift"]["behaviour"]["psi"] is None and data["run"]["actions"] == 5
    page = tmp_path / "short.html"
    code, _, err = gatekit_cli("report", "--db", db, "--run", "short", "--html", page)
    assert code == 0, err
    assert "tool-mix PSI n/a (too little data" in page.read_text(encoding="utf-8")


def test_report_text_numbers_have_one_style(store) -> None:
    """Counts with thousands separators, percentages with one decimal; the workload forecast in sentences
    (issue #16 item 9: it was a wall of `key value` pairs, numbers written three ways)."""
    text = render_text(build_report(store, "strict", against="starter"))
    assert not re.findall(r"(?<![\d,.-])\d{4,}(?![\d-])", text), "a count without thousands separators"
    assert re.findall(r"\d%", text) and not re.findall(r"\d\.\d{2,}%", text)
    workload = [line for line in text.splitlines() if line.startswith("workload:")][0]
    assert re.fullmatch(r"workload: [\d,]+ escalations over \d+ days \([\d,.]+ a day, [\d,.]+ a week\), "
                        r"[\d,]+ reviews \([\d,.]+ a week\)", workload)
    assert "peak hour 10:00 with 274 (10.5% of escalations)" in text
    assert "bothered 2,233 of 18,155 benign (12.3%)" in text
