"""Identities: one canonical form (NFKC, then casefold), and only plain ASCII ids that cannot pose as another."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekit.enforce.identity import ID_PATTERN, canonical, check_id

FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}  # `!`..`~` -> U+FF01..U+FF5E


def test_canonical_is_nfkc_then_casefold() -> None:
    assert canonical("Ｕ-Alice") == "u-alice"
    assert canonical("STRASSE") == canonical("straße") == "strasse"
    assert canonical("\u212aelvin") == "kelvin"  # KELVIN SIGN
    assert canonical("ﬁle") == "file"  # the `fi` ligature


@pytest.mark.parametrize("name", ["alice", "Alice", "ALICE", "aLiCe", "ａｌｉｃｅ", "ＡＬＩＣＥ", "aｌiｃe"])
def test_case_and_fullwidth_forms_are_the_same_id(name: str) -> None:
    assert check_id(name) == "alice"


@pytest.mark.parametrize("name", [" alice", "alice ", "al ice", "\talice", "alice\n", "alice\r", "\u00a0alice",
                                  "alice\u3000", "al\u2003ice"])
def test_whitespace_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        check_id(name)


@pytest.mark.parametrize("name", ["al\u200bice", "\u200balice", "alice\u200b", "al\u200cice", "al\u200dice",
                                  "al\u2060ice", "\ufeffalice", "al\u00adice", "alice\u0000", "al\u202eice"])
def test_invisible_characters_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        check_id(name)


@pytest.mark.parametrize("name", [
    "m\u0430llory",   # Cyrillic a
    "\u0410lice",     # Cyrillic capital A (casefolds to Cyrillic a, not to `a`)
    "b\u03bfb",       # Greek omicron
    "\u0391lice",     # Greek capital alpha
    "ali\u0441e",     # Cyrillic es
    "\u0130nfra",     # Turkish dotted capital I (casefolds to `i` + a combining dot)
    "alic\u00e9",     # accented Latin: not plain ASCII either
    "ali\u0441\u0435",
])
def test_look_alikes_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_id(name)


def test_the_length_limit_is_on_the_canonical_form() -> None:
    assert check_id("a" * 128) == "a" * 128
    assert check_id("A" * 128) == "a" * 128
    with pytest.raises(ValueError, match="not allowed"):
        check_id("a" * 129)
    with pytest.raises(ValueError):
        check_id("\ufb03" * 43)  # 43 characters that NFKC writes as 129 (`ffi` each)
    assert check_id("\ufb03" * 42) == "ffi" * 42


@pytest.mark.parametrize("name", ["a", "0", "9lives", "a.b", "a_b", "a@b.example", "a+tag", "a-b", "x..__@@++--",
                                  "billing-bot", "u-alice@corp.example"])
def test_the_allowed_charset(name: str) -> None:
    assert check_id(name) == name


@pytest.mark.parametrize("name", [".alice", "_alice", "@alice", "+alice", "-alice", "a/b", "a:b", "a#b", "a*b",
                                  "a,b", "a'b", 'a"b', "a\\b", "a$b", "a%b", "a!b", "a=b", "a(b)", "a~b"])
def test_characters_outside_the_charset_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_id(name)


@pytest.mark.parametrize("name", [None, "", 5, b"alice", ["alice"], object()])
def test_a_non_string_or_empty_id_is_refused(name: Any) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        check_id(name)


def test_the_refusal_names_what_was_checked() -> None:
    with pytest.raises(ValueError, match="reviewer id"):
        check_id("m\u0430llory", "reviewer id")


@given(st.text(max_size=140) | st.from_regex(r"[A-Za-z0-9ａ-ｚＡ-Ｚ０-９._@+\-]{1,130}", fullmatch=True))
def test_check_id_returns_a_plain_ascii_id_or_refuses(name: str) -> None:
    try:
        folded = check_id(name)
    except ValueError:
        assert name == "" or ID_PATTERN.fullmatch(canonical(name)) is None
        return
    assert folded.isascii() and ID_PATTERN.fullmatch(folded) is not None
    assert folded == canonical(name)
    assert check_id(folded) == folded


@given(st.from_regex(ID_PATTERN, fullmatch=True), st.data())
def test_any_case_or_fullwidth_spelling_of_an_id_is_that_id(name: str, data: st.DataObject) -> None:
    spelled = "".join(data.draw(st.sampled_from([c, c.upper(), FULLWIDTH.get(c, c), FULLWIDTH.get(c.upper(), c)]))
                      for c in name)
    assert check_id(spelled) == check_id(name) == name


@given(st.from_regex(ID_PATTERN, fullmatch=True), st.data())
def test_an_id_with_a_look_alike_or_invisible_character_inserted_is_refused(name: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(name)))
    odd = data.draw(st.sampled_from(["\u200b", "\u200d", "\u2060", "\ufeff", " ", "\u0430", "\u043e", "\u0435",
                                     "\u03bf", "\u0391", "\u0456"]))
    with pytest.raises(ValueError):
        check_id(name[:at] + odd + name[at:])
