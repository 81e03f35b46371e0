"""The service's audit: a hash chain of every submission, vote, token, consume, revoke and break-glass, with
checkpoints signed by the service's Ed25519 key.

Every write transaction that appends entries also signs a checkpoint `(count, head)` in the same
transaction, and after it commits the checkpoint is appended to an export file (`checkpoints.jsonl`, to be
kept where the service's store is not: another disk, a write-once bucket, `chattr +a`). `verify` walks the
chain and checks it against every stored checkpoint and the last exported one, with the public key: an
entry modified, deleted or reordered, a chain truncated or wiped, or re-chained with plain hashes, does
not verify, because nobody without the private key can sign a checkpoint for it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from gatekit.action import canonical_json
from gatekit.enforce.receipts import Verification
from gatekit.enforce.tokens import b64decode, b64encode, key_id, load_public_key, strict_json
from gatekit.server.store import TAIL

GENESIS = "sha256:" + "0" * 64
KINDS = ("submit", "vote", "approve", "deny", "timeout", "token", "consume", "refuse", "revoke", "requirements",
         "break_glass", "outcome", "principal", "policy", "start", "withdraw", "login", "logout")
_CHECKPOINT = b"gatekit-checkpoint-v1\n"
_CHECKPOINT_INSERT = ("INSERT INTO checkpoints (count, head, at, key_id, signature) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT (count) DO UPDATE SET head = excluded.head, at = excluded.at, "
                      "key_id = excluded.key_id, signature = excluded.signature")


def entry_hash(prev: str, kind: str, request_id: str | None, body: str) -> str:
    text = "\n".join((prev, kind, request_id or "", body))
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def checkpoint_body(count: int, head: str, at: int, kid: str) -> bytes:
    return _CHECKPOINT + strict_json({"count": count, "head": head, "at": at, "kid": kid}).encode("ascii")


@dataclass(frozen=True)
class Checkpoint:
    count: int
    head: str
    at: int
    key_id: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "head": self.head, "at": self.at, "kid": self.key_id, "sig": self.signature}

    def valid(self, public_key: Any) -> bool:
        try:
            load_public_key(public_key).verify(b64decode(self.signature),
                                               checkpoint_body(self.count, self.head, self.at, self.key_id))
        except Exception:  # noqa: BLE001  any failure to verify is a bad checkpoint
            return False
        return True


class Chain:
    """Appends to the chain inside a store transaction and signs the checkpoint that closes it."""

    def __init__(self, private_key: Any, export: Path | None) -> None:
        self.private_key = private_key
        self.key_id = key_id(private_key.public_key())
        self.export = export

    def append(self, con: Any, kind: str, body: dict[str, Any], request_id: str | None, at: int) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown audit kind `{kind}`")
        row = con.execute(TAIL).fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        text = canonical_json({"kind": kind, "at": at, **body})
        con.execute("INSERT INTO audit (seq, kind, request_id, body, prev, hash) VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, kind, request_id, text, prev, entry_hash(prev, kind, request_id, text)))
        return seq

    def extend(self, con: Any, entries: list[tuple[str, dict[str, Any], str | None, int]]) -> tuple[int, str]:
        """Append `(kind, body, request_id, at)` entries in order: one read of the head, one INSERT (a batch
        of writes is chained at once). Returns the new `(count, head)`."""
        row = con.execute(TAIL).fetchone()
        sql, values, last = self.entries(entries, row)
        if entries:
            con.execute(sql, values)
        return last

    @staticmethod
    def entries(entries: list[tuple[str, dict[str, Any], str | None, int]], tail: Any
                ) -> tuple[str, list[Any], tuple[int, str]]:
        """The INSERT that appends `entries` after `tail` (the last `(seq, hash)`, None for an empty
        chain), its values, and the new `(count, head)`."""
        for kind, *_ in entries:
            if kind not in KINDS:
                raise ValueError(f"unknown audit kind `{kind}`")
        seq, prev = (tail[0], tail[1]) if tail else (0, GENESIS)
        values: list[Any] = []
        for kind, body, request_id, at in entries:
            text = canonical_json({"kind": kind, "at": at, **body})
            digest = entry_hash(prev, kind, request_id, text)
            seq += 1
            values += (seq, kind, request_id, text, prev, digest)
            prev = digest
        sql = "INSERT INTO audit (seq, kind, request_id, body, prev, hash) VALUES " + \
            ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(entries))
        return sql, values, (seq, prev)

    def close(self, con: Any, store: Any, entries: list[tuple[str, dict[str, Any], str | None, int]], at: int,
              tail: Any) -> Checkpoint:
        """Append `entries` after `tail` and sign the checkpoint that closes them, both through
        `store.defer` (PostgreSQL sends them with the commit: one round trip)."""
        sql, values, (count, head) = self.entries(entries, tail)
        if entries:
            store.defer(con, sql, values)
        point = self.sign(count, head, at)
        store.defer(con, _CHECKPOINT_INSERT, (count, head, at, self.key_id, point.signature))
        return point

    def sign(self, count: int, head: str, at: int) -> Checkpoint:
        signature = b64encode(self.private_key.sign(checkpoint_body(count, head, at, self.key_id)))
        return Checkpoint(count, head, at, self.key_id, signature)

    def checkpoint(self, con: Any, at: int, last: tuple[int, str] | None = None) -> Checkpoint:
        """Sign `(count, head)` now (`last`: as `extend` returned it, else read); call last in the transaction."""
        if last is None:
            row = con.execute(TAIL).fetchone()
            last = (row[0], row[1]) if row else (0, GENESIS)
        point = self.sign(*last, at)
        con.execute(_CHECKPOINT_INSERT, (point.count, point.head, at, self.key_id, point.signature))
        return point

    def exported(self, checkpoint: Checkpoint) -> None:
        """Append a committed checkpoint to the export file (flushed to disk)."""
        if self.export is None:
            return
        with open(self.export, "a", encoding="ascii") as out:
            out.write(json.dumps(checkpoint.to_dict(), sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())


def read_exported(path: Path) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints of an export file, and the lines that could not be read."""
    found, bad = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            found.append(Checkpoint(int(raw["count"]), str(raw["head"]), int(raw["at"]), str(raw["kid"]),
                                    str(raw["sig"])))
        except (ValueError, KeyError, TypeError):
            bad.append(f"{path}:{n}: not a checkpoint")
    return found, bad


