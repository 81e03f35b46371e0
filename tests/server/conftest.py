"""A real approvals service for the tests: `gatekit serve` in a child process on a loopback port.

`Served` starts it, registers principals (through the registry in the state directory, as
`gatekit principals add` does, while the service runs), builds gates and clients, and can kill -9 and
restart it on the same port and state. Every process started here is stopped by its own PID.

`store_url` runs a test on both stores: `None` (the state directory's SQLite file) and a fresh database on
the session's throwaway PostgreSQL cluster (`postgres`, tests/server/postgres.py). `Served(..., store=url)`
passes it to `gatekit serve --store`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from gatekit import Gate, load_policy
from gatekit.enforce.client import ApprovalsClient

POLICY = """\
version: 1
name: service-tests
default: allow
on_error: escalate
tiers:
  standard: {approvals: 1, timeout: 4h}
  pair: {approvals: 2, timeout: 1h}
  critical: {approvals: 2, roles: [security, finance], timeout: 30m, approval_ttl: 15m}
rules:
  - {id: pay-100, tool: payment.send, action: escalate, tier: standard, when: {args.amount: {gt: 100}}, reason: Payments over $100 need approval}
  - {id: pay-10k, tool: payment.send, action: escalate, tier: critical, when: {args.amount: {gte: 10000}}, reason: Large payments need security and finance}
  - {id: pay-blocked, tool: payment.send, action: deny, when: {args.recipient: EVIL}, reason: Blocked recipient}
  - {id: prod-delete, tool: "db.*", action: deny, when: {context.env: prod}, reason: No destructive writes in production}
  - {id: staging-delete, tool: "db.*", action: escalate, tier: pair, when: {context.env: staging}}
  - {id: email-burst, tool: email.send, action: deny, when: {rate: {per: agent, window: 10m, gt: 3}}, reason: Too many e-mails}
"""

SERVE_TIMEOUT = 30.0


class Served:
    """One `gatekit serve` process over a state directory."""

    def __init__(self, root: Path, policy: str = POLICY, *, extra: tuple[str, ...] = (), start: bool = True,
                 store: str | None = None) -> None:
        self.root = root
        self.state = root / "state"
        self.store = store  # None: the SQLite file in the state directory
        self.policy_path = root / "policy.yaml"
        self.policy_path.write_text(policy)
        self.extra = extra
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.log = root / "serve.log"
        if start:  # False: over a state directory put there first (a copy to tamper with, say)
            self.start()

    # -- the process -------------------------------------------------------------------------------------
    def start(self) -> None:
        cmd = [sys.executable, "-m", "gatekit.cli", "serve", "--state", str(self.state), "--policy",
               str(self.policy_path), "--port", str(self.port), *self._store_args(), *self.extra]
        log = open(self.log, "a")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                        start_new_session=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("http"):
            self.process.kill()
            raise RuntimeError(f"gatekit serve did not start: {line!r} {self.log.read_text()[-2000:]}")
        self.url = line
        self.port = int(line.rsplit(":", 1)[1])
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"gatekit serve never became healthy: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM, as an operator stops it; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def restart(self) -> None:
        self.kill()
        self.start()

    def _store_args(self) -> list[str]:
        return ["--store", self.store] if self.store else []

    def ledger(self) -> Any:
        """The state directory's ledger on this service's store, as `gatekit principals` opens it."""
        from gatekit.server.ledger import Ledger
        from gatekit.server.store import open_store

        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Ledger(self.state, store=open_store(self.store, self.state))

    # -- principals, gates and clients -------------------------------------------------------------------
    def add(self, kind: str, name: str, *roles: str, break_glass: bool = False) -> str:
        from gatekit.server.registry import Registry

        registry = Registry(self.ledger())
        try:
            return registry.add(kind, name, roles, break_glass=break_glass)
        finally:
            registry.ledger.close()

    def client(self, credential: str, **kwargs: Any) -> ApprovalsClient:
        return ApprovalsClient(self.url, credential, **kwargs)

    def gate(self, agent: str, credential: str, **kwargs: Any) -> Gate:
        kwargs.setdefault("timeout", 20)
        kwargs.setdefault("poll", 0.02)
        return Gate(load_policy(self.policy_path), mode="enforce", approvals=self.url, credential=credential,
                    agent=agent, **kwargs)

    def http(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """A raw HTTP call, as an attacker would make it: (status, parsed JSON or text)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def verify(self) -> int:
        """`gatekit audit verify --state`: its exit code."""
        done = subprocess.run([sys.executable, "-m", "gatekit.cli", "audit", "verify", "--state", str(self.state),
                               *self._store_args()], capture_output=True, text=True)
        self.verified = done.stdout + done.stderr  # what it found, for tests that check why
        return done.returncode


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole session (each test takes a fresh database on it).
    Skipped where PostgreSQL is not installed, except in CI, where that is a failure."""
    from tests.server.postgres import Cluster, binaries

    if binaries() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL is not installed: .ci/run installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres: Any) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres.database(f"t{os.getpid()}_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Each store in turn: None (SQLite in the state directory), then a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A fresh service for one test."""
    s = Served(tmp_path)
    yield s
    s.kill()


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One service for a whole module (tests register their own principals, so they do not meet)."""
    s = Served(tmp_path_factory.mktemp("service"))
    yield s
    s.kill()
