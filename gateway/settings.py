"""Gateway settings: flags of `edgeinfer gateway`, or EDGEINFER_GATEWAY_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeinfer.exposure import is_loopback


def parse_route(text: str) -> tuple[str, list[str]]:
    """`MODEL=HOST:PORT[,HOST:PORT...]` → (model, endpoints)."""
    model, sep, targets = text.partition("=")
    endpoints = [t.strip() for t in targets.split(",") if t.strip()]
    if not sep or not model.strip() or not endpoints:
        raise ValueError(f"--route {text!r}: expected MODEL=HOST:PORT[,HOST:PORT...]")
    for endpoint in endpoints:
        host, colon, port = endpoint.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"--route {text!r}: endpoint {endpoint!r} is not HOST:PORT")
    return model.strip(), endpoints


DRAIN_DELAY_S = 1.0
MAX_WORKERS = 256


def parse_workers(text: str) -> int:
    """`--workers N|auto` (or EDGEINFER_GATEWAY_WORKERS) → N, or 0 for auto: one per CPU this process may use."""
    value = text.strip().lower()
    if value == "auto":
        return 0
    if not value.isdigit():
        raise ValueError(
            f"{text!r} is not a number of gateway processes: give 1 or more, or auto (or 0) for one per CPU "
            "this process may use"
        )
    count = int(value)
    if count > MAX_WORKERS:
        raise ValueError(f"{count} is more than {MAX_WORKERS} processes; auto gives one per CPU")
    return count


class GatewaySettings(BaseSettings):
    # Errors never echo the input: it may hold the admin token or a Redis password.
    model_config = SettingsConfigDict(env_prefix="EDGEINFER_GATEWAY_", extra="forbid", hide_input_in_errors=True)

    region: str = "local"
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    rest_port: int | None = Field(default=None, ge=0, le=65535)
    admin_port: int | None = Field(default=None, ge=0, le=65535)
    redis_url: str | None = None
    redis_prefix: str = "edgeinfer:"
    # model -> function endpoints, for the static backend.
    routes: dict[str, list[str]] = Field(default_factory=dict)
    max_message_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # How long fetched model metadata is trusted before it is fetched again.
    metadata_ttl_seconds: float = Field(default=30.0, gt=0)
    default_timeout_ms: int = Field(default=10_000, gt=0)
    l1_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    cache_max_entry_bytes: int = Field(default=1024 * 1024, gt=0)
    redis_read_budget_ms: float = Field(default=5.0, gt=0)
    redis_write_budget_ms: float = Field(default=50.0, gt=0)
    xfetch_beta: float = Field(default=1.0, ge=0)
    trace: str = "none"
    # Security (docs/security.md): TLS on the fronts (mTLS with a client CA), TLS to the functions,
    # API keys → tenants, and the admin port's address and token.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    function_tls_ca: Path | None = None
    function_tls_cert: Path | None = None
    function_tls_key: Path | None = None
    function_tls_server_name: str | None = None
    api_keys: Path | None = None
    admin_host: str = "127.0.0.1"
    admin_token: SecretStr | None = None
    # Where misses go (docs/knative.md): static --route endpoints, a local scale-to-zero pool, or Knative.
    backend: Literal["static", "local", "knative"] = "static"
    # --backend local: the repository to serve, logs and per-model repositories (default: a new temporary
    # directory), and the pool's knobs.
    model_repo: Path | None = None
    state_dir: Path | None = None
    max_instances: int = 4
    autoscale_tick: float = 2.0
    pool_max_queue: int = 256
    # --backend knative: model -> its Knative Service, and how to reach them.
    knative_services: dict[str, str] = Field(default_factory=dict)
    knative_namespace: str = "default"
    knative_ingress: str | None = None
    knative_domain: str | None = None
    trace_file: Path | None = None
    log_level: str = "INFO"
    # On SIGTERM, how long NOT_SERVING is reported before new calls are refused: a few of Envoy's 0.2 s checks.
    drain_delay: float = Field(default=DRAIN_DELAY_S, ge=0)
    # Processes serving the ports (gateway/workers.py): above 1, a parent runs this many workers on them.
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    # Set by that parent in each worker's settings: share the ports (SO_REUSEPORT), and which worker this is.
    reuse_port: bool = False
    worker_index: int | None = Field(default=None, ge=0)

    @property
    def function_tls(self) -> bool:
        return self.function_tls_ca is not None or self.function_tls_cert is not None

    @model_validator(mode="after")
    def _security(self) -> GatewaySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither for plaintext")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS runs over TLS")
        if self.admin_port is not None and not is_loopback(self.admin_host) and self.admin_token is None:
            raise ValueError(
                f"--admin-host {self.admin_host} is not loopback: set an admin token "
                "(--admin-token-file FILE or EDGEINFER_GATEWAY_ADMIN_TOKEN), or keep the default 127.0.0.1"
            )
        return self

    def check_backend(self) -> None:
        """ValueError, naming the flag to fix, when the backend lacks what it needs or gets what it cannot use."""
        if self.backend == "local":
            if self.function_tls:
                raise ValueError(
                    "--function-tls-* applies to --backend static; the local pool's functions "
                    "are its own children on loopback"
                )
            if self.model_repo is None:
                raise ValueError("--backend local needs --model-repo DIR")
        elif self.backend == "knative":
            if self.function_tls_ca is not None:
                raise ValueError("--function-tls-* applies to --backend static; Knative Services are reached over h2c")
            if not self.knative_services:
                raise ValueError("--backend knative needs --knative-service MODEL[=SERVICE] for each model")
        elif not self.routes:
            raise ValueError("no --route given; add --route MODEL=HOST:PORT for each model")

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("region must be letters, digits, '-', '_' or '.'")
        return value
