"""Model repository layout: `DIR/<model>/<version>/model.onnx` (ONNX Runtime), `model.pt2` (a torch.export
program) or `model.pt` (TorchScript), plus optional `DIR/<model>/config.yaml` (and, as a drill feature read by the
function only, an optional `DIR/<model>/<version>/faults.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeinfer.functions.config import ConfigError, ModelConfig, Platform, check_platform, load_config

MODEL_FILE = "model.onnx"
# Every model file a version may hold, in the order one is picked when the config names no platform.
MODEL_FILES = (MODEL_FILE, "model.pt2", "model.pt")
PLATFORM_FILES: dict[Platform, tuple[str, ...]] = {"onnxruntime": (MODEL_FILE,), "pytorch": ("model.pt2", "model.pt")}
CONFIG_FILE = "config.yaml"
# Injected delay and errors of one version (functions/config.py's Faults): drills only.
FAULTS_FILE = "faults.yaml"


class RepositoryError(ValueError):
    """The repository cannot be served; the message says what to fix."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    # Version label -> model file, highest version last.
    versions: dict[str, Path]
    config: ModelConfig

    @property
    def latest(self) -> str:
        return next(reversed(self.versions))

    def platform(self, version: str) -> Platform:
        return self.config.resolved_platform(self.versions[version])


def model_file(version_dir: Path, platform: Platform | None = None) -> Path | None:
    """The model file of a version directory (of `platform`'s files when given), or None."""
    for name in PLATFORM_FILES[platform] if platform is not None else MODEL_FILES:
        if (version_dir / name).is_file():
            return version_dir / name
    return None


def version_key(label: str) -> tuple[int, int | str]:
    """The order of version labels: numbers numerically, then other labels by name (Triton's "latest")."""
    return (0, int(label)) if label.isdigit() else (1, label)


def versions_of(model_dir: Path) -> list[str]:
    """The version labels of a model directory that hold a model file, lowest first."""
    if not model_dir.is_dir():
        return []
    return sorted((v.name for v in model_dir.iterdir() if model_file(v) is not None), key=version_key)


def listing(root: Path) -> dict[str, list[str]]:
    """Model name -> version labels, without reading any config (a broken config.yaml still lists)."""
    if not root.is_dir():
        return {}
    models = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        labels = versions_of(model_dir)
        if labels:
            models[model_dir.name] = labels
    return models


def read_entry(model_dir: Path, name: str | None = None) -> ModelEntry:
    """One model of a repository (or any directory laid out as one); RepositoryError if it has no version."""
    name = name or model_dir.name
    labels = versions_of(model_dir)
    if not labels:
        raise RepositoryError(f"model '{name}': no {model_dir}/<version>/{' or '.join(MODEL_FILES)}")
    config_path = model_dir / CONFIG_FILE
    config = load_config(config_path)
    versions: dict[str, Path] = {}
    for label in labels:
        found = model_file(model_dir / label, config.platform)
        if found is None:
            wanted = " or ".join(PLATFORM_FILES[config.platform]) if config.platform else ""
            raise RepositoryError(
                f"model '{name}' version {label}: {config_path} says platform {config.platform}, which serves "
                f"{wanted}; {model_dir / label} has none"
            )
        try:
            check_platform(config, config.resolved_platform(found))
        except ValueError as exc:
            raise ConfigError(f"{config_path}: {exc} (model '{name}' version {label} is {found.name})") from None
        versions[label] = found
    return ModelEntry(name, versions, config)


def scan(root: Path, *, allow_empty: bool = False) -> list[ModelEntry]:
    """List the models of a repository, sorted by name."""
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} does not exist; create it with `edgeinfer examples {root}`")
    models = [read_entry(root / name) for name in listing(root)]
    if not models and not allow_empty:
        raise RepositoryError(f"no models in {root}: expected {root}/<model>/<version>/{MODEL_FILE}")
    return models
