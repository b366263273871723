"""Model repository layout: `DIR/<model>/<version>/model.onnx` plus optional `DIR/<model>/config.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeinfer.functions.config import ModelConfig, load_config

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.yaml"


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


def _version_key(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


def scan(root: Path) -> list[ModelEntry]:
    """List the models of a repository, sorted by name."""
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} does not exist; create it with `edgeinfer examples {root}`")
    models: list[ModelEntry] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        labels = sorted((v.name for v in model_dir.iterdir() if (v / MODEL_FILE).is_file()), key=_version_key)
        if not labels:
            continue
        versions = {label: model_dir / label / MODEL_FILE for label in labels}
        models.append(ModelEntry(model_dir.name, versions, load_config(model_dir / CONFIG_FILE)))
    if not models:
        raise RepositoryError(f"no models in {root}: expected {root}/<model>/<version>/{MODEL_FILE}")
    return models
