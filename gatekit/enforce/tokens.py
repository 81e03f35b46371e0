"""Approval tokens: what the approvals service signs when a tier is satisfied, and what an executor checks.

A token is `gk1.<payload>.<signature>` (base64url, no padding): the payload is canonical JSON binding the
request id, the digest of the exact call that was approved, the agent that asked, the fingerprint of the
service's policy, an expiry and a nonce; the signature is Ed25519 over `gk1.<payload>` by the service's key.

>>> claims = verify_approval(token, {"tool": "payment.send", "args": {"amount": 250}, "agent": "billing-bot"},
...                          public_key)

`verify_approval` checks the signature, the call and the expiry (and the policy, when given); that a token
is used once is the service's to enforce (`ApprovalsClient.consume`). Light: the standard library and the
`cryptography` package only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gatekit.errors import ApprovalError

__all__ = [
    "CODES", "DIGEST_FIELDS", "PREFIX", "Approval", "TokenRefused", "action_digest", "b64decode",
    "b64encode", "key_id", "load_public_key", "public_key_text", "read_claims", "sign_approval",
    "strict_json", "verify_approval", "verify_signature",
]

PREFIX = "gk1"
DIGEST_FIELDS = ("tool", "agent", "session", "user", "args", "context")
# refusal codes, stable for programs
CODES = ("malformed", "signature", "action", "expired", "fingerprint", "used", "revoked")
# a high then a low surrogate as two code points: JSON writes it exactly as the one character it encodes
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


class TokenRefused(ApprovalError):
    """An approval token was refused; `code` is one of `CODES`."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Approval:
    """The claims of a verified token."""

    request_id: str
    digest: str
    agent: str | None
    fingerprint: str
    expires_us: int
    nonce: str
    issued_us: int
    key_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"rid": self.request_id, "digest": self.digest, "agent": self.agent, "fp": self.fingerprint,
                "exp": self.expires_us, "nonce": self.nonce, "iat": self.issued_us, "kid": self.key_id}


# ---- the call's digest ---------------------------------------------------------------------------------
def strict_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, ASCII escapes) of a value that has an exact JSON form.

    Raises `ValueError` for anything JSON would have to guess at: NaN or infinities, non-string keys,
    objects that are not dicts, lists, strings, numbers, booleans or null, and strings holding a surrogate
    pair as two code points (JSON reads it back as the one character it encodes).
    """
    _check(value, 0)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _check(value: Any, depth: int) -> None:
    if depth > 200:
        raise ValueError("nested deeper than 200 levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"`{value}` has no JSON form")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"object key {key!r} is not a string")
            _check_text(key)
            _check(item, depth + 1)
        return
    raise ValueError(f"a value of type `{type(value).__name__}` has no JSON form")


def _check_text(text: str) -> None:
    if _SURROGATE_PAIR.search(text) is not None:
        raise ValueError("a string holds a UTF-16 surrogate pair, which JSON cannot tell from the character "
                         "it encodes")


def action_digest(action: Any) -> str:
    """`sha256:` of the strict canonical JSON of the call's tool, identity, args and context.

    `action` is an `Action` or a contract-shaped mapping; a missing `args` or `context` is `{}`.
    """
    record = action.to_record() if hasattr(action, "to_record") else action
    if not isinstance(record, Mapping):
        raise ValueError("an action is a mapping with at least `tool`")
    seen = {k: record.get(k) for k in DIGEST_FIELDS}
    seen["args"] = {} if seen["args"] is None else seen["args"]
    seen["context"] = {} if seen["context"] is None else seen["context"]
    if not isinstance(seen["tool"], str) or not isinstance(seen["args"], Mapping) \
            or not isinstance(seen["context"], Mapping):
        raise ValueError("an action needs a string `tool` and object `args` and `context`")
    return "sha256:" + hashlib.sha256(strict_json(seen).encode("ascii")).hexdigest()


# ---- keys ----------------------------------------------------------------------------------------------
def load_public_key(key: Any) -> Any:
    """An Ed25519 public key from a key object, PEM text or bytes, `ed25519:<base64>`, or a file path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, Path):
        key = key.read_bytes()
    if isinstance(key, str):
        if key.startswith("ed25519:"):
            return Ed25519PublicKey.from_public_bytes(b64decode(key.removeprefix("ed25519:")))
        if "BEGIN" not in key and Path(key).is_file():
            return load_public_key(Path(key))
        key = key.encode()
    if isinstance(key, bytes):
        loaded = serialization.load_pem_public_key(key)
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return loaded
    raise ValueError(f"cannot read a public key from a `{type(key).__name__}`")


