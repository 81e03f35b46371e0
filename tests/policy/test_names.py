"""Tool-name variants: a call whose tool differs from a rule's pattern only by case or Unicode form.

The law (the module's definition): `tool` is a variant of a rule when its folded form (NFKC, then casefold)
matches the rule's folded patterns while the name as written does not match the rule. An oracle written
with `fnmatch` on the same definition checks `variant_of` on random policies.
"""

from __future__ import annotations

import fnmatch
import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit import Policy, parse_policy
from gatekit.policy.names import Variants, variant_of, variants

FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def policy_of(*rules: Any) -> Policy:
    """A policy with one deny rule per entry (a pattern or a list of patterns)."""
    return parse_policy(json.dumps({"version": 1, "name": "names", "default": "allow",
                                    "rules": [{"id": f"r{i}", "tool": tools, "action": "deny"}
                                              for i, tools in enumerate(rules)]}))


POLICY = policy_of("payment.send", "db.*", ["files.read", "files.?rite"], "ops.[ab]")


@pytest.mark.parametrize(("tool", "variant"), [
    ("Payment.Send", "payment.send"),
    ("PAYMENT.SEND", "payment.send"),
    ("payment.Send", "payment.send"),
    ("ｐａｙｍｅｎｔ.ｓｅｎｄ", "payment.send"),   # fullwidth
    ("payment．send", "payment.send"),           # a fullwidth full stop
    ("payment.\uff33end", "payment.send"),       # FULLWIDTH LATIN CAPITAL S
    ("DB.drop", "db.*"),
    ("Db.anything.at.all", "db.*"),
    ("ｄｂ.drop", "db.*"),
    ("Files.Read", "files.read"),
    ("FILES.WRITE", "files.?rite"),
    ("Files.write", "files.?rite"),
    ("OPS.A", "ops.[ab]"),
])
def test_a_case_or_unicode_variant_names_the_pattern_it_imitates(tool: str, variant: str) -> None:
    assert variant_of(POLICY, tool) == variant


@pytest.mark.parametrize("tool", ["payment.send", "db.drop", "db.", "files.read", "files.write", "files.xrite",
                                  "ops.a", "ops.b", "files.Write", "email.send", "payment.sendx", "payment.send ", " payment.send",
                                  "payment", "", "ops.c", "OPS.C", "payment\u200b.send", "p\u0430yment.send",
                                  "Email.Send", "dbx.drop"])
def test_an_exact_match_or_an_unrelated_tool_is_not_a_variant(tool: str) -> None:
    assert variant_of(POLICY, tool) is None


def test_a_policy_written_in_uppercase_is_matched_as_written() -> None:
    upper = policy_of("Payment.Send", "DB.*")
    assert variant_of(upper, "Payment.Send") is None
    assert variant_of(upper, "DB.drop") is None
    assert variant_of(upper, "payment.send") == "Payment.Send"  # the folded spelling is the variant here
    assert variant_of(upper, "PAYMENT.SEND") == "Payment.Send"
    assert variant_of(upper, "db.drop") == "DB.*"
    assert variant_of(upper, "email.send") is None


def test_matching_one_rule_does_not_excuse_imitating_another() -> None:
    # `Payment.Send` runs under the catch-all, but a loose dispatcher would run `payment.send`, which the
    # second rule denies: it is a variant although it matches a rule exactly
    policy = policy_of("*", "payment.send")
    assert variant_of(policy, "Payment.Send") == "payment.send"
    assert variant_of(policy, "payment.send") is None
    assert variant_of(policy, "Anything.Else") is None


def test_the_check_is_built_once_per_policy() -> None:
    policy = policy_of("payment.send")
    assert variants(policy) is variants(policy)
    assert isinstance(variants(policy), Variants)
    assert variants(policy_of("payment.send")) is not variants(policy)


# ---- properties ----------------------------------------------------------------------------------------
def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def oracle(rules: list[list[str]], tool: str) -> bool:
    """The definition, with fnmatch: some rule's folded patterns match the folded tool, the tool not the rule."""
    return any(any(fnmatch.fnmatchcase(fold(tool), fold(p)) for p in patterns)
               and not any(fnmatch.fnmatchcase(tool, p) for p in patterns) for patterns in rules)


names = st.text("abAB.", min_size=1, max_size=6)
patterns = st.text("abAB.*?", min_size=1, max_size=6)
rule_lists = st.lists(st.lists(patterns, min_size=1, max_size=2), min_size=1, max_size=4)


def filled(pattern: str, fill: str) -> str:
    """A name the glob matches as written: `*` becomes `fill`, `?` its first character."""
    return pattern.replace("*", fill).replace("?", fill[0])


def respell(name: str, data: st.DataObject) -> str:
    return "".join(data.draw(st.sampled_from([c, c.upper(), c.lower(), FULLWIDTH.get(c, c)])) for c in name)


@given(rule_lists, st.data())
def test_variant_of_agrees_with_the_definition(rules: list[list[str]], data: st.DataObject) -> None:
    policy = policy_of(*rules)
    literal = data.draw(st.sampled_from([p for ps in rules for p in ps]))
    tool = data.draw(st.sampled_from([literal, filled(literal, "ab.")]) | names)
    if data.draw(st.booleans()):
        tool = respell(tool, data)
    found = variant_of(policy, tool)
    assert (found is not None) == oracle(rules, tool)
    if found is not None:
        assert any(found in patterns and fnmatch.fnmatchcase(fold(tool), fold(found)) for patterns in rules)


@given(patterns, st.data())
def test_a_tool_that_matches_the_rule_exactly_is_never_a_variant(pattern: str, data: st.DataObject) -> None:
    # (of a one-rule policy: with several rules, matching one does not excuse imitating another, above)
    fill = data.draw(st.text("abAB.ＡßİK\u212a", min_size=1, max_size=4))
    tool = filled(pattern, fill)
    assert fnmatch.fnmatchcase(tool, pattern)
    assert variant_of(policy_of(pattern), tool) is None


@given(st.lists(patterns.map(fold), min_size=1, max_size=4), names.map(fold))
def test_when_tool_and_patterns_are_already_folded_nothing_is_a_variant(folded: list[str], tool: str) -> None:
    assert variant_of(policy_of(*folded), tool) is None
    for pattern in folded:
        assert variant_of(policy_of(*folded), pattern) is None


@given(st.from_regex(r"[a-z][a-z0-9_.]{0,15}", fullmatch=True), st.data())
def test_any_respelling_of_a_tool_name_is_caught(name: str, data: st.DataObject) -> None:
    tool = respell(name, data)
    found = variant_of(policy_of(name), tool)
    assert found == (None if tool == name else name)
