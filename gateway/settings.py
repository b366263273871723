"""Gateway settings: flags of `edgeinfer gateway`, or EDGEINFER_GATEWAY_* environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEINFER_GATEWAY_", extra="forbid")

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

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("region must be letters, digits, '-', '_' or '.'")
        return value
