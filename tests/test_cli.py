"""The command line, run in-process as a user would type it: outputs, files and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from gatekit import cli, load_policy
from gatekit.policy.decide import decide_log

GOOD = """\
version: 1
name: pay
tiers:
  standard: {approvals: 1, timeout: 4h}
rules:
  - id: big-payment
    tool: payment.send
    action: escalate
    tier: standard
    when: {args.amount: {gt: 100}}
  - id: prod-drop
    tool: "db.drop_*"
    action: deny
    when: {context.env: prod}
"""

BAD = """\
version: 1
name: broken
colour: blue
rules:
  - id: a
    tool: payment.send
    action: escalate
    tier: gold
    when: {args.amount: {gt: lots}}
  - id: a
    tool: x
    action: maybe
"""

LOG = [
    {"action_id": "a-1", "ts": "2026-11-02T10:00:00Z", "tool": "payment.send", "agent": "bot",
     "args": {"amount": 250}},
    {"action_id": "a-2", "ts": "2026-11-02T10:01:00Z", "tool": "payment.send", "agent": "bot",
     "args": {"amount": "1,810"}},
    {"action_id": "a-3", "ts": "2026-11-02T10:02:00Z", "tool": "db.drop_table", "context": {"env": "prod"}},
    {"action_id": "a-4", "ts": "2026-11-02T10:03:00Z", "tool": "docs.search", "args": {"q": "refund policy"}},
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good, bad, log = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "log.jsonl"
    good.write_text(GOOD)
    bad.write_text(BAD)
    log.write_text("\n".join(json.dumps(r) for r in LOG) + "\n")
    return {"good": good, "bad": bad, "log": log, "db": tmp_path / "store.duckdb"}


def test_validate_lists_every_problem_at_file_line(gatekit_cli, files) -> None:
    code, out, _ = gatekit_cli("validate", files["bad"])
    assert code == cli.EXIT_POLICY
    lines = out.strip().splitlines()
    bad = files["bad"]
    assert f"{bad}:3: unknown key `colour`" in lines
    assert any(line.startswith(f"{bad}:8: unknown tier `gold`") for line in lines)
    assert any(line.startswith(f"{bad}:9: `args.amount` gt needs a number") for line in lines)
    assert any(line.startswith(f"{bad}:10: duplicate rule id `a`") for line in lines)
    assert any(line.startswith(f"{bad}:12:") and "maybe" in line for line in lines)
    assert len(lines) == 5


def test_validate_accepts_a_good_policy(gatekit_cli, files) -> None:
    code, out, err = gatekit_cli("validate", files["good"])
    assert (code, out) == (0, "")
    assert "valid" in err


def test_schema_is_json_schema_with_the_when_language(gatekit_cli) -> None:
    code, out, _ = gatekit_cli("schema")
    schema = json.loads(out)
    assert code == 0
    assert schema["$defs"]["When"]["properties"]["rate"]["required"] == ["window"]
    assert set(schema["properties"]) >= {"version", "name", "default", "on_error", "timezone", "tiers", "rules"}


def test_ingest_then_replay_writes_a_run_and_rows(gatekit_cli, files, tmp_path) -> None:
    code, out, _ = gatekit_cli("ingest", files["log"], "--db", files["db"], "--json")
    assert code == 0
    assert json.loads(out) == {"files": 1, "read": 4, "stored": 4, "quarantined": 0, "duplicates": 0, "skipped": 0}

    out_file = tmp_path / "rows.parquet"
    code, out, _ = gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "first",
                       "--out", out_file, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["decisions"] == {"allow": 1, "escalate": 2, "deny": 1}
    rows = duckdb.sql(f"SELECT action_id, decision, rules, errors, tier FROM '{out_file}' ORDER BY seq").fetchall()
    assert rows == [
        ("a-1", "escalate", ["big-payment"], [], "standard"),
        ("a-2", "escalate", [], ["big-payment"], None),
        ("a-3", "deny", ["prod-drop"], [], None),
        ("a-4", "allow", [], [], None),
    ]
    # the stored run agrees with the scalar evaluator on the same actions
    expected = [(d.decision, list(d.rules), list(d.errors), d.tier)
                for d in decide_log(load_policy(files["good"]), LOG)]
    assert [r[1:] for r in rows] == expected


def test_replay_jsonl_out_and_text_summary(gatekit_cli, files, tmp_path) -> None:
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    out_file = tmp_path / "rows.jsonl"
    code, out, _ = gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--out", out_file)
    assert code == 0
    assert "escalate" in out and "50.0%" in out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["decision"] for r in rows] == ["escalate", "escalate", "deny", "allow"]
    assert set(rows[0]) >= {"action_id", "decision", "rules", "errors", "tier"}


def test_reingest_adds_nothing(gatekit_cli, files) -> None:
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    code, out, _ = gatekit_cli("ingest", files["log"], "--db", files["db"], "--json")
    assert json.loads(out)["duplicates"] == 4 and json.loads(out)["stored"] == 0


def test_run_names_are_not_silently_overwritten(gatekit_cli, files) -> None:
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    assert gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "r1")[0] == 0
    code, _, err = gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "r1")
    assert code == cli.EXIT_STORE and "already exists" in err
    assert gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "r1", "--replace")[0] == 0
    code, out, _ = gatekit_cli("runs", "--db", files["db"], "--json")
    assert [r["name"] for r in json.loads(out)["runs"]] == ["r1"]


def test_replay_refuses_an_invalid_policy_and_a_missing_store(gatekit_cli, files) -> None:
    code, _, err = gatekit_cli("replay", "--db", files["db"], "--policy", files["bad"])
    assert code == cli.EXIT_POLICY and f"{files['bad']}:3:" in err
    code, _, err = gatekit_cli("runs", "--db", files["db"].with_name("nope.duckdb"))
    assert code == cli.EXIT_STORE and "no store" in err


def test_decide_one_action(gatekit_cli, files) -> None:
    code, out, _ = gatekit_cli("decide", "--policy", files["good"], '{"tool": "payment.send", "args": {"amount": 250}}')
    assert code == 0
    assert json.loads(out)["decision"] == "escalate" and json.loads(out)["tier"] == "standard"
    code, _, err = gatekit_cli("decide", "--policy", files["good"], "not json")
    assert code == cli.EXIT_LOGS and "not valid JSON" in err


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in cli.cli.commands:
        assert f"gatekit {name}" in readme, f"`gatekit {name}` is not in README.md"


def test_diff_text_says_what_changed_with_before_and_after(gatekit_cli, files, tmp_path) -> None:
    """A change of `default` and of a tier's approvals are named as such, with both values (issue 15, 16)."""
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(GOOD.replace("name: pay", "name: pay\ndefault: escalate")
                        .replace("{approvals: 1, timeout: 4h}", "{approvals: 2, timeout: 4h}"))
    code, out, _ = gatekit_cli("diff", "--db", files["db"], "--policy", files["good"], "--policy", stricter)
    assert code == 0
    assert '  changed: policy `default`: "allow" -> "escalate"' in out.splitlines()
    assert "  changed: tier `standard` `approvals`: 1 -> 2" in out.splitlines()
    assert "rule `policy`" not in out and "rule `standard`" not in out
    # the one action that moves (docs.search, allowed by default in A) is shown with an example id
    assert "  allow -> escalate: 1; e.g. a-4" in out.splitlines()
    code, out, _ = gatekit_cli("diff", "--db", files["db"], "--policy", files["good"], "--policy", files["good"])
    assert "the two policy files mean the same" in out and "changed cells" not in out


