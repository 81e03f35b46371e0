"""Loading policies: every mistake reported at its line, the starter policies load, parsing is stable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given

from gatekit.errors import GatekitError, PolicyError
from gatekit.policy import load_policy, parse_policy
from gatekit.policy.schema import json_schema

from .test_agreement import policy_dicts, to_policy

DATA = Path(__file__).parent / "data"
POLICIES = Path(__file__).resolve().parents[2] / "policies"

# (line, code, fragments the message must contain) for every mistake in data/broken.yaml: the lines marked
# `# !` there. User input is quoted in backticks.
BROKEN = {
    (4, "extra_forbidden", ("unknown key `colour`",)),
    (5, "literal_error", ("`default`", "`maybe`")),
    (6, "literal_error", ("`on_error`", "`allow`")),
    (7, "timezone", ("`Mars/Olympus`",)),
    (11, "duration", ("`4 hours`",)),
    (12, "extra_forbidden", ("unknown key `colour`",)),
    (15, "tier", ("`heavy`", "roles")),
    (16, "duration", ("`-5m`",)),
    (21, "tier", ("unknown tier `missing-tier`",)),
    (22, "extra_forbidden", ("unknown key `priority`",)),
    (26, "tier", ("escalate", "`deny`")),
    (27, "duplicate", ("duplicate rule id `r1`", "line 18")),
    (28, "glob", ("`x[z-a]`",)),
    (34, "regex", ("`(?=a)`",)),
    (35, "field", ("unknown field `payload.x`",)),
    (36, "test", ("unknown test `near`",)),
    (37, "operand", ("`args.b`", "number", "`ten`")),
    (38, "operand", ("`args.c`", "`null`")),
    (39, "operand", ("`args.d`", "finite")),
    (40, "operand", ("`args.e`", "list", "`5`")),
    (41, "operand", ("`args.f`", "true or false", "`yes`")),
    (42, "window", ("per", "`planet`")),
    (47, "duration", ("`soon`",)),
    (48, "window", ("`sum` needs `field`",)),
    (53, "window", ("gt or gte",)),
    (54, "operand", ("`funday`", "weekday")),
    (55, "operand", ("`time.hour`", "0-23")),
    (56, "string_pattern_mismatch", ("`bad id!`",)),
    (58, "literal_error", ("`nope`",)),
    (59, "literal_error", ("`sometimes`",)),
    (61, "tool", ("`tool` needs at least one",)),
    (63, "when", ("`all` needs a non-empty list",)),
    (68, "operand", ("`args.g`", "contains")),
    (69, "operand", ("`args.h`", "string", "`5`")),
    (70, "operand", ("`args.i`", "finite")),
    (71, "window", ("`sum` needs `field`",)),
    (71, "duration", ("`0s`",)),
    (71, "window", ("unknown key `extra`",)),
    (72, "operand", ("`args.j`", "`null`")),
    (73, "operand", ("`args.k`", "finite")),
    (74, "field", ("unknown field `args.`",)),
}


def _refused(path: Path) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert isinstance(info.value, GatekitError)
    return info.value


def test_the_marked_lines_are_the_mistakes() -> None:
    text = (DATA / "broken.yaml").read_text(encoding="utf-8")
    marked = {i for i, line in enumerate(text.splitlines(), 1)
              if "# !" in line and not line.lstrip().startswith("#")}
    assert marked == {line for line, _, _ in BROKEN}


def test_every_mistake_is_reported_at_its_line() -> None:
    problems = _refused(DATA / "broken.yaml").problems
    got = {(p.line, p.code) for p in problems}
    want = {(line, code) for line, code, _ in BROKEN}
    assert got >= want, f"missing: {sorted(want - got)}"
    assert got <= want, f"unexpected: {sorted(got - want)}"
    assert len(problems) == len(BROKEN), "one problem per mistake"


@pytest.mark.parametrize("line,code,fragments", sorted(BROKEN), ids=[f"{l}-{c}" for l, c, _ in sorted(BROKEN)])
def test_each_message_names_the_mistake(line: int, code: str, fragments: tuple[str, ...]) -> None:
    problems = [p for p in _refused(DATA / "broken.yaml").problems if (p.line, p.code) == (line, code)]
    assert any(all(f in p.msg for f in fragments) for p in problems), (
        f"line {line} ({code}): no message has all of {fragments}: {[p.msg for p in problems]}")


def test_messages_are_lowercase_without_a_final_period() -> None:
    for p in _refused(DATA / "broken.yaml").problems:
        assert p.msg[0].islower() or p.msg[0] == "`", p.msg
        assert not p.msg.endswith("."), p.msg
        assert str(p).startswith(f"{DATA / 'broken.yaml'}:{p.line}: "), str(p)


def test_the_error_text_lists_every_problem() -> None:
    error = _refused(DATA / "broken.yaml")
    assert len(str(error).splitlines()) == len(error.problems)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\nrules:\n  - id: a\n    tool: [b\n    action: allow\n", encoding="utf-8")
    problems = _refused(path).problems
    assert len(problems) == 1
    assert problems[0].code == "yaml"
    assert problems[0].file == str(path)
    assert problems[0].line in (5, 6, 7), problems[0]  # where the parser notices the unclosed `[`


def test_tab_indentation_is_a_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text("version: 1\nname: x\nrules:\n\t- id: a\n", encoding="utf-8")
    problems = _refused(path).problems
    assert [(p.line, p.code) for p in problems] == [(4, "yaml")]


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- version: 1\n", encoding="utf-8")
    assert _refused(path).problems[0].line == 1


def test_missing_required_keys(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("rules: []\n", encoding="utf-8")
    msgs = " ".join(p.msg for p in _refused(path).problems)
    assert "`version`" in msgs and "`name`" in msgs


def test_missing_file(tmp_path: Path) -> None:
    problems = _refused(tmp_path / "nope.yaml").problems
    assert len(problems) == 1 and problems[0].file == str(tmp_path / "nope.yaml")


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    _refused(tmp_path)


def test_rule_ids_may_use_the_documented_characters() -> None:
    policy = parse_policy("version: 1\nname: ids\nrules:\n  - {id: team/a_b.c:d@e-1, tool: t, action: allow}\n")
    assert policy.rules[0].id == "team/a_b.c:d@e-1"


def test_durations_and_defaults() -> None:
    policy = parse_policy("""
