"""The example manifests in deploy/knative/, written by the builder exactly as `edgeinfer deploy --dry-run` prints
them for the example models (functions/examples.py) and the built-in topology. tests/knative keeps them in sync.

    python -m edgeinfer.knative.examples deploy/knative
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

from edgeinfer.functions.examples import FRAUD_CONFIG, RANKER_CONFIG
from edgeinfer.knative import deploy_cli
from edgeinfer.knative.manifest import DEFAULT_IMAGE
from edgeinfer.knative.targets import selected_regions, topology_from
from edgeinfer.regions.topology import DEFAULT_TOPOLOGY_FILE

# file name -> the `edgeinfer deploy` arguments that print it (with --dry-run -o yaml)
EXAMPLES: dict[str, list[str]] = {
    "fraud.yaml": ["fraud", "--all-regions"],
    "ranker-gpu-canary.yaml": [
        "ranker",
        "--region",
        "us-east",
        "--limit",
        "nvidia.com/gpu=1,memory=8Gi",
        "--request",
        "cpu=4,memory=8Gi",
        "--scale-min",
        "1",
        "--concurrency-limit",
        "64",
        "--engine-cache-pvc",
        "ranker-trt-engines",
        "--node-selector",
        "nvidia.com/gpu.present=true",
        "--toleration",
        "nvidia.com/gpu:NoSchedule",
        "--traffic",
        "ranker-00001=90",
        "--traffic",
        "@latest=10",
        "--tag",
        "ranker-00001=stable",
        "--tag",
        "canary",
    ],
}
CONFIGS = {"fraud": FRAUD_CONFIG, "ranker": RANKER_CONFIG}


def example_repository(root: Path) -> Path:
    """The example models' configs and version 1, without building the models (only their names are read)."""
    for model, config in CONFIGS.items():
        (root / model / "1").mkdir(parents=True, exist_ok=True)
        (root / model / "1" / "model.onnx").touch()
        (root / model / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def render_example(name: str) -> str:
    parser = argparse.ArgumentParser()
    deploy_cli.add_arguments(parser)
    with tempfile.TemporaryDirectory() as tmp:
        repo = example_repository(Path(tmp))
        args = parser.parse_args(
            [
                *EXAMPLES[name],
                "--dry-run",
                "--model-repo",
                str(repo),
                "--topology",
                str(DEFAULT_TOPOLOGY_FILE),
                "--image",
                DEFAULT_IMAGE,
            ]
        )
        regions = selected_regions(args, topology_from(args))
        built = deploy_cli.build_all(args, regions, repo)
    return deploy_cli.render(built, regions, "yaml", args.model)


def main(argv: list[str] | None = None) -> int:
    target = Path((argv if argv is not None else sys.argv[1:] or ["deploy/knative"])[0])
    target.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLES:
        (target / name).write_text(render_example(name))
        print(f"wrote {target / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
