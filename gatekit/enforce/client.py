"""A client of the approvals service, in the standard library only (an agent pays for no HTTP package).

>>> client = ApprovalsClient("http://127.0.0.1:8470", credential)
>>> client.submit({"action": {...}, "decision": {...}})["id"]

Every failure (unreachable, slow, refused, or an answer that is not what the service sends) raises
`ServiceError` (with `code` and HTTP `status` where the service gave them), so the gate can fail closed.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
import urllib.parse
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


IDLE = 4.0  # seconds a kept-alive connection is reused after its last answer (uvicorn closes idle ones at 5)


class ApprovalsClient:
    """Talks to `gatekit serve` with one credential. `timeout` is seconds per HTTP call.

    Each thread keeps its connection to the service open between calls (HTTP keep-alive): no TCP (and TLS)
    handshake per call. A kept connection is used again only if the service has not closed it (checked
    before sending) and it was idle less than `IDLE` seconds, so a request is never sent on a connection
    the service is closing; a failure after sending is reported, never silently sent again (a submission
    may have been filed). Redirects are not followed (the credential would go wherever they point), and no
    proxy is used.
    """

    def __init__(self, url: str, credential: str, *, timeout: float = 10.0, cafile: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the approvals service URL must be http(s)://host:port, not `{url}`")
        if not isinstance(credential, str) or not credential:
            raise ValueError("an approvals service needs a credential")
        self.url = url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None
        self._local = threading.local()  # per thread: {url: (connection, when its last answer ended)}

    @property
    def last_error(self) -> BaseException | None:
        """Why this thread's last call failed to get an answer (`ConnectionRefusedError`: nothing was sent)."""
        return getattr(self._local, "error", None)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float | None = None,
             auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.credential}"
        self._local.error = None
        con = None
        try:
            con = self._connection(timeout or self.timeout)
            con.request(method, urllib.parse.urlsplit(self.url).path + path, body=data, headers=headers)
            response = con.getresponse()
            raw = response.read(8 << 20)
            if response.will_close or not response.isclosed():  # closing, or more than we read: not reusable
                self._drop(con)
            else:
                self._keep(con)
        except (OSError, ValueError, http.client.IncompleteRead) as exc:
            self._local.error = exc
            self._drop(con)
            raise ServiceError(f"cannot reach the approvals service at {self.url}: {exc}", "unreachable") from None
        except http.client.HTTPException as exc:  # not HTTP at all (a bad status line, an endless header)
            self._local.error = exc
            self._drop(con)
            raise ServiceError(f"the approvals service at {self.url} does not speak HTTP: {type(exc).__name__}",
                               "garbage") from None
        if response.status >= 300:  # a redirect is an answer too: not followed
            try:
                detail = json.loads(raw[:1 << 16] or b"null")
            except ValueError:
                detail = None
            if isinstance(detail, dict) and isinstance(detail.get("error"), str):
                raise ServiceError(detail["error"], str(detail.get("code") or "refused"), response.status)
            raise ServiceError(f"the approvals service answered HTTP {response.status}", "garbage", response.status)
        try:
            return json.loads(raw)
        except ValueError:
            raise ServiceError("the approvals service answered something that is not JSON", "garbage") from None

    # -- connections -------------------------------------------------------------------------------------
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = {}
        con, since = kept.pop(self.url, (None, 0.0))
        if con is not None and (time.monotonic() - since > IDLE or _closed(con)):
            con.close()
            con = None
        if con is None:
            parts = urllib.parse.urlsplit(self.url)
            host, port = parts.hostname or "", parts.port
            if self._tls is not None:
                con = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
            else:
                con = http.client.HTTPConnection(host, port, timeout=timeout)
        else:
            con.timeout = timeout
            if con.sock is not None:
                con.sock.settimeout(timeout)
        return con

    def _keep(self, con: http.client.HTTPConnection) -> None:
        self._local.kept[self.url] = (con, time.monotonic())

    @staticmethod
    def _drop(con: http.client.HTTPConnection | None) -> None:
        if con is not None:
            con.close()

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
    def list(self, status: str = "pending", limit: int | None = None) -> list[dict[str, Any]]:
        """The requests with `status` (`all`: any), oldest first: at most `limit` (1-1000, default 1000)."""
        query = f"status={urllib.parse.quote(status)}" + (f"&limit={int(limit)}" if limit is not None else "")
        found = self._object(self.call("GET", f"/v1/requests?{query}")).get("requests")
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


def _closed(con: http.client.HTTPConnection) -> bool:
    """Whether a kept connection was closed by the service (or sent something unasked): readable while idle."""
    if con.sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(con.sock, select.POLLIN)
        return bool(poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows): select() does
        try:
            return bool(select.select([con.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True
