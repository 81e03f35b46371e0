"""The approvals service (`gatekit serve`): approval state, principals, signing key and audit, out of the
agents' reach. Needs the `server` extra (Starlette, uvicorn, cryptography)."""

# No library API: the service is a command (`gatekit serve`, `gatekit principals`). Its modules are internal;
# the CLI reaches it through gatekit.server.commands and `gatekit audit verify` through gatekit.server.verify,
# the two modules with an `__all__` (tests/test_surface.py holds every other import to that).
__all__: list[str] = []
