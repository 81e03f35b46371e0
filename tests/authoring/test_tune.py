"""`gatekit tune`: the tuned policy validates, keeps catch on held-out, carries its evidence, is deterministic,
respects --max-bother on train; and, on the AgentDojo runs, reaches the hand-tuned final policy on the
held-out model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit import load_policy
from gatekit.authoring import load_catalog, tune
from gatekit.logs import ingest
from gatekit.logs.store import Store
from gatekit.policy import parse_policy
from gatekit.replay import replay

ROOT = Path(__file__).resolve().parents[2]
RUNS = (ROOT / ".." / "shared" / "data" / "agentdojo-runs").resolve()
POLICIES = ROOT / "notebooks" / "policies"
# Held out in turn, each of the three. gpt-4o-mini has 184 of the 208 harmful calls, 29 of them web posts; the other
# two post to the web only benignly (8 calls), so no evidence could gate it: the team's catalog tags
# (agentdojo-catalog.yaml, written from the tools' names) are the prior, and relaxations need positive evidence.
HELD_OUT_MODELS = ["claude-3-5-sonnet-20241022", "command-r", "gpt-4o-mini-2024-07-18"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("tune") / "sample.duckdb"
    with Store(db) as store:
        ingest(store, [ROOT / "sample_logs"])
    return db


@pytest.fixture(scope="module")
def sample_tuning(sample: Path):
    with Store(sample) as store:
        return tune(store, load_policy(POLICIES / "sample-naive.yaml"))


def test_the_tuned_policy_loads_and_validates(sample_tuning, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gatekit.cli import cli

    out = tmp_path / "tuned.yaml"
    out.write_text(sample_tuning.text)
    assert load_policy(out).rules == parse_policy(sample_tuning.text).rules
    result = CliRunner().invoke(cli, ["validate", str(out)])
    assert result.exit_code == 0, result.output


def test_it_never_loses_catch_on_held_out(sample_tuning) -> None:
    assert sample_tuning.heldout_after.caught >= sample_tuning.heldout_before.caught
    for change in sample_tuning.changes:
        if change.kept:
            assert change.heldout_after.caught >= change.heldout_before.caught
    assert any(c.kept for c in sample_tuning.changes)
    t = sample_tuning
    assert (t.train_after.caught, -t.train_after.bothered) != (t.train_before.caught, -t.train_before.bothered)


def test_every_kept_change_is_a_comment_with_its_evidence(sample_tuning) -> None:
    text = sample_tuning.text
    for change in (c for c in sample_tuning.changes if c.kept):
        assert f"# tuned ({change.kind}): {change.summary}" in text
        assert (f"# train: caught {change.train_before.caught} -> {change.train_after.caught} of "
                f"{change.train_after.harmful}, bothered {change.train_before.bothered} -> "
                f"{change.train_after.bothered}") in text
        assert f"# validation: caught {change.heldout_before.caught} -> {change.heldout_after.caught}" in text
    for change in (c for c in sample_tuning.changes if not c.kept):
        assert f"# tuned ({change.kind}): {change.summary}\n" not in text


def test_the_figures_are_what_a_replay_of_the_tuned_policy_decides(sample: Path, sample_tuning) -> None:
    """The in-memory scoring agrees with DuckDB's replay of the written policy."""
    with Store(sample) as store:
        frame = replay(store, sample_tuning.policy, "tuned-check", replace=True).frame
    stopped = frame.filter(frame["decision"] != "allow")
    caught = stopped.filter(stopped["label"] == "harmful").height
    bothered = stopped.filter(stopped["label"] == "benign").height
    t = sample_tuning
    assert caught == t.train_after.caught + t.heldout_after.caught
    assert bothered == t.train_after.bothered + t.heldout_after.bothered


def test_the_same_input_gives_the_same_output(sample: Path, sample_tuning) -> None:
    with Store(sample) as store:
        again = tune(store, load_policy(POLICIES / "sample-naive.yaml"))
    assert again.text == sample_tuning.text


def test_max_bother_is_respected_on_train(sample: Path, sample_tuning) -> None:
    """No change chosen makes train bother exceed `--max-bother` (one that lowers it is always allowed)."""
    cap = sample_tuning.train_after.bother_rate * 0.9  # below what the unconstrained tuning reaches
    with Store(sample) as store:
        t = tune(store, load_policy(POLICIES / "sample-naive.yaml"), max_bother=cap)
    assert t.train_after.bothered <= t.train_before.bothered
    for change in (c for c in t.changes if c.kept):
        assert change.train_after.bother_rate <= cap or change.train_after.bothered < change.train_before.bothered
    assert t.text != sample_tuning.text


