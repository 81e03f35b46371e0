"""A throwaway PostgreSQL cluster for the tests and the approvals benchmark: Debian's `postgresql` package,
`initdb` and `pg_ctl` in a temporary directory, listening only on a Unix socket in that directory.

PostgreSQL refuses to run as root, so as root (CI) the cluster runs as the `postgres` OS user the package
creates. It is stopped by its own PID (the postmaster's, from its pid file), never by name.

>>> with Cluster() as cluster:
...     url = cluster.database("t1")   # postgresql://postgres@/t1?host=/tmp/...&port=...
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when the package is not installed."""
    for bindir in BINDIRS:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found and shutil.which("pg_ctl") else None


class Cluster:
    """initdb + pg_ctl start in a fresh directory; `database(name)` creates a database, `stop()` ends it.

    `durable=False` (the tests) turns fsync off: the cluster dies with the test run anyway. The benchmark
    keeps PostgreSQL's defaults (fsync and synchronous commit on).
    """

    def __init__(self, *, durable: bool = False, max_connections: int = 200) -> None:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="gatekit-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        self.user = "postgres"
        self.pid: int | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # the Debian package's user; KeyError if absent
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        options = {"listen_addresses": "''", "unix_socket_directories": f"'{self.root}'",
                   "max_connections": str(max_connections), "shared_buffers": "128MB"}
        if not durable:
            options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--locale=C",
                  "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("".join(f"{k} = {v}\n" for k, v in options.items()))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", f"-p {self.port}", "-w", "-t", "60",
                  "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True,
                              cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}"
                               + (self.log.read_text()[-2000:] if self.log.exists() else ""))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.root}&port={self.port}"

    def database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, database: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit); its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as con:
            cur = con.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def stop(self) -> None:
        """Fast shutdown of this cluster's postmaster, by its PID; then its directory goes."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _alive(self.pid):
                    time.sleep(0.05)
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive; the postmaster is not our child, so only /proc says so
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