def test_diff_text_names_the_rules_behind_a_cell(gatekit_cli, files, tmp_path) -> None:
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    wider = tmp_path / "wider.yaml"
    wider.write_text(GOOD + "  - id: search\n    tool: docs.search\n    action: deny\n")
    code, out, _ = gatekit_cli("diff", "--db", files["db"], "--policy", files["good"], "--policy", wider)
    assert code == 0 and "  allow -> deny: 1 (B adds `search`); e.g. a-4" in out.splitlines()
    assert any(line.startswith("  added: rule `search`: ") and '"action": "deny"' in line for line in out.splitlines())


def test_evaluate_text_shows_missed_and_says_how_many_rules_are_left_out(gatekit_cli, files, tmp_path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    rules = "".join(f"  - id: r{i:02}\n    tool: t{i}\n    action: escalate\n" for i in range(20))
    many = tmp_path / "many.yaml"
    many.write_text("version: 1\nname: many\nrules:\n" + rules)
    labelled.write_text("".join(json.dumps({"action_id": f"x-{i}", "ts": "2026-11-02T10:00:00Z", "tool": f"t{i}",
                                            "label": "harmful" if i % 2 else "benign"}) + "\n" for i in range(20)))
    gatekit_cli("ingest", labelled, "--db", files["db"], "--quiet")
    gatekit_cli("replay", "--db", files["db"], "--policy", many, "--name", "many", "--quiet")
    code, out, _ = gatekit_cli("evaluate", "--db", files["db"], "--run", "many")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("run `many`: caught 10 of 10 harmful (100.0%), missed 0; bothered 10 of 10 benign "
                        "(100.0%)")
    assert lines[-1] == "  ... 5 more rules (all of them: --json)" and len(lines) == 1 + 15 + 1


def test_replay_and_ingest_leave_no_store_behind_on_a_typo(gatekit_cli, files) -> None:
    code, _, err = gatekit_cli("replay", "--db", files["db"], "--policy", files["good"])
    assert code == cli.EXIT_STORE and "no store at" in err and not files["db"].exists()
    code, _, _ = gatekit_cli("ingest", files["log"].with_name("nope.jsonl"), "--db", files["db"])
    assert code == cli.EXIT_LOGS and not files["db"].exists()


def test_replay_checks_out_before_replaying(gatekit_cli, files, tmp_path) -> None:
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    code, _, err = gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--out", tmp_path / "x.csv")
    assert code == cli.EXIT_USAGE and "use a .parquet or .jsonl file name" in err
    assert json.loads(gatekit_cli("runs", "--db", files["db"], "--json")[1])["runs"] == []


def test_quiet_leaves_out_hints_and_json_is_unchanged(gatekit_cli, files, tmp_path) -> None:
    code, out, err = gatekit_cli("validate", files["good"], "--quiet")
    assert (code, out, err) == (0, "", "")
    out_file = tmp_path / "s.json"
    code, out, err = gatekit_cli("schema", "--out", out_file, "--quiet")
    assert (code, out, err) == (0, "", "") and json.loads(out_file.read_text())["$defs"]
    code, out, _ = gatekit_cli("schema", "--out", out_file, "--json")
    assert json.loads(out) == {"out": str(out_file)}


def test_run_defaults_to_the_only_run_and_names_them_when_there_are_several(gatekit_cli, files) -> None:
    """Issue 16 item 10: `--run` is needed only when the store holds more than one run."""
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    code, _, err = gatekit_cli("evaluate", "--db", files["db"])
    assert code == cli.EXIT_STORE and "the store has no runs" in err
    gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "only", "--quiet")
    for command in ("report", "evaluate"):
        code, out, _ = gatekit_cli(command, "--db", files["db"], "--json")
        assert code == 0, command
        named = json.loads(gatekit_cli(command, "--db", files["db"], "--run", "only", "--json")[1])
        assert json.loads(out) | {"generated_at": None} == named | {"generated_at": None}, command
    gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "other", "--quiet")
    for command in ("report", "evaluate"):
        code, _, err = gatekit_cli(command, "--db", files["db"])
        assert code == cli.EXIT_USAGE, command
        assert "error: the store holds 2 runs (`only`, `other`): pick one with `--run NAME`" in err.splitlines()


