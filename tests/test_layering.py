"""The core import stays light: an agent pays only for what it uses (DESIGN.md, layering)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gatekit

HEAVY = ("duckdb", "polars", "streamlit", "altair", "pandas", "pyarrow")
PACKAGE = Path(gatekit.__file__).parent


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {m.split(".")[0] for m in out}


def test_core_import_loads_no_heavy_module() -> None:
    loaded = _loaded_after("from gatekit import load_policy, decide, Action, Decision")
    assert not loaded & set(HEAVY), f"heavy modules loaded: {sorted(loaded & set(HEAVY))}"


def test_core_import_loads_no_heavy_module_even_when_deciding() -> None:
    stmt = ("from gatekit import parse_policy, decide; "
            "p = parse_policy('version: 1\\nname: x\\nrules: [{id: r, tool: t, action: deny, when: {args.a: {gt: 1}}}]'); "
            "assert decide(p, {'tool': 't', 'args': {'a': 2}}).decision == 'deny'")
    loaded = _loaded_after(stmt)
    assert not loaded & set(HEAVY)


def test_policy_package_never_imports_shadow_modules() -> None:
    """policy/ knows nothing of DuckDB or the store: checked on the source, so a lazy import cannot hide."""
    for path in (PACKAGE / "policy").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in HEAVY, f"{path.name} imports {name}"
                assert not name.startswith(("gatekit.logs", "gatekit.replay", "gatekit.metrics", "gatekit.cli")), \
                    f"{path.name} imports {name}: policy/ must not depend on upper layers"