def verify(con: Any, public_key: Any, exported: Path | None) -> Verification:
    """Check the chain, its stored checkpoints and the last exported checkpoint; list every problem.

    `public_key` is one key or a list: the current key and the retired ones whose checkpoints still count
    (a rotated key does not invalidate the chain it signed).
    """
    problems: list[str] = []
    keys = {key_id(k): k for k in (public_key if isinstance(public_key, (list, tuple)) else [public_key])}
    hashes: dict[int, str] = {}
    entries: list[tuple[str, str | None, str]] = []
    want_seq, prev = 1, GENESIS
    position = {h: s for s, h in con.execute("SELECT seq, hash FROM audit")}
    for seq, kind, request_id, text, row_prev, digest in con.execute(
            "SELECT seq, kind, request_id, body, prev, hash FROM audit ORDER BY seq"):
        if seq != want_seq:
            gone = f"entry {want_seq}" if seq == want_seq + 1 else f"entries {want_seq}-{seq - 1}"
            problems.append(f"{gone} deleted (the chain jumps from {want_seq - 1} to {seq})")
        if entry_hash(row_prev, kind, request_id, text) != digest:
            problems.append(f"entry {seq} modified: its hash does not match its content")
        elif row_prev != prev:
            if row_prev in position and position[row_prev] != seq - 1:
                problems.append(f"entry {seq} out of order: it was written after entry {position[row_prev]}")
            else:
                problems.append(f"entry {seq} does not follow entry {seq - 1}")
        hashes[seq] = digest
        entries.append((kind, request_id, text))
        want_seq, prev = seq + 1, digest
    count, head = want_seq - 1, prev
    problems += state_problems(con, entries)
    stored = [Checkpoint(*row) for row in con.execute(
        "SELECT count, head, at, key_id, signature FROM checkpoints ORDER BY count")]
    problems += _check_points(stored, hashes, keys, "stored checkpoint")
    if not stored:
        problems.append("no signed checkpoint in the store")
    elif stored[-1].count != count:
        problems.append(f"the chain holds {count} entries but the last signed checkpoint counts {stored[-1].count}"
                        + (" (truncated)" if count < stored[-1].count else " (entries added without the key)"))
    if exported is None:
        pass
    elif not exported.is_file():
        problems.append(f"no exported checkpoints at `{exported}`: cannot tell a wiped chain from a new one")
    else:
        points, bad = read_exported(exported)
        problems += bad
        if not points:
            problems.append(f"`{exported}` holds no checkpoint")
        else:
            # the highest count, and the line appended last: an edit to that line must not hide behind an older one
            last = max(points, key=lambda p: p.count)
            problems += _check_points([last] + ([points[-1]] if points[-1] != last else []), hashes, keys,
                                      "exported checkpoint")
    return Verification(not problems, count, head, tuple(problems))


