"""What differential fuzzing found (issue 13, item 5): the loader accepts exactly what every engine runs.

Each test here failed on the code before its fix; the engine-side findings are corpus cases
(tests/cases/fuzz_*.yaml), run through decide and DuckDB by test_corpus.py.
"""

from __future__ import annotations

import json

import pytest

from gatekit.errors import PolicyError
from gatekit.policy import parse_policy


def _policy(when: str, extra: str = "") -> str:
    return f"version: 1\nname: x\n{extra}rules:\n  - id: r\n    tool: t\n    action: deny\n    when: {when}\n"


def _refused(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return info.value


# ---- 4: `(?<name>...)` runs in google-re2 but DuckDB's RE2 refuses it ----------------------------------
def test_angle_named_group_is_refused_at_its_line() -> None:
    err = _refused(_policy('{args.v: {matches: "(?<n>a)"}}'))
    [p] = err.problems
    assert (p.line, p.code) == (7, "regex") and "(?P<name>" in p.msg


def test_python_named_group_is_accepted() -> None:
    parse_policy(_policy('{args.v: {matches: "(?P<n>a)"}}'))


# ---- 2: Unicode classes differ between the RE2 builds (different Unicode versions) ---------------------
@pytest.mark.parametrize("pattern", [r"^\\p{L}+$", r"\\pL", r"\\PL", r"[\\p{Greek}x]", r"\\P{^N}"])
def test_unicode_class_is_refused_with_a_hint(pattern: str) -> None:
    err = _refused(_policy(f'{{args.v: {{matches: "{pattern}"}}}}'))
    [p] = err.problems
    assert (p.line, p.code) == (7, "regex") and "Unicode class" in p.msg and "list the characters" in p.msg


@pytest.mark.parametrize("pattern", [r"\\\\p{L}", r"[\\\\p]", r"\\Q\\p{L}\\E", r"[[:alpha:]]p", r"\\x{70}"])
def test_a_literal_p_is_not_a_unicode_class(pattern: str) -> None:
    parse_policy(_policy(f'{{args.v: {{matches: "{pattern}"}}}}'))


# ---- 5: time zone names every engine knows ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["localtime", "posixrules", "right/UTC", "posix/Europe/Paris", "Mars/Olympus"])
def test_timezone_outside_the_pinned_tzdata_is_refused(name: str) -> None:
    err = _refused(f"version: 1\nname: x\ntimezone: {name}\nrules: []\n")
    [p] = err.problems
    assert (p.line, p.code) == (3, "timezone") and f"`{name}`" in p.msg


@pytest.mark.parametrize("name", ["UTC", "Etc/UTC", "America/Vancouver", "Asia/Kolkata", "US/Pacific"])
def test_iana_timezone_is_accepted(name: str) -> None:
    assert parse_policy(f"version: 1\nname: x\ntimezone: {name}\nrules: []\n").timezone == name


# ---- 6: a JSON-escaped surrogate pair is the character it encodes ---------------------------------------
def test_json_surrogate_pair_in_a_json_policy_is_the_emoji() -> None:
    text = json.dumps({"version": 1, "name": "x", "rules": [
        {"id": "r", "tool": "t\U0001F680", "action": "deny", "when": {"args.v": "\U0001F680"}}]})
    assert "\\ud83d\\ude80" in text  # what json.dumps writes
    policy = parse_policy(text)
    assert policy.rules[0].when.operand == "\U0001F680" and policy.rules[0].tools == ("t\U0001F680",)


def test_json_surrogate_pair_in_a_yaml_double_quoted_string_is_the_emoji() -> None:
    policy = parse_policy(_policy('{args.v: {startswith: "\\ud83d\\ude80"}}'))
    assert policy.rules[0].when.operand == "\U0001F680"


def test_lone_surrogate_is_refused_at_its_line() -> None:
    err = _refused(_policy('{args.v: "\\ud83d"}'))
    [p] = err.problems
    assert p.line == 7 and "surrogate" in p.msg


# ---- 9: an unquoted YAML timestamp operand keeps its text ------------------------------------------------
@pytest.mark.parametrize("written", ["2026-01-15T10:00:00Z", "2026-01-15 10:00:00", "2026-01-15T10:00:00+05:30",
                                     "2026-01-15"])
def test_unquoted_timestamp_operand_is_kept_as_written(written: str) -> None:
    policy = parse_policy(_policy(f"{{args.at: {written}}}"))
    assert policy.rules[0].when.operand == written


def test_unquoted_timestamp_in_an_example_is_still_a_timestamp() -> None:
    text = _policy("{args.at: x}") + "examples:\n  - {tool: t, ts: 2026-01-15T10:00:00+05:30, expect: allow}\n"
    assert parse_policy(text).examples[0].action["ts"] == "2026-01-15T04:30:00Z"


# ---- 8: window lengths are bounded, so no engine's microsecond arithmetic overflows ----------------------
@pytest.mark.parametrize("window", ["15240000w", "36501d", "9999999999999999999999s"])
def test_window_longer_than_the_bound_is_refused(window: str) -> None:
    err = _refused(_policy(f"{{rate: {{window: {window}, gt: 1}}}}"))
    [p] = err.problems
    assert (p.line, p.code) == (7, "duration") and "36500d" in p.msg


def test_window_of_the_bound_is_accepted() -> None:
    parse_policy(_policy("{rate: {window: 36500d, gt: 1}}"))


# ---- 2b: (?i) case folding agrees between google-re2 and DuckDB's RE2 on every code point ----------------
def test_case_folding_agrees_between_the_re2_builds() -> None:
    """For every code point c with a case variant d (per Python's Unicode tables, both ways), `(?i)c` matches
    d in google-re2 exactly when it does in DuckDB: the builds' fold tables agree where a policy can reach."""
    import sys

    import duckdb

    from gatekit.policy.values import compile_re2

    pairs = []
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        for d in {c.lower(), c.upper(), c.title(), c.casefold()}:
            if len(d) == 1 and d != c:
                pairs.append((cp, ord(d)))
    assert len(pairs) > 2500
    py = [compile_re2("(?i)^\\x{%x}$" % a).search(chr(b)) is not None for a, b in pairs]
    con = duckdb.connect()
    con.execute("CREATE TABLE p (i INTEGER, a INTEGER, b INTEGER)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?)", [(i, a, b) for i, (a, b) in enumerate(pairs)])
    sql = [r[0] for r in con.execute(
        "SELECT regexp_full_match(chr(b), '(?i)' || chr(a)) FROM p ORDER BY i").fetchall()]
    differ = [f"U+{a:04X}/U+{b:04X}" for (a, b), x, y in zip(pairs, py, sql) if x != y]
    assert not differ, f"the RE2 builds fold these differently: {differ[:20]}"


# ---- 7: an epoch-number `ts` means epoch seconds everywhere: ingest, decide, decide_log, the CLI, the Gate ----
_TIMED = """version: 1
name: timed
rules:
  - {id: late, tool: t, action: deny, when: {time.hour: {gte: 22}}}
  - {id: burst, tool: t, action: escalate, when: {rate: {window: 10s, gte: 2}}}
"""
_AT = 1767305100  # 2026-01-01T22:05:00Z


@pytest.mark.parametrize("ts", [_AT, float(_AT), _AT + 0.25])
def test_epoch_seconds_ts_in_decide(ts: float) -> None:
    from gatekit.policy import decide
    from gatekit.policy.decide import decide_log

    policy = parse_policy(_TIMED)
    as_text = decide(policy, {"tool": "t", "ts": "2026-01-01T22:05:00Z"})
    assert decide(policy, {"tool": "t", "ts": ts}).rules == as_text.rules == ("late",)
    log = decide_log(policy, [{"tool": "t", "ts": ts}, {"tool": "t", "ts": "2026-01-01T22:05:01Z"}])
    assert [d.rules for d in log] == [("late",), ("late", "burst")]


@pytest.mark.parametrize("ts", [True, -1, 253402300800, float("nan"), "soon", [1]])
def test_a_bad_ts_is_a_clear_error_not_a_type_error(ts: object) -> None:
    from gatekit.errors import InputError
    from gatekit.policy import decide

    with pytest.raises(InputError, match="ts"):
        decide(parse_policy(_TIMED), {"tool": "t", "ts": ts})


def test_epoch_seconds_ts_in_the_cli_decide(tmp_path) -> None:
    from click.testing import CliRunner

    from gatekit.cli import cli

    path = tmp_path / "p.yaml"
    path.write_text(_TIMED)
    got = CliRunner().invoke(cli, ["decide", "--policy", str(path), json.dumps({"tool": "t", "ts": _AT})])
    assert got.exit_code == 0 and json.loads(got.output)["rules"] == ["late"], got.output
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-c", "from gatekit.cli import main; main()", "decide", "--policy",
                          str(path), json.dumps({"tool": "t", "ts": True})], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "`ts`" in bad.stderr, bad.stderr


def test_epoch_seconds_ts_in_the_gate() -> None:
    from gatekit import Gate

    gate = Gate(parse_policy(_TIMED))
    assert gate.check({"tool": "t"}, ts=_AT).rules == ("late",)


def test_epoch_seconds_ts_in_ingest_is_the_same_instant() -> None:
    from datetime import datetime, timezone

    from gatekit.action import read_ts

    assert read_ts(_AT) == read_ts("2026-01-01T22:05:00Z") == datetime(2026, 1, 1, 22, 5, tzinfo=timezone.utc)
