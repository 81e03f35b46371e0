"""Enforce mode stays light: an agent that imports the gate pays for no DuckDB, polars or pandas."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gatekit

HEAVY = ("duckdb", "polars", "streamlit", "altair", "pandas", "pyarrow", "pyspark", "starlette", "uvicorn", "httpx",
         "jinja2", "multipart")
ENFORCE = Path(gatekit.__file__).parent / "enforce"
ALLOWED = {"gatekit", "click", "cryptography"}  # click only in commands.py, the CLI's module


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {m.split(".")[0] for m in out}


def test_gate_import_loads_no_heavy_module() -> None:
    loaded = loaded_after("from gatekit import Gate, load_policy, decide, verify_approval")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_verifying_a_token_and_building_a_service_gate_load_no_heavy_module() -> None:
    stmt = ("from gatekit import Gate, parse_policy, verify_approval, TokenRefused; "
            "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey; "
            "k = Ed25519PrivateKey.generate()\n"
            "try:\n verify_approval('gk1.e30.AA', {'tool': 't'}, k.public_key())\n"
            "except TokenRefused: pass\n"
            "p = parse_policy('version: 1\\nname: x\\nrules: [{id: r, tool: t, action: escalate}]'); "
            "g = Gate(p, approvals='http://127.0.0.1:9', credential='gk_a_x', agent='a', timeout=0.01)")
    loaded = loaded_after(stmt)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_running_the_gate_with_a_broker_loads_no_heavy_module(tmp_path: Path) -> None:
    stmt = ("from gatekit import Gate, parse_policy; from gatekit.enforce import Broker; "
            "p = parse_policy('version: 1\\nname: x\\nrules: [{id: r, tool: t, action: escalate}]'); "
            f"g = Gate(p, broker=Broker({str(tmp_path / 'a.db')!r}), timeout=0.01); "
            "import gatekit.enforce._export, gatekit.enforce.notify; "
            "g.run({'tool': 'u'}, lambda a: 1)")
    loaded = loaded_after(stmt)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_enforce_uses_only_the_standard_library_and_the_core() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in ENFORCE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                root = name.split(".")[0]
                assert root in stdlib or root in ALLOWED, f"{path.name} imports {name}"
                assert root != "click" or path.name == "commands.py", f"{path.name} imports click"
                assert not name.startswith(("gatekit.logs", "gatekit.replay", "gatekit.metrics", "gatekit.cli")), \
                    f"{path.name} imports {name}: enforce/ must not depend on shadow-mode layers"


def test_gate_and_friends_are_in_the_public_surface() -> None:
    assert {"Gate", "Denied", "Pending"} <= set(gatekit.__all__)
    import gatekit.enforce as enforce

    public = {n for n in dir(enforce) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(enforce, n)).__name__ == "module"}
    assert public - modules == set(enforce.__all__)