_PRINCIPAL = ("kind", "roles", "break_glass", "users", "context", "credential_hash")
# what a request row must say as the chain last set it: its user and requirements always, its approval while
# it is open, who consumed it once it ran (older chains did not record `approval_ttl_us`: not checked then)
_REQUIREMENTS = ("user", "tier", "approvals", "roles", "approval_ttl_us", "expires_at")
_COLUMNS = ("digest", "agent", "status", "action", *_REQUIREMENTS, "approved_until", "nonce", "consumed_by",
            "consume_key")


def state_problems(con: Any, entries: list[tuple[str, str | None, str]]) -> list[str]:
    """The store's requests, votes and principals, compared with what the chain says happened to them.

    An edited, added or deleted request row, vote or principal (a credential hash swapped, a reviewer
    added, a status set to approved) disagrees with the chain, which nobody can rewrite without the key.
    """
    requests: dict[str, dict[str, Any]] = {}
    votes: dict[str, list[tuple[Any, ...]]] = {}
    principals: dict[str, dict[str, Any]] = {}
    for kind, rid, text in entries:
        try:
            body = json.loads(text)
        except ValueError:
            continue  # the walk reported the entry already
        if kind == "principal":
            principals[body.get("id")] = {"kind": body.get("principal_kind"), **{k: body.get(k) for k in _PRINCIPAL[1:]}}
        elif rid is None:
            continue
        elif kind == "submit":
            action = body.get("action") if isinstance(body.get("action"), dict) else {}
            requests[rid] = {"digest": body.get("digest"), "agent": body.get("agent"), "status": "pending",
                             "user": action.get("user"), **{k: body[k] for k in _REQUIREMENTS[1:] if k in body}}
        elif rid not in requests:
            continue
        elif kind in ("deny", "timeout", "revoke", "withdraw"):
            requests[rid]["status"] = body.get("status", "denied")
        elif kind == "approve":
            requests[rid].update(status="approved", approved_until=body.get("approved_until"))
        elif kind == "consume":
            requests[rid].update(status="executed", consumed_by=body.get("by"), consume_key=body.get("key"))
        elif kind == "token":  # issued, or reissued after a policy change (a new nonce, maybe a shorter expiry)
            requests[rid].update(approved_until=body.get("expires"), nonce=body.get("nonce"))
        elif kind == "requirements":
            requests[rid].update({k: body[k] for k in _REQUIREMENTS[1:] if k in body})
        elif kind in ("vote", "break_glass"):
            votes.setdefault(rid, []).append(tuple(body.get(k) for k in ("reviewer", "role", "decision", "evidence")))
    problems = []
    rows = {r[0]: dict(zip(_COLUMNS, r[1:])) for r in con.execute(  # quoted: `user` is reserved in PostgreSQL
        "SELECT id, " + ", ".join(f'"{c}"' for c in _COLUMNS) + " FROM requests")}
    for rid, row in rows.items():
        want = requests.get(rid)
        if want is None:
            problems.append(f"request `{rid}` is in the store but was never submitted (added outside the service)")
            continue
        status = row["status"]
        if (row["digest"], row["agent"]) != (want["digest"], want["agent"]):
            problems.append(f"request `{rid}` differs from what was submitted (its call or agent was changed)")
        elif _digest_of(row["action"]) != row["digest"]:
            problems.append(f"request `{rid}`: its stored call no longer matches its digest (edited)")
        if status != want["status"]:
            problems.append(f"request `{rid}` is `{status}` in the store, `{want['status']}` in the chain")
            continue
        row["roles"] = _json(row["roles"])
        checked = [k for k in _REQUIREMENTS if k in want]
        checked += {"approved": ["approved_until", "nonce"], "executed": ["nonce", "consumed_by", "consume_key"]
                    }.get(status, [])
        changed = [k for k in checked if row[k] != want.get(k)]
        if changed:
            problems.append(f"request `{rid}` differs from what the chain recorded ({', '.join(changed)} changed)")
    problems += [f"request `{rid}` was submitted but is gone from the store" for rid in requests.keys() - rows.keys()]
    stored: dict[str, list[tuple[Any, ...]]] = {}
    for rid, *vote in con.execute("SELECT request_id, reviewer, role, decision, evidence FROM votes"):
        stored.setdefault(rid, []).append(tuple(vote))
    for rid in stored.keys() | votes.keys():
        have, want_votes = sorted(stored.get(rid, []), key=repr), sorted(votes.get(rid, []), key=repr)
        if len(have) != len(want_votes):
            problems.append(f"request `{rid}` has {len(have)} vote(s) in the store, {len(want_votes)} in the chain")
        elif have != want_votes:
            problems.append(f"request `{rid}`: a vote in the store differs from the chain's (its reviewer, role, "
                            "decision or evidence was changed)")
    for pid, kind, roles, break_glass, users, context, credential in con.execute(
            "SELECT id, kind, roles, break_glass, users, context, credential_hash FROM principals"):
        want = principals.get(pid)
        got = {"kind": kind, "roles": json.loads(roles), "break_glass": bool(break_glass),
               "users": None if users is None else json.loads(users),
               "context": None if context is None else json.loads(context), "credential_hash": credential}
        if want is None:
            problems.append(f"principal `{pid}` is in the store but was never registered (added outside the service)")
        elif got != want:
            changed = ", ".join(k for k in _PRINCIPAL if got[k] != want.get(k))
            problems.append(f"principal `{pid}` differs from its registration ({changed} changed)")
    return problems


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _digest_of(action: str) -> str | None:
    from gatekit.enforce.tokens import action_digest

    try:
        return action_digest(json.loads(action))
    except ValueError:
        return None


def _check_points(points: Iterable[Checkpoint], hashes: dict[int, str], keys: dict[str, Any],
                  what: str) -> list[str]:
    problems = []
    for p in points:
        if p.key_id not in keys:
            problems.append(f"{what} {p.count} names key `{p.key_id}`, not this service's "
                            + ", ".join(f"`{k}`" for k in keys))
        elif not p.valid(keys[p.key_id]):
            problems.append(f"{what} {p.count}: the signature does not verify")
        elif p.count and hashes.get(p.count) != p.head:
            got = "is missing" if p.count not in hashes else "differs from the one signed"
            problems.append(f"{what} {p.count}: entry {p.count} {got} (rewritten, truncated or wiped)")
    return problems
