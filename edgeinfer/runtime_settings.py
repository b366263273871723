"""Triton's trace and logging extensions: TraceSetting and LogSettings change, at run time, the OpenTelemetry
sampling (edgeinfer.protocol.tracing) and the log level and format, with Triton's keys and value forms, over gRPC
(SettingsRPCs) and as Triton's HTTP JSON (/v2/trace/setting, /v2/logging: the *_json methods).

Trace settings (each a list of strings, as in Triton's proto): trace_level OFF | TIMESTAMPS and/or TENSORS (both
mean "spans"; a span holds no tensors), trace_rate N (one request in N traced), trace_count (traces left, -1
unlimited), log_frequency (kept and validated; Triton's own file mode uses it), trace_mode (opentelemetry, fixed),
trace_file (refused, as Triton refuses it). Settings given for a model override the global ones for that model;
an empty value clears a setting (a model's then follows the global one).

Log settings: log_info, log_warning, log_error (bool), log_verbose_level (>= 0; > 0 means DEBUG), log_format
(default | ISO8601), log_file (refused, as Triton refuses it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unimplemented
from edgeinfer.protocol.tracing import Sampling, Tracing

TRACE_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
TRACE_MODE = "opentelemetry"
TRACE_KEYS = ("trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file", "trace_mode")
LOG_KEYS = ("log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format")
LOG_FORMATS = ("default", "ISO8601")
UINT32_MAX = (1 << 32) - 1
INT32_MAX = (1 << 31) - 1
# Models with settings of their own, at most (a client names them).
MAX_MODEL_SETTINGS = 1024
_ISO8601_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Iso8601Formatter(logging.Formatter):
    """UTC timestamps as 2024-05-01T12:00:00.123Z."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _one(key: str, values: Sequence[str]) -> str:
    if len(values) != 1:
        raise InvalidArgument(f"trace setting '{key}': expect only 1 value, got {len(values)}")
    return values[0]


