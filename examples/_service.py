"""The approvals service for the examples: `gatekit serve` as a child process, and a stand-in reviewer.

>>> with approvals_service(workdir / "state", policy_path) as (url, add_principal):
...     agent = add_principal("agent", "billing-bot")
...     bob = add_principal("reviewer", "u-bob", "finance")

In real life the service runs on its own (`gatekit serve --state DIR --policy FILE`), under another OS user
than the agents, and reviewers answer with `gatekit approvals approve` or on its web page. Here each example
starts its own on a free loopback port in a temporary directory, and stops it (by its PID) when done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from gatekit.enforce import ApprovalsClient, ServiceError

STARTUP = 30.0  # seconds for the service to answer /healthz


def cli(*args: str) -> str:
    """Run the gatekit CLI in a child process; its stdout, or `RuntimeError` with its stderr if it fails."""
    done = subprocess.run([sys.executable, "-m", "gatekit.cli", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"gatekit {' '.join(args[:2])} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def approvals_service(state: Path, policy: Path) -> Iterator[tuple[str, Callable[..., str]]]:
    """Start `gatekit serve` on 127.0.0.1 (a free port); yields its URL and `add_principal(kind, id, *roles)`,
    which registers a principal with `gatekit principals add` and returns its credential."""
    with open(state.parent / "serve.log", "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "gatekit.cli", "serve", "--state", str(state),
                                    "--policy", str(policy), "--host", "127.0.0.1", "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        try:
            url = process.stdout.readline().strip()  # type: ignore[union-attr]  its first line: the URL
            if not url.startswith("http"):
                raise RuntimeError(f"gatekit serve did not start: {_tail(log)}")
            _wait_healthy(url, process, log)

            def add_principal(kind: str, principal_id: str, *roles: str) -> str:
                return cli("principals", "add", kind, principal_id, *(a for r in roles for a in ("--role", r)),
                           "--state", str(state)).strip()

            yield url, add_principal
        finally:
            _stop(process)


@contextmanager
def reviewing(url: str, credential: str, answer: Callable[[dict[str, Any]], tuple[str, str]],
              every: float = 0.02) -> Iterator[None]:
    """A stand-in for a human reviewer, in a thread: each pending request is shown to `answer`, which returns
    (`approve` | `deny`, reason), and that is voted on the request's digest (the evidence it was shown) with
    the reviewer's own credential, as `gatekit approvals approve` does."""
    client = ApprovalsClient(url, credential)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                pending = client.list()
            except ServiceError:  # the service is stopping, say: look again
                pending = []
            for request in pending:
                decision, reason = answer(request)
                try:
                    client.vote(request["id"], decision, evidence=request["digest"], reason=reason)
                except ServiceError:  # refused (decided meanwhile, timed out): the service says why, skip it
                    pass
            stop.wait(every)

    thread = threading.Thread(target=loop, name="stand-in reviewer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _wait_healthy(url: str, process: subprocess.Popen[str], log: Any) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + STARTUP
    while True:
        try:
            with opener.open(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gatekit serve never became healthy: {_tail(log)}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the service's own PID, as an operator stops it; SIGKILL if it does not stop in time."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    if process.stdout is not None:
        process.stdout.close()


def _tail(log: Any) -> str:
    log.flush()
    return Path(log.name).read_text()[-2000:]
