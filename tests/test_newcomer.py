"""The newcomer's path, end to end (issue 16): the commands the README and `gatekit demo` point a new user
to, typed in order in a fresh directory outside the checkout, each through the installed `gatekit` script
in a subprocess. Each exits as documented, prints no traceback, and says what its output means.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about a minute: the demo over 20,000 actions, then a report of each kind

ROOT = Path(__file__).resolve().parents[1]
BAD_POLICY = "version: 1\nname: broken\ncolour: blue\nrules: []\n"


class Session:
    """A terminal in `cwd`: the checkout's `gatekit` first on PATH and on PYTHONPATH."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}

    def __call__(self, line: str | list[str], *, code: int = 0, failed: bool | None = None) -> tuple[str, str]:
        """Run one command line; `failed` (default: a non-zero `code`) means it ends with one `error:` line."""
        argv = shlex.split(line) if isinstance(line, str) else line
        assert argv[0] == "gatekit"
        done = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        shown = f"$ {shlex.join(argv)}\nexit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n" \
                f"stderr:\n{done.stderr[-3000:]}"
        assert done.returncode == code, shown
        assert "Traceback" not in done.stdout + done.stderr, shown
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == (1 if (bool(code) if failed is None else failed) else 0), shown
        return done.stdout, done.stderr


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, dict[str, str]]:
    """`gatekit demo` in a fresh directory, and its `next:` lines by command."""
    home = tmp_path_factory.mktemp("newcomer")
    assert not (home / "pyproject.toml").exists() and ROOT not in home.parents
    run = Session(home)
    out, _ = run("gatekit demo")
    assert (home / "gatekit-demo.duckdb").exists()
    assert "ingested" in out and "stored 20,000" in out and "run `starter`: policy `starter`" in out
    assert "top rules:" in out
    steps = [line.strip() for line in out.split("\nnext:\n", 1)[1].splitlines() if line.strip()]
    by_command = {shlex.split(step)[1]: step.split("   #")[0] for step in steps}
    assert {"runs", "report", "replay", "diff", "dashboard", "validate", "decide"} <= set(by_command), steps
    return run, by_command


def test_the_newcomer_path(walk, tmp_path: Path) -> None:
    run, step = walk
    db = "gatekit-demo.duckdb"

    out, _ = run(step["runs"])
    assert out.splitlines()[0].split("\t") == ["run", "policy", "actions", "escalate", "deny"]
    assert out.splitlines()[1].startswith("starter\tstarter\t20,000\t")

    out, _ = run(step["report"])
    assert out.startswith("run `starter`: policy `starter`, 20,000 actions")
    assert "would-be decisions: allow" in out and "labels: caught" in out
    report = json.loads(run(f"gatekit report --db {db} --json")[0])  # --run left out: the only run
    assert report["run"]["name"] == "starter" and sum(report["decisions"].values()) == 20000
    html = tmp_path / "report.html"
    _, err = run(["gatekit", "report", "--db", db, "--run", "starter", "--html", str(html)])
    assert f"wrote {html}" in err and "<html" in html.read_text(encoding="utf-8")[:2000].lower()

    out, _ = run(step["replay"])  # the strict starter policy, as the demo names it
    assert "starter-strict.yaml" in step["replay"] and "run `strict`: policy `starter-strict`" in out

    out, _ = run(step["diff"])
    assert step["diff"] == f"gatekit diff --db {db} --run starter --run strict"
    assert "actions change decision" in out and "A \\ B" in out and "policy changes (A -> B):" in out

    _, err = run(f"gatekit evaluate --db {db}", code=2)  # two runs now: say which there are
    assert "error: the store holds 2 runs (`starter`, `strict`): pick one with `--run NAME`" in err
    out, _ = run(f"gatekit evaluate --db {db} --run strict")
    assert out.startswith("run `strict`: caught ") and ", missed " in out and "bothered" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY)
    out, err = run(["gatekit", "validate", str(bad)], code=3)
    assert out == f"{bad}:3: unknown key `colour`\n" and "error: 1 problem in 1 policy file" in err
    out, err = run(step["validate"])
    assert out == "" and "ok: 1 policy valid" in err

    out, _ = run(step["decide"])
    decision = json.loads(out)
    assert decision["decision"] == "escalate" and decision["rules"] == ["payments-over-100"]
    out, _ = run(step["decide"].replace("gatekit decide", "gatekit decide --exit-code", 1), code=10,
                 failed=False)  # 10: escalate, a decision and not an error
    assert json.loads(out) == decision

    assert step["dashboard"] == f"gatekit dashboard --db {db}"  # shown, not started: it is a server

    out, _ = run(f"gatekit runs delete strict --db {db}")
    assert out == "deleted run `strict` (policy `starter-strict`, 20,000 actions)\n"
    assert [r["name"] for r in json.loads(run(f"gatekit runs --db {db} --json")[0])["runs"]] == ["starter"]
