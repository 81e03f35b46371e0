"""Identities as the approvals service compares them: one canonical form, and only ids that cannot pose.

`canonical(id)` is NFKC then casefold. The registry keeps ids whose canonical form is plain lowercase
ASCII (`[a-z0-9][a-z0-9._@+-]*`, at most 128 characters): so `Mallory`, ` mallory`, `ｍａｌｌｏｒｙ` and a
zero-width space all compare equal to `mallory` or are refused, and a Cyrillic look-alike (`mаllory`)
cannot be registered or named as a call's user at all. Refusing is the only sound answer to confusables:
no folding table is complete.

>>> canonical("Ｕ-Alice")
'u-alice'
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ID_PATTERN", "KINDS", "canonical", "check_id", "visible"]

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,127}")
KINDS = ("reviewer", "agent", "executor")


def canonical(name: str) -> str:
    """NFKC, then casefold: the form identities are compared in."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_id(name: object, what: str = "an id") -> str:
    """The canonical id, or `ValueError` saying why `name` cannot be one."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    folded = canonical(name)
    if ID_PATTERN.fullmatch(folded) is None:
        raise ValueError(f"{what} `{name!r}` is not allowed: use letters a-z, digits and `._@+-` "
                         "(no spaces, no look-alike or invisible characters), at most 128")
    return folded


def visible(text: str) -> str:
    """`text` with every character a reader cannot see as itself (controls, bidi overrides, zero-width and
    other format characters, unassigned code points) written as a JSON `\\uXXXX` escape, for showing to
    reviewers: `"\\u202eEMCA"` must not look like `ACME`, nor an escape sequence rewrite a terminal. Newlines
    stay; JSON text stays JSON that reads back the same."""
    return "".join(c if c.isprintable() or c == "\n" else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"  # JSON's surrogate pair
