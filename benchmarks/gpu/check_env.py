"""What benchmarks/gpu/runtimes.py needs from the Python it runs in, checked before anything starts.

Standard library only, so it runs where everything else is missing. Prints one line per requirement and, when
something required is missing (or too old), exactly which distributions to carry as wheels
(benchmarks/gpu/README.md, benchmarks/gpu/wheels.txt), then exits 1. Optional ones (torch, uvloop) only
narrow what is measured.

    python benchmarks/gpu/check_env.py [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# import name -> (distribution, minimum version or "", why)
REQUIRED: dict[str, tuple[str, str, str]] = {
    "grpc": ("grpcio", "1.78.0", "the function's gRPC front and the load generator"),
    "google.protobuf": ("protobuf", "6.31.1", "the checked-in Open Inference stubs are protobuf 6.31 gencode"),
    "grpc_health": ("grpcio-health-checking", "", "the function's gRPC health service"),
    "numpy": ("numpy", "1.26", "tensors"),
    "yaml": ("PyYAML", "6", "config.yaml"),
    "pydantic": ("pydantic", "2.6", "config.yaml validation"),
    "pydantic_core": ("pydantic-core", "", "pydantic"),
    "annotated_types": ("annotated-types", "", "pydantic"),
    "typing_inspection": ("typing-inspection", "", "pydantic >= 2.11"),
    "typing_extensions": ("typing-extensions", "4.16.0", "pydantic-core 2.50 needs 4.16"),
    "pydantic_settings": ("pydantic-settings", "2.2", "the function's settings"),
    "dotenv": ("python-dotenv", "", "pydantic-settings"),
    "prometheus_client": ("prometheus-client", "0.20", "the function's metrics (cold-start phases, compute time)"),
    "opentelemetry.trace": ("opentelemetry-api", "1.25", "the function's trace-context handling"),
    "hdrh": ("hdrhistogram", "0.10", "`edgeinfer bench`'s HDR latency histograms"),
    "rich": ("rich", "13", "progress and tables"),
    "matplotlib": ("matplotlib", "3.8", "the PNG"),
    "onnx": ("onnx", "1.16", "building the ranker"),
    "onnxruntime": ("onnxruntime", "1.20", "the ONNX Runtime variants"),
}
OPTIONAL: dict[str, tuple[str, str, str]] = {
    "torch": ("torch", "2.5", "the PyTorch variants (CPU, and CUDA with graphs off and on)"),
    "uvloop": ("uvloop", "", "a faster event loop in the function (it falls back to asyncio)"),
}
# What edgeinfer imports in the processes this benchmark starts; the authoritative check.
MODULES = (
    "edgeinfer.cli",
    "edgeinfer.functions.server",
    "edgeinfer.functions.examples",
    "edgeinfer.loadgen.runner",
    "edgeinfer.loadgen.worker",
    "edgeinfer.protocol.tensors",
)
LINKS = ("cache", "functions", "gateway", "knative", "regions", "tuner")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.replace("+", ".").split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


def check(import_name: str, dist: str, minimum: str) -> dict[str, str]:
    try:
        found = importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return {"status": "missing", "version": ""}
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = "?"
    if minimum and version != "?" and _version_tuple(version) < _version_tuple(minimum):
        return {"status": "too old", "version": version}
    return {"status": "ok", "version": version}


def import_edgeinfer() -> dict[str, str]:
    """Import the modules the benchmark's processes use, each in a fresh interpreter: module -> "" or the error."""
    code = (
        "import importlib, sys\n"
        "name = sys.argv[1]\n"
        "try:\n"
        "    importlib.import_module(name)\n"
        "except Exception as exc:\n"
        "    print(f'{type(exc).__name__}: {exc}')\n"
        "    sys.exit(1)\n"
    )
    errors = {}
    for module in MODULES:
        # Not from the working tree's root: `-c` puts the cwd first on sys.path, ahead of PYTHONPATH (run.sh's tree).
        done = subprocess.run(
            [sys.executable, "-c", code, module], capture_output=True, text=True, check=False, cwd=tempfile.gettempdir()
        )
        errors[module] = "" if done.returncode == 0 else (done.stdout or done.stderr).strip().splitlines()[-1]
    return errors


def links(root: Path) -> dict[str, str]:
    """edgeinfer/<name> are links to top-level folders: each must lead to a package after the copy."""
    out = {}
    for name in LINKS:
        path = root / "edgeinfer" / name
        out[name] = "ok" if (path / "__init__.py").is_file() else ("broken link" if path.is_symlink() else "missing")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the findings here")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="the working tree")
    args = parser.parse_args()
    report: dict[str, object] = {"python": sys.version.split()[0], "executable": sys.executable}
    missing: list[str] = []
    print(f"python {report['python']} ({sys.executable})")
    for group, table in (("required", REQUIRED), ("optional", OPTIONAL)):
        results = {}
        for import_name, (dist, minimum, why) in table.items():
            result = check(import_name, dist, minimum)
            results[dist] = {**result, "minimum": minimum, "for": why}
            if result["status"] != "ok" and group == "required":
                missing.append(dist)
            shown = result["version"] or "-"
            need = f" (needs >= {minimum})" if result["status"] == "too old" else ""
            print(f"  {group:<8} {dist:<24} {result['status']:<8} {shown:<12} {why}{need}")
        report[group] = results
    link_states = links(args.root)
    report["links"] = link_states
    bad_links = [name for name, state in link_states.items() if state != "ok"]
    if bad_links:
        print(f"  edgeinfer/<{','.join(bad_links)}> do not lead to packages (run.sh makes a shadow tree for them)")
    import_errors = import_edgeinfer() if not missing else {}
    report["imports"] = import_errors
    failed = {m: e for m, e in import_errors.items() if e}
    for module, error in failed.items():
        print(f"  import {module}: {error}")
    report["missing"] = missing
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if missing:
        print(f"MISSING: {' '.join(missing)}")
        print("carry them as wheels: see benchmarks/gpu/README.md (pinned names in benchmarks/gpu/wheels.txt)")
        return 1
    if failed:
        print("MISSING: edgeinfer does not import (above); nothing measured")
        return 1
    print("environment: every required package imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
