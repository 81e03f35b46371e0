"""The approvals service (`gatekit serve`): approval state, principals, signing key and audit, out of the
agents' reach. Needs the `server` extra (Starlette, uvicorn, cryptography)."""
