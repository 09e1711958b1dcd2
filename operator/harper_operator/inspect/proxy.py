"""The transport through the API server: a HarperClient whose requests go to the proxy subresource of the Service
or pod an operationsUrl names, with the user's own Kubernetes credentials.

The API server removes the `Authorization` header from every request it authenticates, before it proxies it,
so Harper's Basic credentials cannot ride there. The client logs in with Harper's `login` operation (credentials
in the body) and sends back the session cookie Harper sets (`authentication.enableSessions`, on by default since
Harper 4.2); `logout` ends the session afterwards. Harper names that cookie after the Host it is called as
(`<host>-hdb-session`, the address the API server dials), so a session holds for one pod, or for a Service with
one Harper behind it. Run against a real cluster by e2e/pods/test_provisioning_on_node.py (docs/cli.md).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..controller.members import Access
from ..harper.client import HarperClient, _decode, _first_to_finish
from ..harper.errors import HarperError, InvalidTargetError, TransientHarperError, UnexpectedAnswerError


# Seconds to wait before asking again when Harper refuses a fresh session (see _exchange): 3.5 s in all.
SESSION_SETTLING = (0.1, 0.2, 0.4, 0.8, 2.0)


def _status_error(raw: bytes) -> str | None:
    """The message of the API server's own error answer (a Status object), None for anything else."""
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("apiVersion") == "v1":
        return str(parsed.get("message") or parsed.get("reason") or "")
    return None


class ProxiedHarperClient(HarperClient):
    """A HarperClient whose every request goes through the API server's proxy subresource.

    Only the transport differs (this overrides HarperClient._exchange): the answers are read, mapped to errors and
    redacted by HarperClient itself. Harper's credentials go in the body of a `login` (the API server drops the
    Authorization header before proxying), and the session cookie Harper answers with goes with every later
    request. The API server does not check Harper's certificate, so tls.verify and the CA bundle play no part.
    """

    def __init__(self, access: Access, path: str, api: Any, *, timeout: float = 10.0) -> None:
        super().__init__(access.operations_url, username=access.username, password=access.password,
                         verify_tls=access.verify_tls, timeout=timeout)
        self.path = path
        self._api = api
        self._cookie: str | None = None
        self._answered_cookies: list[str] = []
        self._login_lock = asyncio.Lock()

    def _post(self, operation: str, body: dict[str, Any], cookie: str | None,
              timeout: float) -> tuple[int, bytes, str | None, list[str]]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if cookie:
            headers["Cookie"] = cookie
        method, url, headers, body, _ = self._api.param_serialize(
            "POST", self.path, header_params=headers, body=body, auth_settings=["BearerToken"])
        resp = self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=(5.0, timeout))
        raw = bytearray()
        cap = self._budget(operation).max_bytes
        try:
            while chunk := resp.response.read(64 * 1024):
                raw += chunk
                if len(raw) > cap:
                    break
        finally:
            resp.response.release_conn()
        content_type = resp.response.headers.get("Content-Type") or ""
        charset = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")[1:]
                        if p.strip().lower().startswith("charset=")), None)
        cookies = [c.split(";", 1)[0].strip() for c in resp.response.headers.getlist("Set-Cookie")]
        return resp.status, bytes(raw), charset, [c for c in cookies if "=" in c]

    async def _exchange(self, operation: str, body: dict[str, Any], auth_header: str | None,
                        timeout: float | None, retry_stale: bool,
                        resend_after: float | None = None) -> tuple[int, Any, str]:
        # auth_header (HarperClient's Basic credentials) is never sent: the API server would drop it.
        if operation != "login" and self._cookie is None:
            await self._log_in()
        total = timeout or self.timeout
        if resend_after is None or resend_after >= total:
            return await self._proxied(operation, body, total)
        # A request given up on keeps its thread until its own timeout: harmless in a short-lived command.
        return await _first_to_finish(operation, lambda seconds: self._proxied(operation, body, seconds), total,
                                      resend_after, self.operations_url)

    async def _proxied(self, operation: str, body: dict[str, Any], timeout: float) -> tuple[int, Any, str]:
        """One request through the API server (asked again while Harper has not stored a fresh session)."""
        waits = iter(() if operation == "login" else SESSION_SETTLING)
        while True:
            try:
                status, raw, charset, cookies = await asyncio.to_thread(
                    self._post, operation, body, None if operation == "login" else self._cookie, timeout)
            except Exception as e:  # noqa: BLE001 - the API server unreachable, TLS, kubeconfig credentials
                raise TransientHarperError(operation, None, f"cannot reach the API server: {type(e).__name__}: "
                                                            f"{str(e)[:300]}", url=self.operations_url) from None
            # Harper answers login before the session it made is stored (its login does not wait for the write):
            # a call right after may find no session and be refused (401, unexecuted). Ask again, a few times.
            if status != 401 or _status_error(raw) is not None or (wait := next(waits, None)) is None:
                break
            await asyncio.sleep(wait)
        cap = self._budget(operation).max_bytes
        if len(raw) > cap:
            raise UnexpectedAnswerError(operation, status, f"answer larger than {cap} bytes", url=self.operations_url)
        if not 200 <= status < 300 and (message := _status_error(raw)) is not None:
            raise self._refusal(operation, status, message)
        if operation == "login":
            self._answered_cookies = cookies
        self._check_budget(operation, status, raw)
        parsed, text = _decode(raw, charset)
        return status, parsed, text

    def _refusal(self, operation: str, status: int, message: str) -> HarperError:
        """The API server's own refusal (not Harper's answer) as the HarperError it amounts to."""
        where = self.path.split("/proxy/", 1)[0].removeprefix("/api/v1/namespaces/")
        if status in (401, 403):
            return InvalidTargetError(operation, status, f"the API server refused to proxy to {where}: {message} "
                                      "(needs create on services/proxy or pods/proxy there)", url=self.operations_url)
        if status == 404:
            return InvalidTargetError(operation, status, f"the API server found no {where}: {message}",
                                      url=self.operations_url)
        return TransientHarperError(operation, status, f"the API server could not reach Harper at {where}: "
                                                       f"{message}", url=self.operations_url)

    def _session_cookie(self, parsed: Any) -> str:
        if not self._answered_cookies:
            raise InvalidTargetError(
                "login", 200, "Harper answered login without a session cookie (authentication.enableSessions "
                "off?): through the API server, which drops the Authorization header, there is no other way to "
                "send Harper's credentials; run with --direct where operationsUrl resolves", url=self.operations_url)
        return "; ".join(self._answered_cookies)

    async def _log_in(self) -> None:
        async with self._login_lock:
            if self._cookie is None:
                body = {"operation": "login", "username": self.username,
                        "password": self._password.get_secret_value()}
                self._cookie = await self._call("login", body, self._session_cookie, auth=False)

    async def close(self) -> None:
        if self._cookie is not None:
            try:
                await self._call("logout", {"operation": "logout"}, lambda parsed: parsed)
            except HarperError:
                pass  # the session ends by itself in Harper
            self._cookie = None
        await super().close()
