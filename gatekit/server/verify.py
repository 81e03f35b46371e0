"""`gatekit audit verify --state DIR`: the service's audit checked from its files, with the public key."""

from __future__ import annotations

from pathlib import Path

from gatekit.errors import StoreError
from gatekit.server.audit import GENESIS, Verification, verify
from gatekit.server.keys import PUBLIC
from gatekit.server.ledger import exported_to
from gatekit.server.store import FILENAME, SQLiteStore


def verify_state(state: Path, *, public_key: Path | None = None, checkpoints: Path | None = None) -> Verification:
    """Verify the chain in `state` against its signed checkpoints and the exported ones.

    `public_key` and `checkpoints` default to the files in `state`; keep copies elsewhere and pass them,
    since whoever can rewrite the state directory can rewrite those too.
    """
    key_path = public_key or state / PUBLIC
    if not (state / FILENAME).is_file():
        return Verification(False, 0, GENESIS, (f"no approvals store in `{state}`",))
    try:
        key = key_path.read_bytes()
    except OSError as exc:
        return Verification(False, 0, GENESIS, (f"cannot read the public key `{key_path}`: {exc.strerror}",))
    try:
        store = SQLiteStore(state)
    except StoreError as exc:
        return Verification(False, 0, GENESIS, (str(exc),))
    try:
        exported = checkpoints or exported_to(store, state)
        with store.read() as con:
            return verify(con, key, exported)
    except StoreError as exc:
        return Verification(False, 0, GENESIS, (str(exc),))
    finally:
        store.close()