def key_id(public_key: Any) -> str:
    """A short stable name for a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = load_public_key(public_key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public_key: Any) -> str:
    """The `ed25519:<base64url>` form of a public key (what the service publishes)."""
    from cryptography.hazmat.primitives import serialization

    raw = load_public_key(public_key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + b64encode(raw)


# ---- tokens --------------------------------------------------------------------------------------------
def sign_approval(private_key: Any, claims: Approval) -> str:
    """The token for `claims`, signed with the service's Ed25519 private key."""
    body = PREFIX + "." + b64encode(strict_json(claims.to_dict()).encode("ascii"))
    return body + "." + b64encode(private_key.sign(body.encode("ascii")))


def read_claims(token: Any) -> Approval:
    """The claims of a token without checking its signature (to route it; never to trust it)."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        raise TokenRefused("not an approval token", "malformed")
    prefix, payload, _ = token.split(".")
    if prefix != PREFIX:
        raise TokenRefused(f"not a `{PREFIX}` approval token", "malformed")
    try:
        raw = json.loads(b64decode(payload))
        claims = Approval(str(raw["rid"]), str(raw["digest"]), raw["agent"], str(raw["fp"]), int(raw["exp"]),
                          str(raw["nonce"]), int(raw["iat"]), str(raw["kid"]))
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        # OverflowError: an infinite `exp`/`iat`; RecursionError: a deeply nested payload
        raise TokenRefused(f"the approval token cannot be read: {exc}", "malformed") from exc
    if claims.agent is not None and not isinstance(claims.agent, str):
        raise TokenRefused("the approval token's agent is not a string", "malformed")
    return claims


def verify_signature(token: str, public_key: Any) -> Approval:
    """The claims of `token` once its signature checks out with `public_key` (`TokenRefused` otherwise)."""
    from cryptography.exceptions import InvalidSignature

    claims = read_claims(token)
    try:
        key = load_public_key(public_key)
    except (ValueError, TypeError, OSError) as exc:
        raise TokenRefused(f"cannot read the public key: {exc}", "signature") from exc
    body, _, signature = token.rpartition(".")
    try:
        key.verify(b64decode(signature), body.encode("ascii"))
    except (InvalidSignature, ValueError) as exc:
        raise TokenRefused(f"the approval token for `{claims.request_id}` was not signed by this service's key "
                           f"(it names key `{claims.key_id}`, this is `{key_id(key)}`)", "signature") from exc
    return claims


def verify_approval(token: str, action: Any, public_key: Any, *, now: float | None = None,
                    fingerprint: str | None = None) -> Approval:
    """Check that `token` approves exactly `action`, was signed by `public_key` and has not expired.

    >>> verify_approval(token, {"tool": "payment.send", "agent": "billing-bot", "args": {"amount": 250}}, key)

    Raises `TokenRefused` with `code`: `malformed`, `signature` (another key, or altered), `action` (a
    different call: other arguments, tool, agent, user, session or context), `expired`, or `fingerprint`
    (issued under a policy other than `fingerprint`). `now` is seconds since the epoch (default: the clock).
    Single use is the service's: consume the token there before acting.
    """
    claims = verify_signature(token, public_key)
    try:
        digest = action_digest(action)
    except ValueError as exc:
        raise TokenRefused(f"the call cannot be checked against its approval: {exc}", "action") from exc
    if digest != claims.digest:
        raise TokenRefused(f"the approval for `{claims.request_id}` is for another call ({claims.digest}), "
                           f"not this one ({digest})", "action")
    now_us = round((time.time() if now is None else now) * 1_000_000)
    if now_us >= claims.expires_us:
        raise TokenRefused(f"the approval for `{claims.request_id}` expired", "expired")
    if fingerprint is not None and fingerprint != claims.fingerprint:
        raise TokenRefused(f"the approval for `{claims.request_id}` was given under policy {claims.fingerprint}, "
                           f"not {fingerprint}", "fingerprint")
    return claims


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict base64url without padding: any other character is an error, so a token has one spelling."""
    if not isinstance(text, str) or not text.isascii() or any(c in text for c in "=+/"):
        raise ValueError("not base64url")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from None