def test_runs_delete_removes_one_run_and_its_decisions(gatekit_cli, files) -> None:
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    for name in ("r1", "r2"):
        gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", name, "--quiet")
    listed = gatekit_cli("runs", "--db", files["db"], "--json")[1]
    code, out, _ = gatekit_cli("runs", "delete", "r1", "--db", files["db"])
    assert (code, out) == (0, "deleted run `r1` (policy `pay`, 4 actions)\n")
    code, out, _ = gatekit_cli("runs", "--db", files["db"], "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)["runs"]] == ["r2"]
    assert json.loads(out)["runs"] == [r for r in json.loads(listed)["runs"] if r["name"] == "r2"]
    with duckdb.connect(str(files["db"]), read_only=True) as con:
        assert con.sql("SELECT DISTINCT run FROM decisions").fetchall() == [("r2",)]
        assert con.sql("SELECT count(*) FROM actions").fetchall() == [(4,)]
    code, _, err = gatekit_cli("runs", "delete", "r1", "--db", files["db"])
    assert code == cli.EXIT_STORE and "no run `r1` in the store (runs: `r2`)" in err
    code, out, _ = gatekit_cli("runs", "--db", files["db"], "delete", "r2", "--json")  # --db before the verb
    assert code == 0 and json.loads(out)["deleted"]["name"] == "r2"
    assert gatekit_cli("runs", "--db", files["db"])[1] == "no runs yet: run `gatekit replay --db ... --policy ...`\n"


@pytest.mark.parametrize(("action", "decision", "code"), [
    ('{"tool": "docs.search"}', "allow", 0),
    ('{"tool": "payment.send", "args": {"amount": 250}}', "escalate", 10),
    ('{"tool": "db.drop_table", "context": {"env": "prod"}}', "deny", 11),
])
def test_decide_exit_code_by_decision_only_when_asked(gatekit_cli, files, action, decision, code) -> None:
    assert cli.DECISION_CODES[decision] == code
    done, out, _ = gatekit_cli("decide", "--policy", files["good"], "--exit-code", action)
    assert (done, json.loads(out)["decision"]) == (code, decision)
    done, out, _ = gatekit_cli("decide", "--policy", files["good"], action)  # without the flag: 0, as before
    assert (done, json.loads(out)["decision"]) == (0, decision)
    # an error keeps its own code with the flag
    assert gatekit_cli("decide", "--policy", files["bad"], "--exit-code", action)[0] == cli.EXIT_POLICY


def test_diff_of_two_policy_files_stores_no_run_unless_kept(gatekit_cli, files, tmp_path) -> None:
    """Issue 16 item 5: `diff --policy A --policy B` left `pay@<fingerprint>` runs that the dashboard then
    picked as its default run."""
    gatekit_cli("ingest", files["log"], "--db", files["db"], "--quiet")
    gatekit_cli("replay", "--db", files["db"], "--policy", files["good"], "--name", "mine", "--quiet")
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(GOOD.replace("name: pay", "name: stricter\ndefault: escalate"))

    def stored() -> list[str]:
        return [r["name"] for r in json.loads(gatekit_cli("runs", "--db", files["db"], "--json")[1])["runs"]]

    code, out, err = gatekit_cli("diff", "--db", files["db"], "--policy", files["good"], "--policy", stricter)
    assert code == 0 and "1 of 4 actions change decision" in out
    assert "not stored" in err and "--keep" in err
    assert stored() == ["mine"]
    code, kept, _ = gatekit_cli("diff", "--db", files["db"], "--policy", files["good"], "--policy", stricter,
                                "--keep", "--json")
    names = [json.loads(kept)["run_a"], json.loads(kept)["run_b"]]
    assert code == 0 and all("@" in n for n in names) and stored() == ["mine", *names]
    # a kept run is reused, and a later diff without --keep leaves it in place
    code, again, _ = gatekit_cli("diff", "--db", files["db"], "--policy", files["good"], "--policy", stricter,
                                 "--json")
    assert code == 0 and json.loads(again)["changed"] == json.loads(kept)["changed"] == 1
    assert stored() == ["mine", *names]
