"""The approvals page (to be written): login by reviewer credential, pending requests, approve and deny."""

from __future__ import annotations

from typing import Any


def routes(service: Any, *, secure_cookies: bool = False) -> list[Any]:
    return []