version: 1
name: d
tiers:
  a: {timeout: 1h30m, approval_ttl: 90}
  b: {approvals: 2, roles: [x, y], timeout: 500ms}
rules:
  - {id: r, tool: t, action: escalate, tier: a, when: {rate: {window: 2w, gt: 1}}}
""")
    assert policy.default == "allow" and policy.on_error == "escalate" and policy.timezone == "UTC"
    assert policy.tiers["a"].timeout_us == 90 * 60 * 10**6 and policy.tiers["a"].approval_ttl_us == 90 * 10**6
    assert policy.tiers["b"].timeout_us == 500_000 and policy.tiers["b"].roles == ("x", "y")
    assert policy.rules[0].when.window_us == 14 * 86400 * 10**6


# ---- starter policies ----------------------------------------------------------------------------------
STARTERS = sorted(POLICIES.glob("*.yaml")) if POLICIES.is_dir() else []


@pytest.mark.skipif(not STARTERS, reason="no starter policies in policies/ yet")
@pytest.mark.parametrize("path", STARTERS, ids=[p.name for p in STARTERS])
def test_starter_policy_loads(path: Path) -> None:
    policy = load_policy(path)
    assert policy.rules, f"{path.name} has no rules"
    ids = [r.id for r in policy.rules]
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(not STARTERS, reason="no starter policies in policies/ yet")
@pytest.mark.parametrize("path", STARTERS, ids=[p.name for p in STARTERS])
def test_starter_policy_matches_the_json_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    doc = json.loads(json.dumps(doc, default=str))  # YAML dates and the like as JSON sees them
    jsonschema.validate(doc, json_schema())


def test_json_schema_is_json() -> None:
    schema = json_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$defs"]["When"]["additionalProperties"] is False


# ---- parsing is a function of the text -----------------------------------------------------------------
@given(doc=policy_dicts())
def test_parsing_twice_gives_equal_policies(doc: dict) -> None:
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    first, second = parse_policy(text), parse_policy(text)
    assert first.rules == second.rules
    assert first == second
    assert first.fingerprint == second.fingerprint


@given(doc=policy_dicts())
def test_json_and_block_yaml_of_one_policy_parse_alike(doc: dict) -> None:
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    buffer = StringIO()
    yaml.dump(json.loads(json.dumps(doc)), buffer)
    as_yaml = parse_policy(buffer.getvalue())
    as_json = to_policy(doc)
    strip = [re.sub(r"line=\d+", "", repr(r)) for r in as_yaml.rules]
    assert strip == [re.sub(r"line=\d+", "", repr(r)) for r in as_json.rules]
    assert (as_yaml.tiers, as_yaml.default, as_yaml.on_error, as_yaml.timezone) == (
        as_json.tiers, as_json.default, as_json.on_error, as_json.timezone)
