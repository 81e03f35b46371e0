"""The service's Ed25519 signing key, kept in its state directory (`service.key`, mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekit.errors import StoreError

PRIVATE, PUBLIC = "service.key", "service.pub"


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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    (state / PUBLIC).write_bytes(public_pem(key.public_key()))
    return key


def public_pem(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
