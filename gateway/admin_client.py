"""The one client of a gateway's admin port (gateway/rest.py's AdminFront): /v1/pools, /v1/fault, /v1/traffic,
/metrics, /readyz. Used by `edgeinfer status`, `edgeinfer drill`, `edgeinfer rollout`, the tuner and the local
stack's supervisor."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def _segment(text: str) -> str:
    """One path segment of a URL: a model or version name with '/' and the like escaped."""
    return urllib.parse.quote(text, safe="")


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

    def update_pool(self, model: str, changes: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """PATCH Knative knobs (e.g. {"min-scale": 2}) of every version of `model`, or of one `version`. Returns
        {"model", "knobs" (the default version's), "versions": {version: knobs}}, or for one version
        {"model", "version", "knobs"}."""
        path = f"/v1/pools/{_segment(model)}" + (f"/{_segment(version)}" if version is not None else "")
        reply: dict[str, Any] = self.json("PATCH", path, changes)
        return reply

    def drain(self, model: str, version: str) -> int:
        """Stop every instance of `model`'s `version` gracefully (calls in flight finish) and hold it at zero until
        a request names it; returns how many instances were told to stop."""
        reply = self.json("POST", f"/v1/pools/{_segment(model)}/{_segment(version)}/drain")
        drained = reply.get("drained") if isinstance(reply, dict) else None
        if not isinstance(drained, int) or isinstance(drained, bool):
            raise AdminError(f"POST {self.base}/v1/pools/{model}/{version}/drain: unexpected answer {reply!r}")
        return drained

    # -- /v1/fault: drills ---------------------------------------------------------------------

    def set_fault(self, delay_ms: float) -> dict[str, Any]:
        """Delay every inference the region serves by `delay_ms`."""
        reply: dict[str, Any] = self.json("PUT", "/v1/fault", {"delay_ms": delay_ms})
        return reply

    def clear_fault(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.json("DELETE", "/v1/fault")
        return reply

    # -- /v1/traffic: traffic split and shadow per model (gateway/traffic.py) -------------------

    def traffic(self, model: str | None = None) -> dict[str, Any]:
        """One model's traffic policy (the default, generation 0, when none was set), or with no model
        {model: policy} of every routed model."""
        if model is not None:
            policy: dict[str, Any] = self.json("GET", f"/v1/traffic/{_segment(model)}")
            return policy
        reply = self.json("GET", "/v1/traffic")
        models = reply.get("models") if isinstance(reply, dict) else None
        return models if isinstance(models, dict) else {}

    def set_traffic(self, model: str, policy: dict[str, Any], expect_generation: int | None = None) -> dict[str, Any]:
        """PUT the model's whole policy ({"weights": {"1": 90, "2": 10}, "shadow": ..., "lease_seconds": ...});
        with `expect_generation`, refused with HTTP 409 (AdminError.status) when the policy changed since that
        generation was read. Returns the stored policy."""
        body = dict(policy)
        if expect_generation is not None:
            body["expect_generation"] = expect_generation
        stored: dict[str, Any] = self.json("PUT", f"/v1/traffic/{_segment(model)}", body)
        return stored

    def clear_traffic(self, model: str) -> dict[str, Any]:
        """Back to the default policy (every unversioned request to the latest version); returns it."""
        policy: dict[str, Any] = self.json("DELETE", f"/v1/traffic/{_segment(model)}")
        return policy

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
