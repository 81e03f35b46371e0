"""`gatekit audit verify --state DIR [--store URL]`: the service's audit checked from its files (and its
PostgreSQL store, when it has one), with the public key and the retired ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from gatekit.errors import StoreError
from gatekit.server.audit import GENESIS, Verification, verify
from gatekit.server.keys import PUBLIC, RETIRED
from gatekit.server.ledger import exported_to
from gatekit.server.store import FILENAME, SQLiteStore, Store, open_store

__all__ = ["verify_state"]


def verify_state(state: Path, *, public_key: Path | Sequence[Path] | None = None, checkpoints: Path | None = None,
                 store: str | None = None) -> Verification:
    """Verify the chain in `state` (or in the PostgreSQL `store`) against its signed checkpoints and the
    exported ones.

    `public_key` (one file or several: a rotated key's and the current one) and `checkpoints` default to the
    files in `state` (`service.pub` and `retired-keys/*.pub`); keep copies elsewhere and pass them, since
    whoever can rewrite the state directory can rewrite those too.
    """
    if public_key is None:
        key_paths = [state / PUBLIC, *sorted((state / RETIRED).glob("*.pub"))]
    else:
        key_paths = [public_key] if isinstance(public_key, Path) else list(public_key)
    if store is None and not (state / FILENAME).is_file():
        return Verification(False, 0, GENESIS, (f"no approvals store in `{state}`",))
    keys: list[Any] = []
    for key_path in key_paths:
        try:
            keys.append(key_path.read_bytes())
        except OSError as exc:
            return Verification(False, 0, GENESIS, (f"cannot read the public key `{key_path}`: {exc.strerror}",))
    opened: Store
    try:
        if store is None:
            opened = SQLiteStore(state)
        else:
            opened = open_store(store, state, **({"create": False} if store.startswith("postgres") else {}))
    except StoreError as exc:
        return Verification(False, 0, GENESIS, (str(exc),))
    try:
        exported = checkpoints or exported_to(opened, state)
        with opened.read() as con:
            return verify(con, keys, exported)
    except StoreError as exc:
        return Verification(False, 0, GENESIS, (str(exc),))
    finally:
        opened.close()
