"""Function settings: flags of `edgeinfer function` (converted once, at the CLI edge), or EDGEINFER_FUNCTION_*
environment variables for what no flag set (the metrics token)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgeinfer.exposure import is_loopback
from edgeinfer.functions.priority import DEFAULT_COMPUTE_NICE

DEFAULT_PORT = 8080
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
METRICS_TOKEN_ENV = "EDGEINFER_FUNCTION_METRICS_TOKEN"


class FunctionSettings(BaseSettings):
    # Errors never echo the input: it may hold the metrics token.
    model_config = SettingsConfigDict(env_prefix="EDGEINFER_FUNCTION_", extra="forbid", hide_input_in_errors=True)

    model_repo: Path
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_token: SecretStr | None = None
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    # Added to the nice value of the threads that run the models (functions/priority.py).
    compute_nice: int = Field(default=DEFAULT_COMPUTE_NICE, ge=0, le=19)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    trace: Literal["none", "console", "otlp"] = "none"
    trace_file: Path | None = None
    log_level: str = "INFO"
    # Triton's model control: none (all at start, no load/unload), explicit (--load-model at start, then the
    # repository RPCs), poll (follow the repository, rescanning every repository_poll_secs).
    model_control_mode: Literal["none", "explicit", "poll"] = "none"
    load_models: tuple[str, ...] = ()
    repository_poll_secs: float = Field(default=15.0, gt=0, le=86_400)

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # An empty EDGEINFER_FUNCTION_METRICS_TOKEN means no token, as if unset.
        return None if value == "" else value

    @model_validator(mode="after")
    def _exposure(self) -> FunctionSettings:
        if self.tls_cert is None and self.tls_key is None:
            if self.tls_client_ca is not None:
                raise ValueError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS runs over TLS")
        elif self.tls_cert is None or self.tls_key is None:
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither for h2c")
        if self.load_models and self.model_control_mode != "explicit":
            raise ValueError("--load-model needs --model-control-mode explicit (the other modes load every model)")
        if self.metrics_port is not None and self.metrics_token is None and not is_loopback(self.metrics_host):
            raise ValueError(
                f"--metrics-host {self.metrics_host} is not loopback: give the metrics port a token "
                f"(--metrics-token-file FILE or {METRICS_TOKEN_ENV}), or keep the default 127.0.0.1"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None
