"""The READMEs' code blocks run, as the notebooks do, so they cannot drift from the code.

Every fenced ```bash / ```sh block runs with `bash -e` (a failing line fails the block) and every ```python
block in a subprocess, in a temporary directory laid out as the reader's would be, with the checkout's
`gatekit` first on PATH; the blocks of one file run in order in one directory, so a block may use what an
earlier one made, as a reader's session would. A ```yaml block that is a policy (it has `version:` and
`rules:`) must load. A block fails on a non-zero exit or a traceback.

A block that cannot run in a test (it installs packages, starts a server, needs data that is not here) is
preceded by `<!-- not run: REASON -->`. `EXEMPT` lists every such block by its file and first line, so a
new exemption is a change someone reviews; the test fails on an exemption missing from either side.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatekit import load_policy

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # one block; the notebook block starts a kernel and ingests the sample logs (~10 s)

EXEMPT = {
    ("README.md", 'pip install -e ".[shadow]" && gatekit demo'):
        "installs gatekit and runs the whole suite (tests/test_newcomer.py walks the demo and what follows it)",
    ("README.md", 'pip install -e ".[server]"'): "starts the approvals service on a fixed port",
    ("README.md", "import os"): "agent.py: waits on the service started by the block before",
    ("README.md", "python agent.py &                     # prints \"paid 40.00 to ACME\", then waits"):
        "needs the service and the agent of the blocks before, and a request id read off the screen",
    ("README.md", "gatekit mcp proxy --policy policies/starter.yaml --approvals http://127.0.0.1:8470 "
                  "--agent billing-bot \\"): "relays an MCP server the reader brings (`python server.py`)",
    ("README.md", "python -m venv .venv && . .venv/bin/activate"): "makes a virtual environment and runs the suite",
    ("notebooks/README.md", 'pip install -e ".[notebooks]"'): "installs packages",
    ("notebooks/README.md", 'pip install -e ".[notebooks,agentdojo]"'):
        "needs the AgentDojo runs beside the checkout and the agentdojo extra (model SDKs)",
    ("notebooks/README.md", "pip install jupyterlab               # not in the extra: the tests and "
                            "`jupyter execute` need no server"): "starts JupyterLab",
}
_FENCE = re.compile(r"^```(\w*)\s*$")
_NOT_RUN = re.compile(r"^<!-- not run: (.+) -->$")


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence
    lang: str
    text: str
    not_run: str | None  # the reason, when marked

    @property
    def first(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the `not run` reason written before it."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    before: str | None = None  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            if lines[i].strip():
                before = lines[i].strip()
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        reason = _NOT_RUN.match(before or "")
        found.append(Block(str(path.relative_to(ROOT)), i + 1, opened.group(1), "\n".join(lines[i + 1:end]),
                           reason.group(1) if reason else None))
        before, i = None, end + 1
    return found


def _env() -> dict[str, str]:
    """The checkout's code and its environment's scripts (`gatekit`, `jupyter`) first."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    for name in ("GATEKIT_DATA", "GATEKIT_WORKDIR", "GATEKIT_TOKEN", "GATEKIT_SERVER", "GATEKIT_STORE"):
        env.pop(name, None)
    return env


def run_block(block: Block, cwd: Path) -> str:
    """Run one block in `cwd`; fails the test on a non-zero exit or a traceback. Returns its stdout."""
    if block.lang in ("bash", "sh"):
        argv = ["bash", "-e", "-c", block.text]
    elif block.lang == "python":
        argv = [sys.executable, "-c", block.text]
    else:
        raise AssertionError(f"{block.file}:{block.line}: no way to run a ```{block.lang} block")
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    shown = f"{block.file}:{block.line}: ```{block.lang} block\n{block.text}\nexit {done.returncode}\n" \
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    assert "Traceback" not in done.stdout + done.stderr, shown
    return done.stdout


def _runnable(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.not_run is None and b.lang in ("bash", "sh", "python")]


