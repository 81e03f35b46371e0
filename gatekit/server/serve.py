"""`gatekit serve`: the approvals service on uvicorn, its URL printed first once the socket is bound."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path
from typing import Any

from gatekit.errors import GatekitError


def serve(state: Path, policy: Path, *, host: str = "127.0.0.1", port: int = 8470, certfile: Path | None = None,
          keyfile: Path | None = None, allowed_hosts: list[str] | None = None, checkpoints: Path | None = None,
          approval_ttl: str = "15m", default_timeout: str = "1h", break_glass_limit: str = "1h",
          max_pending: int = 100, store: str | None = None, echo: Any = print) -> None:
    """Run the service until SIGTERM or SIGINT. Refuses non-loopback hosts without TLS. `store`: a
    PostgreSQL URL that replicas share (default: the SQLite file in `state`)."""
    import uvicorn

    from gatekit.server.app import create_app
    from gatekit.server.approvals import Service
    from gatekit.server.ledger import Ledger
    from gatekit.server.store import open_store

    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    if not loopback and certfile is None:
        raise GatekitError(f"refusing to serve on `{host}` without TLS: pass --tls-cert and --tls-key "
                           "(or bind to 127.0.0.1 behind a TLS proxy)")
    ledger = Ledger(state, store=open_store(store, state), checkpoints=checkpoints)
    service = Service(ledger, policy, approval_ttl=approval_ttl,
                      default_timeout=default_timeout, break_glass_limit=break_glass_limit, max_pending=max_pending)
    service.start()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise GatekitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    bound = sock.getsockname()[1]
    scheme = "https" if certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{bound}"
    app = create_app(service, origin=url, allowed_hosts=allowed_hosts, secure_cookies=certfile is not None)
    # "auto": httptools' parser and uvloop when installed (the `server` extra's uvicorn[standard]: about half
    # the CPU per request of the pure-Python h11 and asyncio), else those
    config = uvicorn.Config(app, log_level="warning", ssl_certfile=str(certfile) if certfile else None,
                            ssl_keyfile=str(keyfile) if keyfile else None, access_log=False, server_header=False,
                            loop="auto", http="auto")
    echo(url)
    sys.stdout.flush()
    # uvicorn shuts down on SIGTERM, then raises it again to die by it; an operator's stop is a clean exit
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.Server(config).run(sockets=[sock])


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)
