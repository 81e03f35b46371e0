"""The service's Ed25519 signing key, kept in its state directory (`service.key`, mode 0600).

Replicas of one service share the key (a copy of `service.key` in each replica's state directory, or one
shared directory): a token one replica signs is consumed through another, and every replica's checkpoints
verify with the one public key. A key rotated out keeps verifying the checkpoints it signed: its public half
goes into `retired-keys/` (any `*.pub` there), which `trusted_keys` adds to the current one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekit.errors import StoreError

PRIVATE, PUBLIC, RETIRED = "service.key", "service.pub", "retired-keys"


def signing_key(state: Path) -> Any:
    """The state directory's signing key, created (with its public half in `service.pub`) on first use."""
    path = state / PRIVATE
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"the signing key `{path}` cannot be read: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise StoreError(f"`{path}` is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # written aside, then linked into place: replicas starting at once on one shared state directory
    # agree on the first key linked, and none reads a half-written one
    draft = state / f".{PRIVATE}.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(draft, path)
    except FileExistsError:
        return signing_key(state)
    finally:
        draft.unlink()
    (state / PUBLIC).write_bytes(public_pem(key.public_key()))
    return key


def trusted_keys(state: Path, current: Any) -> list[Any]:
    """The keys whose checkpoints this state directory's audit accepts: `current` and every retired one."""
    keys = [current]
    for path in sorted((state / RETIRED).glob("*.pub")):
        try:
            keys.append(serialization.load_pem_public_key(path.read_bytes()))
        except (ValueError, TypeError, OSError) as exc:
            raise StoreError(f"the retired key `{path}` cannot be read: {exc}") from exc
    return keys


def public_pem(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