def test_the_exempt_blocks_are_the_listed_ones() -> None:
    marked = {(b.file, b.first): b.not_run for f in ("README.md", "notebooks/README.md")
              for b in blocks(ROOT / f) if b.not_run is not None}
    assert set(marked) == set(EXEMPT), "a `<!-- not run: ... -->` block is missing from EXEMPT or the other way"


def test_readme_blocks_run(tmp_path: Path) -> None:
    """README.md's blocks, in a directory with the reader's `policies/` and some logs in `logs/`."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (tmp_path / "logs").mkdir()
    shutil.copy(ROOT / "sample_logs" / "actions-2026-10-05.jsonl", tmp_path / "logs")
    ran = _runnable(ROOT / "README.md")
    assert len(ran) >= 3, "README.md has lost its runnable blocks"
    for block in ran:
        run_block(block, tmp_path)
    # what the blocks say they make, they made
    assert (tmp_path / "store.duckdb").exists() and (tmp_path / "starter.parquet").exists()


def test_readme_policies_load(tmp_path: Path) -> None:
    policies = [b for b in blocks(ROOT / "README.md") if b.lang == "yaml" and "rules:" in b.text
                and b.text.startswith("version:")]
    assert policies, "README.md shows no policy"
    for block in policies:
        path = tmp_path / f"line-{block.line}.yaml"
        path.write_text(block.text + "\n", encoding="utf-8")
        load_policy(path)  # a PolicyError names the problem at the block's own lines


def test_decide_exit_code_block_branches_on_the_decision(tmp_path: Path) -> None:
    """The README's script example prints what the decision means, not only exit 0."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (block,) = [b for b in _runnable(ROOT / "README.md") if "--exit-code" in b.text]
    assert run_block(block, tmp_path) == "needs a human\n"


def _digests(root: Path, names: list[str]) -> dict[str, str]:
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names}


def test_the_notebooks_readme_command_keeps_outputs_and_leaves_tracked_files_alone(tmp_path: Path) -> None:
    """Issue 16 item 4: the documented command works with the `notebooks` extra alone, writes the executed
    notebook with its outputs elsewhere, and rewrites no tracked file. Runs in a copy of the checkout."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    tracked = subprocess.run(["git", "ls-files", "pyproject.toml", "notebooks", "sample_logs", "policies"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist): copy what the notebooks read
        tracked = [str(p.relative_to(ROOT)) for d in ("notebooks", "sample_logs", "policies")
                   for p in (ROOT / d).rglob("*") if p.is_file() and "out" not in p.parts] + ["pyproject.toml"]
    for name in tracked:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    before = _digests(tmp_path, tracked)
    ran = _runnable(ROOT / "notebooks" / "README.md")
    assert [b.first for b in ran] == ["mkdir -p notebooks/out"]
    run_block(ran[0], tmp_path)
    assert _digests(tmp_path, tracked) == before, "the documented command rewrote a tracked file"
    executed = json.loads((tmp_path / "notebooks" / "out" / "a_quick_start.ipynb").read_text(encoding="utf-8"))
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code)
    assert sum(len(c["outputs"]) for c in code) >= 3, "the executed notebook kept no outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])


def test_every_table_has_its_header_and_no_blank_line_inside() -> None:
    """Issue 16 item 10: a blank line inside the Commands table left its last rows as raw pipes."""
    for name in ("README.md", "notebooks/README.md"):
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        fenced = False
        for i, line in enumerate(lines):
            fenced ^= line.startswith("```")
            starts = line.startswith("|") and not fenced and (i == 0 or not lines[i - 1].startswith("|"))
            if starts:
                assert i + 1 < len(lines) and re.fullmatch(r"\|( *:?-+:? *\|)+", lines[i + 1]), \
                    f"{name}:{i + 1}: a table without its header row and `|---|` line (a blank line inside?)"
    commands = (ROOT / "README.md").read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n\n")[1]
    for word in ("gatekit dashboard", "gatekit approvals", "gatekit audit", "gatekit runs delete"):
        assert word in commands, f"`{word}` is not in the Commands table"
