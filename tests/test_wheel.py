"""The wheel is the whole package: built from the tracked files and installed into fresh virtual environments,
`gatekit demo` and `gatekit dashboard` work from a directory outside the checkout, and the core install alone
runs the policy commands while every command of an extra says which extra to install, without a traceback.

pip builds the wheel (setuptools from PyPI or pip's cache) and installs its dependencies from its cache or
PyPI, so this takes about a minute; CI runs it as part of the README's test command.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekit.dashboards import PAGES

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
HEAVY = ("duckdb", "polars", "pyarrow", "streamlit", "altair", "rich", "vl_convert", "pandas", "starlette")
DECIDE = '{"tool": "payment.send", "args": {"amount": 250}}'

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the tracked files (as they are in the work tree), built outside the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("needs a git checkout to know the tracked files")
    for name in filter(None, tracked.stdout.split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run([*PIP, "wheel", "--quiet", "--no-deps", str(src), "-w", str(tmp / "dist")], cwd=tmp, timeout=300)
    built, = (tmp / "dist").glob("gatekit-*.whl")
    return built


def _venv(path: Path, requirement: str, cwd: Path) -> Path:
    """A fresh virtual environment at `path` with `requirement` installed; its bin/ folder."""
    venv.create(path, with_pip=False, symlinks=True)
    python = path / "bin" / "python"
    _run([*PIP, "--python", str(python), "install", "--quiet", requirement], cwd=cwd, timeout=600)
    return path / "bin"


def test_the_wheel_carries_the_app_the_sample_logs_and_the_policies(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names} == {"gatekit", wheel.name.split("-py3")[0] + ".dist-info"}
    assert not any(n.startswith(("dashboards/", "tests/", "sample_logs/", "policies/")) for n in names)
    expected = {"gatekit/py.typed", "gatekit/dashboards/__init__.py", "gatekit/dashboards/app.py",
                "gatekit/simulation.py", "gatekit/sample_logs/PLANTED.json", "gatekit/policies/starter.yaml",
                "gatekit/logs/adapters/agentdojo-ground-truth.json",
                "gatekit/policies/starter-strict.yaml", "gatekit/policies/cases/starter.yaml",
                "gatekit/server/static/gatekit.css"}
    expected |= {f"gatekit/dashboards/{p.script}" for p in PAGES}
    expected |= {f"gatekit/sample_logs/{p.name}" for p in (ROOT / "sample_logs").glob("*.jsonl")}
    expected |= {f"gatekit/server/templates/{p.name}" for p in (ROOT / "gatekit/server/templates").glob("*.html")}
    # every module of the package and of the app: a package missing from pyproject.toml's list fails here
    expected |= {f"gatekit/{p.relative_to(ROOT / 'gatekit').as_posix()}" for p in (ROOT / "gatekit").rglob("*.py")}
    expected |= {f"gatekit/dashboards/{p.relative_to(ROOT / 'dashboards').as_posix()}"
                 for p in (ROOT / "dashboards").rglob("*.py")}
    assert sorted(expected - names) == []
    assert len([n for n in names if n.startswith("gatekit/sample_logs/") and n.endswith(".jsonl")]) >= 4


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with no checkout in sight."""
    return tmp_path_factory.mktemp("elsewhere")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return response.status, response.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def dashboard_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("venv-dashboard")
    yield _venv(path, f"{wheel}[dashboard]", cwd=path)
    shutil.rmtree(path, ignore_errors=True)


def test_demo_and_dashboard_work_from_any_directory(dashboard_venv: Path, outside: Path) -> None:
    gatekit = str(dashboard_venv / "gatekit")
    demo = _run([gatekit, "demo", "--db", "demo.duckdb", "--json"], cwd=outside, timeout=300)
    summary = json.loads(demo.stdout)
    assert summary["ingest"]["stored"] == 20_000 and summary["run"]["name"] == "starter"
    text = _run([gatekit, "demo", "--db", "again.duckdb"], cwd=outside, timeout=300).stdout
    strict = next(line.split("--policy ")[1].split()[0] for line in text.splitlines() if "--name strict" in line)
    assert Path(strict).is_file() and "site-packages/gatekit/policies" in strict  # a command that works as shown

    port = _free_port()
    proc = subprocess.Popen([gatekit, "dashboard", "--db", "demo.duckdb", "--port", str(port)], cwd=outside,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, health = _get(f"http://127.0.0.1:{port}/_stcore/health")
                if status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()[1]
        assert health.strip() == "ok"
        status, page = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<noscript>" in page.lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def core_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("venv-core")
    yield _venv(path, str(wheel), cwd=path)
    shutil.rmtree(path, ignore_errors=True)


def test_the_core_install_is_light_and_runs_the_policy_commands(core_venv: Path, outside: Path) -> None:
    python, gatekit = str(core_venv / "python"), str(core_venv / "gatekit")
    installed = _run([python, "-c", "import importlib.util as u, sys; "
                      f"print(' '.join(m for m in {HEAVY!r} if u.find_spec(m)))"], cwd=outside).stdout.split()
    assert installed == []
    policy = _run([python, "-c", "from gatekit._install import bundled; "
                   "print(bundled('policies') / 'starter.yaml')"], cwd=outside).stdout.strip()
    assert _run([gatekit, "validate", policy], cwd=outside).returncode == 0
    decided = json.loads(_run([gatekit, "decide", "--policy", policy, DECIDE], cwd=outside, check=False).stdout)
    assert decided["decision"] == "escalate"
    assert json.loads(_run([gatekit, "schema"], cwd=outside).stdout)["$schema"]
    assert "Usage" in _run([gatekit, "--help"], cwd=outside).stdout
    _run([python, "-c", "from gatekit import Gate, load_policy, decide, verify_approval"], cwd=outside)


@pytest.mark.parametrize(("args", "extra"), [
    (["demo"], "shadow"),
    (["ingest", "x.jsonl", "--db", "x.duckdb"], "shadow"),
    (["runs", "--db", "x.duckdb"], "shadow"),
    (["dashboard", "--db", "x.duckdb"], "dashboard"),
    (["serve", "--state", "service", "--policy", "policy.yaml"], "server"),
])
def test_a_command_of_a_missing_extra_says_which_to_install(core_venv: Path, outside: Path, args: list[str],
                                                             extra: str) -> None:
    done = _run([str(core_venv / "gatekit"), *args], cwd=outside, check=False, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert f'needs the {extra} extra: pip install "gatekit[{extra}]"' in done.stderr, done.stderr
