"""The registry of principals: reviewers (with roles and break-glass rights), agents and executors.

A credential is printed once and only its sha256 is kept; ids are canonical (`gatekit.enforce.identity`)
and unique across kinds, so nobody is both `alice` the reviewer and `Alice` the agent. The service reads
the registry on every request, so a principal added while it runs is seen at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekit.enforce.identity import KINDS, check_id
from gatekit.errors import ApprovalError, GatekitError
from gatekit.server.ledger import Ledger


class Refusal(ApprovalError):
    """The service refused; `code` is stable for programs, `status` the HTTP status that carries it."""

    def __init__(self, message: str, code: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Principal:
    """A registered reviewer, agent or executor. An agent may be bound to the `users` it acts for (None:
    any) and to `context` its calls must carry: what a compromised agent process cannot then claim."""

    id: str
    kind: str
    roles: tuple[str, ...] = ()
    break_glass: bool = False
    users: tuple[str, ...] | None = None
    context: dict[str, Any] | None = None


def credential_hash(credential: str) -> str:
    return "sha256:" + hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()


class Registry:
    """Principals in a state directory's store.

    >>> credential = Registry(Path("state")).add("reviewer", "alice", ("finance",))
    """

    def __init__(self, ledger: Ledger | str | Path) -> None:
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)

    def add(self, kind: str, name: str, roles: tuple[str, ...] = (), *, break_glass: bool = False,
            users: tuple[str, ...] | None = None, context: dict[str, Any] | None = None) -> str:
        """Register a principal; returns its credential (shown once, only its hash kept)."""
        if kind not in KINDS:
            raise GatekitError(f"a principal is one of {', '.join(KINDS)}, not `{kind}`")
        try:
            pid = check_id(name, f"{kind} id")
            roles = tuple(sorted({check_id(r, "role") for r in roles}))
        except ValueError as exc:
            raise GatekitError(str(exc)) from exc
        if kind != "reviewer" and (roles or break_glass):
            raise GatekitError("only reviewers hold roles or break-glass rights")
        if kind != "agent" and (users is not None or context is not None):
            raise GatekitError("only agents are bound to users and context")
        try:
            users = tuple(sorted({check_id(u, "user") for u in users})) if users is not None else None
        except ValueError as exc:
            raise GatekitError(str(exc)) from exc
        credential = f"gk_{kind[0]}_{secrets.token_urlsafe(32)}"

        def add(con: Any, now: int, audit: list) -> None:
            if con.execute("SELECT 1 FROM principals WHERE id = ?", (pid,)).fetchone():
                raise Refusal(f"`{name}` is already registered (as `{pid}`): ids compare by NFKC and case",
                              "exists")
            con.execute("INSERT INTO principals (id, kind, roles, break_glass, users, context, credential_hash, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (pid, kind, json.dumps(list(roles)), int(break_glass),
                         None if users is None else json.dumps(list(users)),
                         None if context is None else json.dumps(context), credential_hash(credential), now))
            audit.append(("principal", {"id": pid, "principal_kind": kind, "roles": list(roles),
                                        "break_glass": break_glass, "users": None if users is None else list(users),
                                        "context": context, "credential_hash": credential_hash(credential)}, None))
        self.ledger.write(add)
        return credential

    def authenticate(self, credential: Any) -> Principal | None:
        """The principal a credential belongs to, or None."""
        if not isinstance(credential, str) or not credential.startswith("gk_") or len(credential) > 200:
            return None
        digest = credential_hash(credential)
        rows = self.ledger.store.query("SELECT id, kind, roles, break_glass, credential_hash, users, context "
                                       "FROM principals WHERE credential_hash = ? AND disabled = 0", (digest,))
        row = rows[0] if rows else None
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        return Principal(row[0], row[1], tuple(json.loads(row[2])), bool(row[3]),
                         None if row[5] is None else tuple(json.loads(row[5])),
                         None if row[6] is None else json.loads(row[6]))

    def list(self) -> list[dict[str, Any]]:
        with self.ledger.store.read() as con:
            rows = con.execute("SELECT id, kind, roles, break_glass, disabled, users, context FROM principals "
                               "ORDER BY kind, id").fetchall()
        return [{"id": r[0], "kind": r[1], "roles": json.loads(r[2]), "break_glass": bool(r[3]),
                 "disabled": bool(r[4]), "users": None if r[5] is None else json.loads(r[5]),
                 "context": None if r[6] is None else json.loads(r[6])} for r in rows]
