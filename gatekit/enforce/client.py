"""A client of the approvals service, in the standard library only (an agent pays for no HTTP package).

>>> client = ApprovalsClient("http://127.0.0.1:8470", credential)
>>> client.submit({"action": {...}, "decision": {...}})["id"]

Every failure (unreachable, slow, refused, or an answer that is not what the service sends) raises
`ServiceError` (with `code` and HTTP `status` where the service gave them), so the gate can fail closed.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gatekit.errors import ApprovalError

__all__ = ["ApprovalsClient", "ServiceError"]


class ServiceError(ApprovalError):
    """The approvals service refused, failed or could not be reached. `code`: the service's, or `unreachable`,
    `garbage`; `status`: the HTTP status, or None."""

    def __init__(self, message: str, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth retrying: the service could not be reached or was unavailable, it did not refuse."""
        return self.status is None and self.code == "unreachable" or self.status in (502, 503, 504)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the credential to wherever it points."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


class ApprovalsClient:
    """Talks to `gatekit serve` with one credential. `timeout` is seconds per HTTP call."""

    def __init__(self, url: str, credential: str, *, timeout: float = 10.0, cafile: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the approvals service URL must be http(s)://host:port, not `{url}`")
        if not isinstance(credential, str) or not credential:
            raise ValueError("an approvals service needs a credential")
        self.url = url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        handlers: list[Any] = [urllib.request.ProxyHandler({}), _NoRedirect()]  # no proxy, no redirect
        if parts.scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
        self._opener = urllib.request.build_opener(*handlers)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float | None = None,
             auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.credential}")
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                raw = response.read(8 << 20)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read(1 << 16) or b"null")
            except ValueError:
                detail = None
            if isinstance(detail, dict) and isinstance(detail.get("error"), str):
                raise ServiceError(detail["error"], str(detail.get("code") or "refused"), exc.code) from None
            raise ServiceError(f"the approvals service answered HTTP {exc.code}", "garbage", exc.code) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.IncompleteRead) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"cannot reach the approvals service at {self.url}: {reason}", "unreachable") from None
        except http.client.HTTPException as exc:  # not HTTP at all (a bad status line, an endless header)
            raise ServiceError(f"the approvals service at {self.url} does not speak HTTP: {type(exc).__name__}",
                               "garbage") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServiceError("the approvals service answered something that is not JSON", "garbage") from None

    # -- what gates do -----------------------------------------------------------------------------------
    def public_key(self) -> dict[str, Any]:
        found = self._object(self.call("GET", "/v1/public-key", auth=False))
        if not isinstance(found.get("key"), str):
            raise ServiceError("the approvals service answered a public key without `key`", "garbage")
        return found

    def submit(self, submission: dict[str, Any]) -> dict[str, Any]:
        return self._request(self.call("POST", "/v1/requests", submission))

    def get(self, request_id: str, wait: float | None = None) -> dict[str, Any]:
        path = "/v1/requests/" + urllib.parse.quote(request_id, safe="")
        if wait is not None:
            path += f"?wait={max(0.0, wait):.3f}"
        return self._request(self.call("GET", path, timeout=(wait or 0) + self.timeout))

    def consume(self, token: str, key: str, action: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"token": token, "key": key}
        if action is not None:
            body["action"] = action
        return self._request(self.call("POST", "/v1/consume", body))

    def withdraw(self, request_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._request(self.call("POST", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}/withdraw",
                                       {"reason": reason}))

    def outcome(self, request_id: str, outcome: str, error: str | None = None) -> None:
        self.call("POST", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}/outcome",
                  {"outcome": outcome, "error": error})

    # -- what reviewers do -------------------------------------------------------------------------------
    def list(self, status: str = "pending") -> list[dict[str, Any]]:
        found = self._object(self.call("GET", f"/v1/requests?status={urllib.parse.quote(status)}")).get("requests")
        if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
            raise ServiceError("the approvals service answered a malformed list", "garbage")
        return found

    def vote(self, request_id: str, decision: str, evidence: str, *, role: str | None = None,
             reason: str | None = None, break_glass: bool = False, duration: str | None = None) -> dict[str, Any]:
        body = {"decision": decision, "evidence": evidence, "role": role, "reason": reason,
                "break_glass": break_glass, "duration": duration}
        return self._request(self.call("POST", f"/v1/requests/{urllib.parse.quote(request_id, safe='')}/votes",
                                       {k: v for k, v in body.items() if v is not None}))

    def whoami(self) -> dict[str, Any]:
        return self._object(self.call("GET", "/v1/whoami"))

    @staticmethod
    def _object(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ServiceError("the approvals service answered something that is not an object", "garbage")
        return value

    @classmethod
    def _request(cls, value: Any) -> dict[str, Any]:
        value = cls._object(value)
        if not isinstance(value.get("id"), str) or not isinstance(value.get("status"), str):
            raise ServiceError("the approvals service answered a request without `id` and `status`", "garbage")
        return value
