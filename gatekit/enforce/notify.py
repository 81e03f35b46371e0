"""Telling reviewers a request is waiting: any callable the broker calls with each new `Request`, or a webhook.

A notification that fails never blocks the request: unseen, it times out and is denied (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from typing import Any, Mapping

from gatekit.enforce.broker import Request

__all__ = ["Webhook"]


class Webhook:
    """POST every new request as JSON to a URL; with `secret`, sign the body (HMAC-SHA256).

    >>> Broker("approvals.db", notify=[Webhook("https://hooks.example/gatekit", secret="s3cret")])

    The body is `{"event": "approval.requested", "request": {...}}` (`Request.to_dict()`); the signature is
    in `X-Gatekit-Signature: sha256=<hex>`. Standard library only (urllib); honours the usual proxy
    environment variables.
    """

    def __init__(self, url: str, *, secret: bytes | str | None = None, timeout: float = 5.0,
                 headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL must be http:// or https://, not `{url}`")
        self.url = url
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout = timeout
        self.headers = dict(headers or {})

    def payload(self, request: Request) -> bytes:
        return json.dumps({"event": "approval.requested", "request": request.to_dict()},
                          ensure_ascii=False, default=str).encode("utf-8")

    def __call__(self, request: Request) -> None:
        body = self.payload(request)
        headers: dict[str, Any] = {"Content-Type": "application/json", "User-Agent": "gatekit", **self.headers}
        if self.secret:
            headers["X-Gatekit-Signature"] = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        post = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(post, timeout=self.timeout) as response:  # noqa: S310  (scheme checked)
            if not 200 <= response.status < 300:
                raise OSError(f"webhook `{self.url}` answered {response.status}")