def _integer(key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise InvalidArgument(f"trace setting '{key}': unable to parse '{text}', expected an integer") from None
    if not low <= value <= high:
        raise InvalidArgument(f"trace setting '{key}': {value} is out of range [{low}, {high}]")
    return value


def _parse_trace(key: str, values: Sequence[str], exporting: bool) -> Any:
    """A trace setting's value, checked: a level list, or an int. Raises naming the key and what is allowed."""
    if key == "trace_level":
        levels = list(dict.fromkeys(values))
        unknown = [v for v in levels if v not in TRACE_LEVELS]
        if unknown:
            raise InvalidArgument(
                f"trace setting 'trace_level': unknown level(s) {', '.join(repr(u) for u in unknown)}; allowed: "
                "OFF, or TIMESTAMPS and/or TENSORS"
            )
        if "OFF" in levels and len(levels) > 1:
            raise InvalidArgument("trace setting 'trace_level': expect only one trace level 'OFF' is specified")
        if levels != ["OFF"] and not exporting:
            raise FailedPrecondition(
                "trace setting 'trace_level': tracing cannot be turned on: this server was started with --trace "
                "none; start it with --trace console or --trace otlp"
            )
        return levels
    if key == "trace_rate":
        return _integer(key, _one(key, values), 1, UINT32_MAX)
    if key == "trace_count":
        return _integer(key, _one(key, values), -1, INT32_MAX)
    if key == "log_frequency":
        return _integer(key, _one(key, values), 0, UINT32_MAX)
    if key == "trace_mode":
        if _one(key, values) != TRACE_MODE:
            raise InvalidArgument(
                f"trace setting 'trace_mode': this server traces with OpenTelemetry only; allowed: {TRACE_MODE}"
            )
        return TRACE_MODE
    if key == "trace_file":
        raise Unimplemented(
            "trace setting 'trace_file': trace file location can not be updated through network protocol"
        )
    raise InvalidArgument(f"unknown trace setting '{key}'; the settings are: {', '.join(TRACE_KEYS)}")


class RuntimeSettings:
    """The trace and log settings of one server, read and changed at run time."""

    def __init__(
        self,
        tracing: Tracing,
        logger: logging.Logger | None = None,
        *,
        known_model: Callable[[str], bool] | None = None,
    ) -> None:
        self._tracing = tracing
        self._logger = logger or logging.getLogger()
        # Triton answers INVALID_ARGUMENT for a model it does not serve; without a check, any name is taken.
        self._known_model = known_model
        on = tracing.exporting
        self._global: dict[str, Any] = {
            "trace_level": ["TIMESTAMPS"] if on else ["OFF"],
            "trace_rate": tracing.sampling.rate,
            "trace_count": tracing.sampling.remaining,
            "log_frequency": 0,
        }
        self._defaults = dict(self._global)
        self._models: dict[str, dict[str, Any]] = {}
        self._format = "default"
        self._verbose = 1  # reported while the logger is at DEBUG
        self._default_formatters: dict[logging.Handler, logging.Formatter | None] = {}

    # -- trace ----------------------------------------------------------------------------------

    def _check_model(self, model: str) -> None:
        if model and self._known_model is not None and not self._known_model(model):
            raise InvalidArgument(f"request for unknown model '{model}'")

    def _sampling(self, model: str) -> Sampling:
        if model:
            live = self._tracing.model_sampling.get(model)
            if live is not None:
                return live
        return self._tracing.sampling

    def trace(self, model: str = "") -> dict[str, list[str]]:
        """The trace settings in force (for `model`, its own over the global ones), as Triton reports them."""
        self._check_model(model)
        effective = {**self._global, **self._models.get(model, {})} if model else self._global
        return {
            "trace_level": list(effective["trace_level"]),
            "trace_rate": [str(effective["trace_rate"])],
            "trace_count": [str(self._sampling(model).remaining)],
            "trace_mode": [TRACE_MODE],
        }

    def update_trace(self, changes: Mapping[str, Sequence[str]], model: str = "") -> dict[str, list[str]]:
        """Apply `changes` (an empty value clears a setting), all or none; return the settings now in force."""
        self._check_model(model)
        parsed: dict[str, Any] = {}
        cleared: list[str] = []
        for key, values in changes.items():
            values = list(values)
            if not values and key in TRACE_KEYS and key not in ("trace_file", "trace_mode"):
                cleared.append(key)
            elif key != "trace_mode" or values:
                parsed[key] = _parse_trace(key, values, self._tracing.exporting)
        parsed.pop("trace_mode", None)
        if model:
            if model not in self._models and len(self._models) >= MAX_MODEL_SETTINGS:
                raise ResourceExhausted(
                    f"trace settings for model '{model}': {MAX_MODEL_SETTINGS} models have settings of their own, "
                    "the most this server keeps; clear some (an empty value) first"
                )
            own = self._models.setdefault(model, {})
            for key in cleared:
                own.pop(key, None)
            own.update(parsed)
            if not own:
                del self._models[model]
        else:
            for key in cleared:
                self._global[key] = self._defaults[key]
            self._global.update(parsed)
        count_changed = "trace_count" in parsed or "trace_count" in cleared
        if model:
            self._apply(model, count_changed)
        else:
            self._apply("", count_changed)
            for name, own in self._models.items():
                self._apply(name, count_changed and "trace_count" not in own)
        return self.trace(model)

    def _apply(self, model: str, count_changed: bool) -> None:
        """Push one scope's settings to Tracing, keeping its live count unless the count was set."""
        if model and model not in self._models:
            self._tracing.set_sampling(model, None)
            return
        effective = {**self._global, **self._models.get(model, {})}
        live = self._tracing.model_sampling.get(model) if model else self._tracing.sampling
        remaining = effective["trace_count"] if count_changed or live is None else live.remaining
        self._tracing.set_sampling(
            model,
            Sampling(
                on=self._tracing.exporting and effective["trace_level"] != ["OFF"],
                rate=effective["trace_rate"],
                remaining=remaining,
            ),
        )

    def trace_json(self, model: str = "") -> dict[str, Any]:
        """Triton's HTTP JSON for /v2[/models/{m}]/trace/setting: trace_level a list, the others strings."""
        return {k: (v if k == "trace_level" else v[0]) for k, v in self.trace(model).items()}

    def update_trace_json(self, body: Any, model: str = "") -> dict[str, Any]:
        """Validate a client's JSON object (a value: a string, a list of strings, or null to clear) and apply it."""
        if not isinstance(body, dict):
            raise InvalidArgument("the trace setting request must be a JSON object of setting names to values")
        changes: dict[str, list[str]] = {}
        for key, value in body.items():
            if value is None:
                changes[key] = []
            elif isinstance(value, str):
                changes[key] = [value]
            elif isinstance(value, int) and not isinstance(value, bool):
                changes[key] = [str(value)]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                changes[key] = value
            else:
                raise InvalidArgument(
                    f"trace setting '{key}': expected a string, a list of strings or null, got {type(value).__name__}"
                )
        self.update_trace(changes, model)
        return self.trace_json(model)

    # -- log ------------------------------------------------------------------------------------

    def log(self) -> dict[str, bool | int | str]:
        level = self._logger.getEffectiveLevel()
        return {
            "log_file": "",
            "log_info": level <= logging.INFO,
            "log_warning": level <= logging.WARNING,
            "log_error": level <= logging.ERROR,
            "log_verbose_level": self._verbose if level <= logging.DEBUG else 0,
            "log_format": self._format,
        }

    def update_log(self, changes: Mapping[str, object]) -> dict[str, bool | int | str]:
        """Apply `changes`, all or none (each checked first); return the settings now in force."""
        current = self.log()
        for key, value in changes.items():
            if key == "log_file":
                raise Unimplemented(
                    "log setting 'log_file': log file location can not be updated through network protocol"
                )
            if key in ("log_info", "log_warning", "log_error"):
                if not isinstance(value, bool):
                    raise InvalidArgument(f"log setting '{key}': expect a boolean (true or false)")
            elif key == "log_verbose_level":
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
                    raise InvalidArgument(f"log setting '{key}': expect an integer >= 0")
            elif key == "log_format":
                if value not in LOG_FORMATS:
                    raise InvalidArgument(
                        f"log setting 'log_format': invalid argument {value!r}; allowed: {', '.join(LOG_FORMATS)}"
                    )
            else:
                raise InvalidArgument(f"unknown log setting '{key}'; the settings are: {', '.join(LOG_KEYS)}")
            current[key] = value  # type: ignore[assignment]
        if set(changes) & {"log_info", "log_warning", "log_error", "log_verbose_level"}:
            if current["log_verbose_level"]:
                self._verbose = int(current["log_verbose_level"])
                level = logging.DEBUG
            elif current["log_info"]:
                level = logging.INFO
            elif current["log_warning"]:
                level = logging.WARNING
            elif current["log_error"]:
                level = logging.ERROR
            else:
                level = logging.CRITICAL + 10  # nothing
            self._logger.setLevel(level)
        if "log_format" in changes:
            self._set_format(str(current["log_format"]))
        return self.log()

    def _set_format(self, name: str) -> None:
        handlers = self._logger.handlers
        if name == "ISO8601":
            for handler in handlers:
                self._default_formatters.setdefault(handler, handler.formatter)
                handler.setFormatter(_Iso8601Formatter(_ISO8601_FORMAT))
        else:
            for handler in handlers:
                if handler in self._default_formatters:
                    handler.setFormatter(self._default_formatters.pop(handler))
        self._format = name

    def log_json(self) -> dict[str, Any]:
        """Triton's HTTP JSON for /v2/logging."""
        return dict(self.log())

    def update_log_json(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidArgument("the log setting request must be a JSON object of setting names to values")
        return dict(self.update_log(body))


class SettingsRPCs:
    """TraceSetting and LogSettings of inference.GRPCInferenceService: a provider for add_inference_service."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self._settings = settings

    async def TraceSetting(self, request: pb.TraceSettingRequest, context: Any) -> pb.TraceSettingResponse:
        model = request.model_name
        if request.settings:
            current = self._settings.update_trace(
                {key: list(value.value) for key, value in request.settings.items()}, model
            )
        else:
            current = self._settings.trace(model)
        reply = pb.TraceSettingResponse()
        for key, values in current.items():
            reply.settings[key].value.extend(values)
        return reply

    async def LogSettings(self, request: pb.LogSettingsRequest, context: Any) -> pb.LogSettingsResponse:
        if request.settings:
            changes: dict[str, object] = {}
            for key, value in request.settings.items():
                choice = value.WhichOneof("parameter_choice")
                changes[key] = None if choice is None else getattr(value, choice)
            current = self._settings.update_log(changes)
        else:
            current = self._settings.log()
        reply = pb.LogSettingsResponse()
        for key, setting in current.items():
            if isinstance(setting, bool):
                reply.settings[key].bool_param = setting
            elif isinstance(setting, int):
                reply.settings[key].uint32_param = setting
            else:
                reply.settings[key].string_param = setting
        return reply
