"""`gatekit check`: CI gates over a replay of the sample logs that leaves no run behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekit.authoring import check_policy
from gatekit.errors import InputError, StoreError
from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.metrics.diff import summarize_diff
from gatekit.metrics.evaluate import evaluate
from gatekit.policy import load_policy
from gatekit.replay import replay
from gatekit.run import Reader, list_runs

REPO = Path(__file__).resolve().parents[2]
STARTER, STRICT = REPO / "policies" / "starter.yaml", REPO / "policies" / "starter-strict.yaml"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample logs with runs `starter` and `strict`, as the metrics see them."""
    path = tmp_path_factory.mktemp("check") / "sample.duckdb"
    with Store(path) as store:
        ingest(store, sorted((REPO / "sample_logs").glob("*.jsonl")))
        replay(store, load_policy(STARTER), "starter")
        replay(store, load_policy(STRICT), "strict")
    return path


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled")
    lines = (REPO / "sample_logs" / "actions-2026-10-05.jsonl").read_text().splitlines()[:300]
    records = [{k: v for k, v in json.loads(line).items() if k != "label"} for line in lines]
    (root / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with Store(root / "store.duckdb") as store:
        ingest(store, [root / "log.jsonl"])
    return root / "store.duckdb"


def test_the_figures_are_the_metrics_own_and_no_run_is_left(sample: Path) -> None:
    with Store(sample) as store:
        result = check_policy(store, load_policy(STRICT), max_escalation_rate=0.5, min_catch=0.5, max_bother=0.5,
                              against="starter", max_changed=0.5)
        reader = Reader(store)
        strict, starter = reader.run("strict"), reader.run("starter")
        scored = evaluate(strict)
        diff = summarize_diff(starter, strict)
        assert sorted(r.name for r in list_runs(store)) == ["starter", "strict"]
    gates = {g.option: g for g in result.gates}
    assert list(gates) == ["--max-escalation-rate", "--min-catch", "--max-bother", "--max-changed"]
    assert gates["--max-escalation-rate"].value == pytest.approx(strict.rate("escalate"))
    assert gates["--min-catch"].value == pytest.approx(scored.catch_rate)
    assert gates["--max-bother"].value == pytest.approx(scored.bother_rate)
    assert gates["--max-changed"].value == pytest.approx(diff.changed / diff.actions)
    assert result.ok and result.actions == 20000


def test_a_threshold_it_breaks_fails_that_gate_only(sample: Path) -> None:
    with Store(sample) as store:
        result = check_policy(store, load_policy(STARTER), max_escalation_rate=0.05, min_catch=0.5)
    assert [(g.name, g.passed) for g in result.gates] == [("escalation rate", False), ("catch rate", True)]
    assert not result.ok and [g.name for g in result.failed] == ["escalation rate"]


def test_a_gate_holds_at_its_threshold_exactly(sample: Path) -> None:
    with Store(sample) as store:
        value = check_policy(store, load_policy(STARTER), max_bother=1.0).gates[0].value
        assert check_policy(store, load_policy(STARTER), max_bother=value).ok
        assert not check_policy(store, load_policy(STARTER), max_bother=value * 0.999).ok


def test_without_labels_catch_and_bother_are_errors_not_passes(unlabelled: Path) -> None:
    with Store(unlabelled) as store:
        with pytest.raises(InputError, match="`--min-catch` needs actions labelled `harmful`"):
            check_policy(store, load_policy(STARTER), min_catch=0.1)
        with pytest.raises(InputError, match="`--max-bother` needs actions labelled `benign`"):
            check_policy(store, load_policy(STARTER), max_bother=0.9)
        assert list_runs(store) == []  # the failed check's run was removed too
        assert check_policy(store, load_policy(STARTER), max_escalation_rate=1).ok


@pytest.mark.parametrize("kwargs, message", [
    ({}, "no gate given"),
    ({"against": "starter"}, "go together"),
    ({"max_changed": 0.1}, "go together"),
    ({"max_bother": 1.5}, "a fraction from 0 to 1"),
])
def test_bad_gates_are_input_errors(sample: Path, kwargs: dict, message: str) -> None:
    with Store(sample) as store, pytest.raises(InputError, match=message):
        check_policy(store, load_policy(STARTER), **kwargs)


def test_an_unknown_run_to_compare_with_is_a_store_error(sample: Path) -> None:
    with Store(sample) as store, pytest.raises(StoreError, match="no run `nope`"):
        check_policy(store, load_policy(STARTER), against="nope", max_changed=0.1)


# ---- the command -----------------------------------------------------------------------------------------
def test_the_command_prints_one_line_per_gate_and_exits_1_on_a_failure(sample: Path, gatekit_cli) -> None:
    code, out, err = gatekit_cli("check", "--db", sample, "--policy", STARTER, "--max-escalation-rate", "0.05",
                                 "--min-catch", "0.5", "--against", "strict", "--max-changed", "0.5")
    lines = out.splitlines()
    assert code == 1 and lines[0] == "policy `starter` over 20,000 actions:"
    assert lines[1].split()[:6] == ["escalation", "rate", "<=", "5.0%", "9.7%", "FAIL"]
    assert lines[2].split()[:6] == ["catch", "rate", ">=", "50.0%", "61.8%", "PASS"]
    assert lines[3].split()[:4] == ["changed", "against", "`strict`", "<="] and "PASS" in lines[3]
    assert err.splitlines()[-1] == "error: 1 gate of 3 failed: escalation rate"


def test_the_command_passes_and_says_the_same_in_json(sample: Path, gatekit_cli) -> None:
    code, out, _ = gatekit_cli("check", "--db", sample, "--policy", STARTER, "--max-escalation-rate", "0.15",
                               "--json")
    data = json.loads(out)
    assert code == 0 and data["passed"] and data["gates"][0]["name"] == "escalation rate"
    assert data["gates"][0]["value"] == pytest.approx(0.0967, abs=1e-3)
