"""The action catalog of the sample logs, its YAML (tags kept across regeneration) and `validate --catalog`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.authoring import build_catalog, catalog_warnings, dump_catalog, load_catalog
from gatekit.authoring.catalog import kind_of, parse_catalog
from gatekit.errors import InputError
from gatekit.logs.ingest import ingest
from gatekit.logs.store import Store
from gatekit.policy import decide, load_policy, parse_policy
from gatekit.policy.compile import number_sql
from gatekit.policy.conditions import Field
from gatekit.replay import replay
from gatekit.run import load_run

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "policies" / "starter.yaml"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "sample.duckdb"
    with Store(path) as store:
        ingest(store, sorted((REPO / "sample_logs").glob("*.jsonl")))
        replay(store, load_policy(STARTER), "starter")
    return path


@pytest.fixture(scope="module")
def catalog(sample_store: Path):
    with Store(sample_store, read_only=True) as store:
        return build_catalog(store, run=load_run(store, "starter"))


@pytest.fixture(scope="module")
def catalog_file(catalog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog-file") / "catalog.yaml"
    dump_catalog(catalog, path)
    return path


def test_the_tools_and_counts_are_those_of_the_store(sample_store: Path, catalog) -> None:
    with Store(sample_store, read_only=True) as store:
        tools = dict(store.con.execute("SELECT tool, count(*) FROM actions GROUP BY tool").fetchall())
        total = store.count_actions()
    assert set(catalog.tools) == set(tools)
    assert {t: e.calls for t, e in catalog.tools.items()} == tools
    assert sum(e.calls for e in catalog.tools.values()) == catalog.actions == total


def test_a_numeric_path_has_the_range_the_policy_reads(sample_store: Path, catalog) -> None:
    """`args.amount` of `payment.send`: its min and max are those of the number the compiled policy reads."""
    amount = catalog.tools["payment.send"].paths["args.amount"]
    with Store(sample_store, read_only=True) as store:
        reads = number_sql(Field.parse("args.amount"), load_policy(STARTER))
        lo, hi, n, present = store.con.execute(
            f"SELECT min({reads}), max({reads}), count({reads}), "
            "count(*) FILTER (json_extract(args, '/amount') IS NOT NULL) "
            "FROM actions WHERE tool = 'payment.send'").fetchall()[0]
    assert amount.types["number"] > 0 and amount.types["number"] == max(amount.types.values())
    assert (amount.min, amount.max) == (lo, hi)
    assert amount.types["number"] + amount.types.get("numeric string", 0) == n
    assert amount.present == present


def test_decisions_per_tool_sum_to_the_run(sample_store: Path, catalog) -> None:
    with Store(sample_store, read_only=True) as store:
        run = load_run(store, "starter")
        in_memory = build_catalog(store, policy=load_policy(STARTER))
        totals = run.decisions
    for decision in ("allow", "escalate", "deny"):
        assert sum(t.decisions[decision] for t in catalog.tools.values()) == totals[decision]
    assert {t: e.decisions for t, e in in_memory.tools.items()} == {t: e.decisions for t, e in catalog.tools.items()}


def test_rules_read_flags_follow_the_starter_policy(catalog) -> None:
    pay = catalog.tools["payment.send"]
    assert {"payments-over-100", "payments-over-10k", "payments-hourly-total"} <= set(pay.paths["args.amount"].read_by)
    assert "payments-unusual-currency" in pay.paths["args.currency"].read_by
    assert pay.paths["context.env"].read_by == []  # no payment rule looks at the environment
    assert "payments-over-100" in pay.rules and "low-reads" not in pay.rules
    assert "low-reads" in catalog.tools["crm.lookup"].rules


def test_without_a_policy_nothing_is_marked(sample_store: Path) -> None:
    with Store(sample_store, read_only=True) as store:
        bare = build_catalog(store)
    pay = bare.tools["payment.send"]
    assert pay.rules is None and pay.decisions is None and pay.paths["args.amount"].read_by is None
    assert "read_by" not in json.dumps(bare.to_dict())


def test_tags_and_notes_survive_regeneration(catalog, catalog_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    text = catalog_file.read_text()
    assert text.startswith("# gatekit action catalog")
    start = text.index("  payment.send:")
    edited = text[:start] + text[start:].replace(
        "tags: {impact: null, data_sensitivity: null, reversibility: null}\n    notes:\n",
        "tags: {impact: high, data_sensitivity: confidential, reversibility: irreversible}\n"
        "    notes: money leaves the company\n", 1)
    assert edited != text
    # a tool that is no longer logged, tagged by hand: it must not be dropped
    edited = edited.replace("tools:\n", "tools:\n  fax.send:\n    tags: {impact: low}\n    calls: 3\n"
                            "    last_seen: '2025-01-01T00:00:00+00:00'\n    paths: {}\n", 1)
    path.write_text(edited)
    again = catalog.merge_tags(load_catalog(path))
    dump_catalog(again, path)
    kept = load_catalog(path)
    assert kept.tools["payment.send"].tags == {"impact": "high", "data_sensitivity": "confidential",
                                               "reversibility": "irreversible"}
    assert kept.tools["payment.send"].notes == "money leaves the company"
    assert "fax.send" not in kept.tools
    assert kept.retired["fax.send"]["tags"]["impact"] == "low"
    assert kept.retired["fax.send"]["last_seen"] == "2025-01-01T00:00:00+00:00"
    # and a third generation still keeps both
    third = load_catalog(path)
    assert catalog.merge_tags(third).retired == kept.retired
    assert catalog.merge_tags(third).tools["payment.send"].notes == "money leaves the company"


def test_a_retired_tool_logged_again_gets_its_tags_back(catalog) -> None:
    old = parse_catalog("catalog: 1\ntools: {}\nretired:\n  payment.send:\n    tags: {impact: high}\n"
                        "    notes: back\n")
    again = catalog.merge_tags(old)
    assert again.tools["payment.send"].tags["impact"] == "high" and again.tools["payment.send"].notes == "back"
    assert "payment.send" not in again.retired


def test_a_bad_tag_is_refused_at_its_line() -> None:
    text = "catalog: 1\ntools:\n  payment.send:\n    calls: 1\n    tags:\n      impact: huge\n      colour: red\n"
    with pytest.raises(InputError) as exc:
        parse_catalog(text, "c.yaml")
    message = str(exc.value)
    assert "c.yaml:6: tag `impact` cannot be `huge`" in message
    assert "c.yaml:7: unknown tag `colour`" in message


def test_bad_yaml_is_refused_at_its_line() -> None:
    with pytest.raises(InputError, match=r"c\.yaml:2: invalid YAML: mapping values are not allowed"):
        parse_catalog("catalog: 1\ntools: a: b\n", "c.yaml")


TYPO = """\
version: 1
name: pay
default: allow
tiers:
  standard: {approvals: 1, timeout: 4h}
