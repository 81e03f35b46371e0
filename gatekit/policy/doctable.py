"""`python -m gatekit.policy.doctable [PATH]`: rewrite the semantics table of docs/policy.md (or PATH)
from gatekit/policy/semantics.py, the one place the table is written."""

from __future__ import annotations

import sys
from pathlib import Path

from gatekit.policy.semantics import splice

__all__ = ["main"]


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/policy.md")
    path.write_text(splice(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
