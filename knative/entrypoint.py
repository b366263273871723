"""The function image's entry point: turns the environment of the Knative manifest into `edgeinfer function`.

    EDGEINFER_MODEL_REPO            file:///models (baked into the image or mounted) or a directory
    EDGEINFER_MODELS                the models to serve, comma-separated (default: every model)
    EDGEINFER_MODEL_VERSION         serve only this version of the (one) model: each canary revision its own
    EDGEINFER_EXECUTION_PROVIDERS   e.g. tensorrt,cuda,cpu: written over each model's config.yaml
    EDGEINFER_TRT_ENGINE_CACHE      where TensorRT keeps built engines (the manifest's volume mount)
    EDGEINFER_FUNCTION_HOST         address to bind (default 127.0.0.1; the image sets 0.0.0.0)
    PORT                            set by Knative to the container port

It builds a view of the repository with only the chosen models (versions linked, configs rewritten), then
replaces itself with `edgeinfer function`, which loads and warms up the models before it answers SERVING:
the readiness probe holds traffic until then.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import ValidationError

from edgeinfer.functions.config import ModelConfig
from edgeinfer.knative.manifest import ENV_ENGINE_CACHE, ENV_MODEL_REPO, ENV_MODEL_VERSION, ENV_MODELS, ENV_PROVIDERS

ENV_HOST = "EDGEINFER_FUNCTION_HOST"
ENV_WORK_DIR = "EDGEINFER_WORK_DIR"
CONFIG_FILE = "config.yaml"


class EntrypointError(ValueError):
    """An environment the function cannot start from; the message names the variable and the fix."""


def repository_path(uri: str) -> Path:
    """A local directory from `file:///models` or `/models`."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = Path(unquote(parts.path if parts.scheme else uri))
        if not path.is_dir():
            raise EntrypointError(f"{ENV_MODEL_REPO}={uri}: {path} is not a directory in this container")
        return path
    raise EntrypointError(
        f"{ENV_MODEL_REPO}={uri}: only file:// is read directly; mount the repository as a volume "
        "(a PersistentVolumeClaim, a CSI bucket driver or an init container) and point at it with file://"
    )


def _model_config(source: Path, providers: Sequence[str], engine_cache: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if source.is_file():
        loaded = yaml.safe_load(source.read_text()) or {}
        if not isinstance(loaded, dict):
            raise EntrypointError(f"{source}: expected a mapping at the top level")
        data = loaded
    if providers:
        data["execution_providers"] = list(providers)
    if engine_cache:
        data["tensorrt"] = {**(data.get("tensorrt") or {}), "engine_cache_dir": engine_cache}
    try:
        ModelConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise EntrypointError(f"{source} with {ENV_PROVIDERS} and {ENV_ENGINE_CACHE} applied: {problems}") from None
    return data


def prepare(env: Mapping[str, str], work_dir: Path) -> Path:
    """The repository view `edgeinfer function` serves, built in `work_dir`."""
    source = repository_path(env.get(ENV_MODEL_REPO, "file:///models"))
    available = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    wanted = [m.strip() for m in env.get(ENV_MODELS, "").split(",") if m.strip()] or available
    missing = [m for m in wanted if m not in available]
    if missing:
        raise EntrypointError(
            f"{ENV_MODELS}: {', '.join(missing)} not in {source} (it has: {', '.join(available) or 'nothing'})"
        )
    version = env.get(ENV_MODEL_VERSION, "").strip()
    if version and len(wanted) != 1:
        raise EntrypointError(
            f"{ENV_MODEL_VERSION}={version} pins the version of one model; {ENV_MODELS} names "
            f"{', '.join(wanted) or 'every model'}: set it to one model"
        )
    if version and (version in (".", "..") or "/" in version or "\\" in version):
        raise EntrypointError(f"{ENV_MODEL_VERSION}={version}: a version is one folder's name, like 2")
    if version and not (source / wanted[0] / version).is_dir():
        found = sorted(p.name for p in (source / wanted[0]).iterdir() if p.is_dir())
        raise EntrypointError(
            f"{ENV_MODEL_VERSION}={version}: {source / wanted[0]} has no version {version} "
            f"(it has: {', '.join(found) or 'none'}); build the image with it or mount a repository that holds it"
        )
    providers = [p.strip() for p in env.get(ENV_PROVIDERS, "").split(",") if p.strip()]
    engine_cache = env.get(ENV_ENGINE_CACHE) or None
    if engine_cache:
        Path(engine_cache).mkdir(parents=True, exist_ok=True)
    for model in wanted:
        target = work_dir / model
        target.mkdir(parents=True, exist_ok=True)
        for entry in (source / model).iterdir():
            # With a pinned version, the other versions' folders stay out: this function cannot serve them.
            if version and entry.is_dir() and entry.name != version:
                continue
            if entry.name != CONFIG_FILE and not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry.resolve())
        config = _model_config(source / model / CONFIG_FILE, providers, engine_cache)
        (target / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    return work_dir


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ
    work_dir = Path(env.get(ENV_WORK_DIR) or tempfile.mkdtemp(prefix="edgeinfer-repo-"))
    try:
        view = prepare(env, work_dir)
    except (EntrypointError, OSError) as exc:
        print(f"edgeinfer entrypoint: {exc}", file=sys.stderr)
        return 2
    command = [
        sys.executable,
        "-m",
        "edgeinfer.cli",
        "function",
        "--model-repo",
        str(view),
        "--host",
        env.get(ENV_HOST, "127.0.0.1"),
        *(argv if argv is not None else sys.argv[1:]),
    ]
    sys.stdout.flush()
    os.execv(sys.executable, command)  # the function becomes the container's main process (signals, exit code)


if __name__ == "__main__":
    sys.exit(main())
