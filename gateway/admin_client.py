"""The one client of a gateway's admin port (gateway/rest.py's AdminFront): /v1/pools, /v1/fault, /metrics,
/readyz. Used by `edgeinfer status`, `edgeinfer drill`, the tuner and the local stack's supervisor."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class AdminError(Exception):
    """An admin call that failed; the message names the method and URL. `status` is the HTTP status, or None
    when nothing answered (refused, timed out); `reason` is what went wrong, in a few words."""

    def __init__(self, message: str, *, status: int | None = None, reason: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class AdminClient:
    """`address` is HOST:PORT of the admin port; `token` its bearer token, when it has one."""

    def __init__(self, address: str, *, timeout: float = 5.0, token: str | None = None) -> None:
        self.address = address
        self.base = f"http://{address}"
        self.timeout = timeout
        self._token = token

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> bytes:
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout if timeout is None else timeout) as reply:
                payload: bytes = reply.read()
                return payload
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            message = f"{method} {url}: HTTP {exc.code}: {detail}"
            raise AdminError(message, status=exc.code, reason=exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"{method} {url}: {reason}", reason=reason) from None

    def json(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        payload = self.request(method, path, body, timeout)
        try:
            return json.loads(payload.decode())
        except ValueError as exc:
            raise AdminError(f"{method} {self.base + path}: not JSON: {exc}", reason=exc) from None

    # -- /v1/pools: the local backend's pools -------------------------------------------------

    def pools(self, timeout: float | None = None) -> dict[str, Any]:
        """model -> the pool's status (instances, knobs, ready, starting, last decision)."""
        reply = self.json("GET", "/v1/pools", timeout=timeout)
        pools = reply.get("pools") if isinstance(reply, dict) else None
        return pools if isinstance(pools, dict) else {}

    def warm(self, model: str) -> int:
        """Ready instances of `model`'s pool (0 if there is no such pool)."""
        pool = self.pools().get(model)
        ready = pool.get("ready") if isinstance(pool, dict) else None
        return ready if isinstance(ready, int) else 0

    def update_pool(self, model: str, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH Knative knobs of one pool (e.g. {"min-scale": 2}); returns {"model", "knobs"}."""
        reply: dict[str, Any] = self.json("PATCH", f"/v1/pools/{model}", changes)
        return reply

    # -- /v1/fault: drills ---------------------------------------------------------------------

    def set_fault(self, delay_ms: float) -> dict[str, Any]:
        """Delay every inference the region serves by `delay_ms`."""
        reply: dict[str, Any] = self.json("PUT", "/v1/fault", {"delay_ms": delay_ms})
        return reply

    def clear_fault(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.json("DELETE", "/v1/fault")
        return reply

    # -- scrape and probe ----------------------------------------------------------------------

    def metrics(self, timeout: float | None = None) -> str:
        """The Prometheus text of /metrics."""
        return self.request("GET", "/metrics", timeout=timeout).decode(errors="replace")

    def ready(self, timeout: float | None = None) -> bool:
        """/readyz: True when the gateway can serve; False when it answers not ready or does not answer."""
        try:
            self.request("GET", "/readyz", timeout=timeout)
        except AdminError:
            return False
        return True
