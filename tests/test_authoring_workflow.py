"""The example GitHub Actions workflow of docs/authoring.md runs: its `run:` steps pass on the sample logs, and
with a threshold of the policy raised, `gatekit test` and `gatekit check` fail with exit 1.

The steps run in a temporary directory holding copies of `policies/` and `sample_logs/`, with a `gatekit`
on PATH that runs this tree's code. Skipped: the `uses:` steps (checkout, setup-python, upload-artifact: the
files are copied, the Python is this one) and the `pip install` step (this environment has gatekit and the
shadow extra already).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "authoring.md"


def workflow() -> dict:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if "\njobs:" in b]
    assert len(found) == 1, "docs/authoring.md should hold one workflow (a yaml block with `jobs:`)"
    return YAML(typ="safe").load(found[0])


def run_steps() -> list[tuple[str, str]]:
    """(name, script) of each step the test runs, in order."""
    [job] = workflow()["jobs"].values()
    steps = []
    for step in job["steps"]:
        if "uses" in step:
            continue
        if step["run"].lstrip().startswith("pip install"):
            continue
        steps.append((step.get("name", step["run"]), step["run"]))
    return steps


def checkout(root: Path) -> dict[str, str]:
    """The repository as the workflow sees it, and the environment its steps run in."""
    shutil.copytree(REPO / "policies", root / "policies")
    shutil.copytree(REPO / "sample_logs", root / "sample_logs")
    bin_dir = root / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "gatekit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from gatekit.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


def run(script: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_workflow_is_a_github_actions_workflow() -> None:
    flow = workflow()
    [job] = flow["jobs"].values()
    uses = [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]
    assert uses == ["actions/checkout", "actions/setup-python", "actions/upload-artifact"]
    assert job["steps"][1]["with"]["python-version"] == "3.11"
    assert any(s.get("run") == 'pip install "gatekit[shadow]"' for s in job["steps"])
    commands = [script.split()[1] for _, script in run_steps()]
    assert commands == ["validate", "test", "ingest", "check"]


def test_the_workflow_passes_on_the_sample_logs(tmp_path: Path) -> None:
    env = checkout(tmp_path)
    for name, script in run_steps():
        done = run(script, tmp_path, env)
        assert done.returncode == 0, f"step `{name}` failed\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "policy-tests.xml").exists()  # what the upload step uploads
    # the page's `$ gatekit check` example prints what it shows, on the store the workflow built
    [shown] = re.findall(r"```\n\$ (gatekit check [^\n]*)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    done = run(shown[0], tmp_path, env)
    assert (done.returncode, done.stdout) == (0, shown[1])


def test_the_workflow_fails_when_a_threshold_is_raised(tmp_path: Path) -> None:
    """The hourly payout total raised from $500 to $5,000: a case and the catch gate catch it."""
    env = checkout(tmp_path)
    policy = tmp_path / "policies" / "starter.yaml"
    text = policy.read_text()
    assert "window: 1h, gt: 500}" in text
    policy.write_text(text.replace("window: 1h, gt: 500}", "window: 1h, gt: 5000}"))
    codes = {}
    for name, script in run_steps():
        done = run(script, tmp_path, env)
        codes[script.split()[1]] = done.returncode
        if script.split()[1] == "check":
            assert "catch rate" in done.stdout and "FAIL" in done.stdout, done.stdout
            assert done.stderr.splitlines()[-1] == "error: 1 gate of 3 failed: catch rate"
    assert codes == {"validate": 0, "test": 1, "ingest": 0, "check": 1}


@pytest.mark.parametrize("name, script", run_steps())
def test_each_step_is_one_gatekit_command(name: str, script: str) -> None:
    assert script.split()[0] == "gatekit", name