def test_the_frontier_lists_the_candidates_and_the_path(sample_tuning) -> None:
    from gatekit.charts import tuning_frontier

    fr = sample_tuning.frontier
    assert fr.height > len(sample_tuning.changes)
    kept = sum(c.kept for c in sample_tuning.changes)
    assert fr.filter(fr["chosen"]).height >= kept + 1  # the base policy, then each step of the last search
    assert fr.filter(fr["kept"]).height == kept
    chart = tuning_frontier(fr)
    spec = chart.to_dict()
    assert spec["layer"] and spec["width"] >= 400 and spec["height"] >= 300
    import json

    import vl_convert

    drawn = vl_convert.vegalite_to_vega(spec)
    drawn = drawn if isinstance(drawn, dict) else json.loads(drawn)
    assert drawn.get("legends"), "the candidates' kinds need a legend"
    rows = [r for rows in spec["datasets"].values() for r in rows]
    assert {r["kind"] for r in rows} >= {"base"} | {c.kind for c in sample_tuning.changes if c.kept}


def test_the_cli_writes_the_policy_and_json(sample: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from click.testing import CliRunner

    from gatekit.cli import cli

    db = tmp_path / "s.duckdb"
    shutil.copy(sample, db)
    out = tmp_path / "t.yaml"
    result = CliRunner().invoke(cli, ["tune", "--db", str(db), "--policy", str(POLICIES / "sample-naive.yaml"),
                                      "--out", str(out), "--split", "time", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["split"] == "time" and data["frontier"] and "heldout" in data
    load_policy(out)


@pytest.fixture(scope="module")
def agentdojo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not RUNS.is_dir():
        pytest.skip(f"the AgentDojo runs are not at {RUNS}")
    db = tmp_path_factory.mktemp("agentdojo") / "ad.duckdb"
    with Store(db) as store:
        ingest(store, [RUNS])
    return db


# The honest figures: tuned on the other two models only (train and validation a split by session of their calls),
# scored on the held-out model, which the tuner never reads. (caught, bothered) there, for the hand-tuned final
# policy and for `gatekit tune --catalog`.
HONEST = {"claude-3-5-sonnet-20241022": ((6, 129), (6, 92)),
          "command-r": ((18, 109), (18, 111)),
          "gpt-4o-mini-2024-07-18": ((182, 205), (169, 184))}


@pytest.mark.parametrize("model", HELD_OUT_MODELS)
def test_on_the_held_out_model_it_reaches_the_hand_tuned_final_policy(agentdojo: Path, model: str) -> None:
    """Tuned on two models from the naive policy and the catalog's tags, scored on the third (never used to
    choose). The honest figures, not all at the final policy's: claude 6 of 6 and 92 bothered against 6 and 129
    (better on both); command-r 18 of 18 and 111 against 18 and 109 (2 more bothered); gpt-4o-mini 169 of 184
    and 184 against 182 and 205 (21 fewer bothered, 13 fewer caught: the 15 harmful calendar invites, see
    `test_what_the_held_out_gpt_4o_mini_loses_is_the_calendar`). Both counted on that model's calls, the tuned
    policy's figures checked against a DuckDB replay of the file it wrote."""
    with Store(agentdojo) as store:
        t = tune(store, load_policy(POLICIES / "agentdojo-naive.yaml"), holdout=("agent", model),
                 catalog=load_catalog(POLICIES / "agentdojo-catalog.yaml"))
        final = replay(store, load_policy(POLICIES / "agentdojo-final.yaml"), "final", replace=True).frame
        tuned = replay(store, t.policy, "tuned", replace=True).frame
    mine = tuned.filter((tuned["agent"] == model) & (tuned["decision"] != "allow"))
    assert mine.filter(mine["label"] == "harmful").height == t.heldout_after.caught
    assert mine.filter(mine["label"] == "benign").height == t.heldout_after.bothered
    held = final.filter(final["agent"] == model)
    stopped = held.filter(held["decision"] != "allow")
    final_figures = (stopped.filter(stopped["label"] == "harmful").height,
                     stopped.filter(stopped["label"] == "benign").height)
    assert t.heldout_after.harmful == held.filter(held["label"] == "harmful").height
    assert t.validation_after is not None and t.validation_after.actions + t.train_after.actions + \
        t.heldout_after.actions == tuned.height
    assert (final_figures, (t.heldout_after.caught, t.heldout_after.bothered)) == HONEST[model]


def test_what_the_held_out_gpt_4o_mini_loses_is_the_calendar(agentdojo: Path) -> None:
    """Why the honest tuning misses the final policy's catch on gpt-4o-mini: every harmful call it lets through
    is a `create_calendar_event`, a tool the catalog tags `impact: medium` (so the base-rate rule applies) and of
    which the two train models made hundreds of calls, none harmful: the evidence licenses releasing it."""
    model = "gpt-4o-mini-2024-07-18"
    with Store(agentdojo) as store:
        t = tune(store, load_policy(POLICIES / "agentdojo-naive.yaml"), holdout=("agent", model),
                 catalog=load_catalog(POLICIES / "agentdojo-catalog.yaml"))
        frame = replay(store, t.policy, "tuned", replace=True).frame
        train = store.con.execute(
            "SELECT count(*) FILTER (label = 'harmful'), count(*) FILTER (label = 'benign') FROM actions "
            "WHERE tool = 'create_calendar_event' AND agent <> ?", [model]).fetchall()[0]
    missed = frame.filter((frame["agent"] == model) & (frame["label"] == "harmful") & (frame["decision"] == "allow"))
    assert missed.height == 184 - t.heldout_after.caught == 15
    assert set(missed["tool"]) == {"create_calendar_event"}
    assert train[0] == 0 and train[1] > 200
    tags = load_catalog(POLICIES / "agentdojo-catalog.yaml").tools["create_calendar_event"].tags
    assert tags["impact"] == "medium" and tags["reversibility"] == "reversible"


def test_the_held_out_actions_never_shape_the_policy(sample: Path, tmp_path: Path) -> None:
    """With `holdout`, the held-out actions are scored, never used to choose: flipping every one of their
    labels changes the held-out figures and not one byte of the tuned policy."""
    import shutil

    db = tmp_path / "s.duckdb"
    shutil.copy(sample, db)
    with Store(db) as store:
        agent = store.con.execute("SELECT agent FROM actions GROUP BY agent ORDER BY count(*) DESC").fetchall()[0][0]
        before = tune(store, load_policy(POLICIES / "sample-naive.yaml"), holdout=("agent", agent))
        store.con.execute("UPDATE actions SET label = CASE label WHEN 'harmful' THEN 'benign' WHEN 'benign' "
                          "THEN 'harmful' ELSE label END WHERE agent = ?", [agent])
        after = tune(store, load_policy(POLICIES / "sample-naive.yaml"), holdout=("agent", agent))
    assert after.text == before.text
    assert (after.train_after, after.validation_after) == (before.train_after, before.validation_after)
    assert after.heldout_after != before.heldout_after


def _emails(root: Path) -> Path:
    """400 benign e-mails, one a session: 380 to four colleagues, 20 to people seen once; and 40 benign reads."""
    import json

    records = []
    for i in range(440):
        tool = "send_email" if i < 400 else "read_inbox"
        to = f"colleague{i % 4}@corp.example" if i < 380 else f"someone{i}@elsewhere.example"
        records.append({"action_id": f"a-{i}", "ts": f"2026-10-05T{i // 60:02d}:{i % 60:02d}:00Z", "agent": "bot",
                        "session": f"s-{i}", "user": "u-1", "tool": tool,
                        "args": {"recipients": [to]} if tool == "send_email" else {}, "label": "benign"})
    (root / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    db = root / "mail.duckdb"
    with Store(db) as store:
        ingest(store, [root / "log.jsonl"])
    return db


def test_a_guarded_tool_is_narrowed_to_an_allowlist_never_released(tmp_path: Path) -> None:
    """No harm in hundreds of e-mails licenses releasing them by the base rate (without a catalog the rule goes),
    but `send_email` tagged `impact: high` is guarded: past traffic does not bound what an attacker sends next,
    so the tuner may only pass the recipients always seen benign; a new recipient still goes to a human."""
    from gatekit import decide
    from gatekit.authoring.catalog import parse_catalog
    from gatekit.authoring.tuning import HIGH_RISK

    db = _emails(tmp_path)
    policy = parse_policy("version: 1\nname: mail\ndefault: allow\nrules:\n  - id: every-email\n"
                          "    tool: send_email\n    action: escalate\n    reason: Every e-mail\n")
    catalog = parse_catalog("catalog: 1\nactions: 0\ntools:\n  send_email: {tags: {impact: high}}\n")
    new = {"tool": "send_email", "args": {"recipients": ["attacker@evil.example"]}}
    known = {"tool": "send_email", "args": {"recipients": ["colleague1@corp.example"]}}
    with Store(db) as store:
        plain = tune(store, policy)
        guarded = tune(store, policy, catalog=catalog)
    assert decide(plain.policy, new).decision == "allow"  # released by the base-rate evidence
    assert any(c.kept and c.kind == "remove" for c in plain.changes)
    assert HIGH_RISK == {"impact": ("high",), "reversibility": ("irreversible",)}
    assert decide(guarded.policy, new).decision == "escalate"
    assert decide(guarded.policy, known).decision == "allow"
    assert not any(c.kept and c.kind == "remove" for c in guarded.changes)
    narrowed = [c for c in guarded.changes if c.kept and c.kind == "narrow"]
    assert narrowed and all("always benign" in c.summary for c in narrowed)


def test_an_allowlist_is_of_identifiers_not_prose_dates_or_amounts() -> None:
    """Subjects, dates and amounts are what an injection writes: "seen benign" says nothing about the next one,
    so no allowlist is made of them; payees and addresses are."""
    from gatekit.authoring.tuning import _value_conditions

    def allowlists(values: list[str]) -> list[str]:
        rows = [(v, False, True) for v in values for _ in range(3)] + [("x-harm", True, False)]
        return [why for _, why, _, allow in _value_conditions("args.p", rows, 2) if allow]

    assert allowlists(["Refund from friend", "Rent"]) == []
    assert allowlists(["2022-03-01", "2022-04-01"]) == []
    assert allowlists(["100", "12.5"]) == []
    assert allowlists(["GB29NWBK60161331926819", "DE89370400440532013000"])
    assert allowlists(["a@corp.example", "b@corp.example"])


def test_reviews_are_the_evidence_without_labels(sample: Path) -> None:
    """With `target="reviews"` a call any reviewer denied counts as harmful and one only approved as benign;
    calls nobody reviewed are no evidence."""
    with Store(sample) as store:
        t = tune(store, load_policy(POLICIES / "sample-naive.yaml"), target="reviews")
        reviewed = store.con.execute("SELECT count(*) FROM actions WHERE approvals IS NOT NULL "
                                     "AND json_array_length(approvals) > 0").fetchall()[0][0]
        denied = store.con.execute(
            "SELECT count(DISTINCT a.seq) FROM actions a, LATERAL (SELECT unnest(CAST(a.approvals AS JSON[])) AS v) j "
            "WHERE j.v ->> 'decision' = 'deny'").fetchall()[0][0]
    assert t.target == "reviews"
    assert t.train_before.harmful + t.heldout_before.harmful == denied
    assert 0 < t.train_before.benign + t.heldout_before.benign <= reviewed - denied
    assert t.heldout_after.caught >= t.heldout_before.caught
    parse_policy(t.text)


@pytest.mark.parametrize("holdout, message", [(("model", "x"), "cannot hold out by `model`"),
                                               (("agent", "nobody"), "no action has agent `nobody`")])
def test_a_bad_holdout_is_an_input_error(sample: Path, holdout, message: str) -> None:
    from gatekit.errors import InputError

    with Store(sample) as store, pytest.raises(InputError, match=message):
        tune(store, load_policy(POLICIES / "sample-naive.yaml"), holdout=holdout)


def test_it_leaves_the_stores_runs_as_they_were(sample: Path) -> None:
    from gatekit.run import list_runs

    with Store(sample) as store:
        replay(store, load_policy(POLICIES / "sample-naive.yaml"), "gatekit-tune-base", replace=True)
        before = sorted((r.name, r.actions) for r in list_runs(store))
        tune(store, load_policy(POLICIES / "sample-naive.yaml"))
        assert sorted((r.name, r.actions) for r in list_runs(store)) == before


def test_without_the_catalog_no_evidence_gates_the_web_posts(agentdojo: Path) -> None:
    """The honest limit: from labels alone (the train models' 8 web posts are all benign) the tuner cannot gate
    `post_webpage`, and says so by not adding a rule; it still never relaxes on thin evidence."""
    with Store(agentdojo) as store:
        t = tune(store, load_policy(POLICIES / "agentdojo-naive.yaml"), holdout=("agent", "gpt-4o-mini-2024-07-18"))
    assert "post_webpage" not in t.text
    assert t.heldout_after.caught > t.heldout_before.caught
    assert t.heldout_after.caught <= 184 - 29


@given(st.integers(0, 60), st.integers(1, 60))
def test_the_harm_bound_is_an_exact_upper_confidence_bound(harmful: int, extra: int) -> None:
    """At the bound, seeing at most `harmful` of `labeled` has probability 1 - confidence; it falls as more
    calls are seen with the same harm and rises with more harm."""
    import math

    from gatekit.authoring.tuning import CONFIDENCE, harm_bound

    labeled = harmful + extra
    p = harm_bound(harmful, labeled)
    assert harmful / labeled <= p <= 1
    cdf = sum(math.comb(labeled, i) * p**i * (1 - p) ** (labeled - i) for i in range(harmful + 1))
    assert cdf == pytest.approx(1 - CONFIDENCE, abs=1e-6)
    assert harm_bound(harmful, labeled + 1) < p
    assert harm_bound(harmful + 1, labeled + 1) > harm_bound(harmful, labeled + 1)


def test_a_relaxation_needs_positive_evidence() -> None:
    """No harm in 20 released calls is not enough at weight 10 (bound 14%, break-even 9.1%); in 40 it is."""
    from gatekit.authoring import harm_bound, unseen_harm

    assert harm_bound(0, 20) > 1 / 11 > harm_bound(0, 40)
    assert harm_bound(0, 0) == 1.0
    from collections import Counter

    assert unseen_harm(Counter({"a": 1})) == 1.0  # one harmful value seen once: no pattern
    assert unseen_harm(Counter({"Fred": 18})) == 0.0
    assert unseen_harm(Counter({"a": 3, "b": 1})) == 0.25


def test_a_tuned_rule_says_what_changed(sample_tuning) -> None:
    """A narrowed or re-thresholded rule's reason names its new condition, not only the old reason."""
    base = {r.id: r.reason for r in load_policy(POLICIES / "sample-naive.yaml").rules}
    tuned = {r.id: r for r in sample_tuning.policy.rules}
    changed = [c for c in sample_tuning.changes if c.kept and c.kind in ("threshold", "narrow")]
    assert changed
    for c in changed:
        reason = tuned[c.rule].reason
        assert reason != base[c.rule] and reason.endswith(f"; was: {base[c.rule]}"), reason
        if c.kind == "threshold":
            assert c.summary.rsplit("-> ", 1)[1] in reason and "tuned from" in reason
        else:
            assert reason.startswith("Narrowed by tuning to")


def test_the_report_shows_the_last_tunings_frontier(sample: Path, tmp_path: Path) -> None:
    """`gatekit tune` keeps its record in the store; `gatekit report` shows it in text, JSON and HTML (the
    frontier chart), and a store never tuned has no tuning section."""
    import json
    import shutil

    from click.testing import CliRunner

    from gatekit.cli import cli
    from gatekit.run import last_tuning

    db = tmp_path / "s.duckdb"
    shutil.copy(sample, db)
    with Store(db) as store:
        replay(store, load_policy(POLICIES / "sample-naive.yaml"), "naive")
        assert last_tuning(store) is None
    runner = CliRunner()
    before = runner.invoke(cli, ["report", "--db", str(db), "--run", "naive", "--json"])
    assert before.exit_code == 0, before.output
    assert "tuning" not in json.loads(before.stdout)
    out = tmp_path / "t.yaml"
    tuned = runner.invoke(cli, ["tune", "--db", str(db), "--policy", str(POLICIES / "sample-naive.yaml"),
                                "--out", str(out), "--json"])
    assert tuned.exit_code == 0, tuned.output
    told = json.loads(tuned.stdout)
    data = json.loads(runner.invoke(cli, ["report", "--db", str(db), "--run", "naive", "--json"]).stdout)
    assert data["tuning"]["frontier"] == told["frontier"] and data["tuning"]["out"] == str(out)
    text = runner.invoke(cli, ["report", "--db", str(db), "--run", "naive"]).stdout
    kept = sum(c["kept"] for c in told["changes"])
    assert f"{kept} of {len(told['changes'])} changes kept" in text and "frontier (train)" in text
    page = tmp_path / "r.html"
    assert runner.invoke(cli, ["report", "--db", str(db), "--run", "naive", "--html", str(page)]).exit_code == 0
    assert "Tuning: harm caught vs humans bothered, the candidates tried" in page.read_text()