rules:
  - id: big-payments
    tool: payment.send
    action: escalate
    tier: standard
    when:
      args.amout: {gt: 1000}
"""


def test_the_typo_of_the_issue_is_named_at_its_line(catalog_file: Path, tmp_path: Path, gatekit_cli) -> None:
    """#17: `args.amout` passed validation, and a $5,000 payment was then allowed."""
    policy_path = tmp_path / "pay.yaml"
    policy_path.write_text(TYPO)
    policy = load_policy(policy_path)
    assert decide(policy, {"tool": "payment.send", "args": {"amount": 5000}}).decision == "allow"
    code, out, _ = gatekit_cli("validate", policy_path)
    assert code == 0 and out == ""  # validation alone cannot see it
    code, out, err = gatekit_cli("validate", "--catalog", catalog_file, policy_path)
    assert code == 0, err
    assert out == (f"{policy_path}:12: warning: rule `big-payments` reads `args.amout`, which no logged call of "
                   "`payment.send` has\n")
    assert "1 warning" in err
    code, out, _ = gatekit_cli("validate", "--catalog", catalog_file, policy_path, "--json")
    data = json.loads(out)
    assert code == 0 and data["valid"] and data["problems"] == []
    assert [(w["line"], w["code"]) for w in data["warnings"]] == [(12, "catalog")]
    assert "`args.amout`" in data["warnings"][0]["message"]


def test_type_mismatches_and_unknown_tools_are_warned(catalog) -> None:
    policy = parse_policy("""\
version: 1
name: mixed
rules:
  - id: currency-order
    tool: payment.send
    action: escalate
    when: {args.currency: {gt: 5}}
  - id: amount-names
    tool: payment.send
    action: escalate
    when: {args.amount: {in: [true, false]}}
  - id: ghost
    tool: [paymnet.*, email.send]
    action: deny
  - id: fine
    tool: payment.*
    action: escalate
    when: {args.amount: {gt: 100}, args.currency: {in: [USD]}}
""", "mixed.yaml")
    warnings = [(w.line, w.msg) for w in catalog_warnings(policy, catalog)]
    assert warnings[0][0] == 7 and "`args.currency` with `gt` on a number" in warnings[0][1]
    assert warnings[1][0] == 11 and "`args.amount` with `in` on bool, but" in warnings[1][1]
    assert warnings[2] == (12, "rule `ghost` names tool `paymnet.*`, which never appears in the catalog")
    assert len(warnings) == 3  # a glob that matches (`payment.*`, `email.send`) and fitting tests: no warning


def test_the_starter_policy_has_no_warnings_against_its_logs(catalog) -> None:
    assert [str(w) for w in catalog_warnings(load_policy(STARTER), catalog)] == []


def test_the_cli_writes_and_prints_the_same_catalog(sample_store: Path, tmp_path: Path, gatekit_cli) -> None:
    out = tmp_path / "c.yaml"
    code, printed, err = gatekit_cli("catalog", "--db", sample_store, "--run", "starter", "--out", out, "--json")
    assert code == 0, err
    data = json.loads(printed)
    assert data == load_catalog(out).to_dict() | {"tools": data["tools"]}  # the file holds what --json prints
    assert set(load_catalog(out).tools) == set(data["tools"])
    assert data["tools"]["payment.send"]["paths"]["args.amount"]["types"]["number"] > 0
    code, printed, _ = gatekit_cli("catalog", "--db", sample_store, "--quiet")
    assert code == 0 and printed.startswith("# gatekit action catalog")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6))
def test_a_numeric_kind_is_exactly_what_an_ordering_test_reads(value) -> None:
    """A present value is `number` or `numeric string` exactly when the policy's `gt` test reads it without an
    error (decide reads it the same way; null counts as missing there, never an error)."""
    d = decide(parse_policy("version: 1\nname: k\nrules: [{id: r, tool: t, action: deny, when: {args.v: {gt: 0}}}]"),
               {"tool": "t", "args": {"v": value}})
    assert (kind_of(value) in ("number", "numeric string", "null")) == (not d.errors)
