"""The gateway stays behind its extra: the core, enforce mode and the CLI's start import nothing of the MCP SDK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gatekit

PACKAGE = Path(gatekit.__file__).parent


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {m.split(".")[0] for m in out}


def test_the_gate_and_the_cli_load_no_mcp_sdk() -> None:
    loaded = _loaded_after("from gatekit import Gate, load_policy, Denied; import gatekit.cli; "
                           "import gatekit.mcp, gatekit.mcp.commands")
    assert not loaded & {"mcp", "mcp_types", "httpx2", "starlette"}, sorted(loaded & {"mcp", "mcp_types"})


def test_only_the_gateway_modules_import_the_sdk_and_nothing_below_imports_them() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                inside = path.parent.name == "mcp"
                if name.split(".")[0] == "mcp":
                    assert inside, f"{path} imports the MCP SDK"
                    if path.name in ("__init__.py", "commands.py"):
                        assert node not in top, f"{path.name} imports {name} at import time"
                if name.startswith("gatekit.mcp"):
                    assert inside or path.name == "cli.py", f"{path} imports {name}: only the CLI may"
