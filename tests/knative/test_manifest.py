"""The manifest builder: golden manifests in deploy/knative kept in sync, `edgeinfer deploy --dry-run` as a real
process, and what each flag and the model's config put into the manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgeinfer.cli import main
from edgeinfer.functions.config import Autoscaling
from edgeinfer.knative import examples
from edgeinfer.knative.manifest import ENGINE_CACHE_PATH, ServiceOptions, autoscaling_annotations, build_service
from edgeinfer.knative.validate import errors, validate

ROOT = Path(__file__).resolve().parents[2]
KNOBS = (
    "min-scale", "max-scale", "initial-scale", "activation-scale", "target", "target-utilization-percentage",
    "metric", "window", "panic-window-percentage", "panic-threshold-percentage", "scale-down-delay",
    "scale-to-zero-pod-retention-period",
)  # fmt: skip


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_example_manifests_in_deploy_are_what_the_builder_writes(name: str) -> None:
    written = (ROOT / "deploy" / "knative" / name).read_text()
    assert written == examples.render_example(name), (
        f"deploy/knative/{name} is out of date: regenerate with "
        "`.venv/bin/python -m edgeinfer.knative.examples deploy/knative`"
    )
    for document in yaml.safe_load_all(written):
        assert errors(validate(document)) == []


def test_dry_run_all_regions_prints_valid_manifests_as_a_real_process(tmp_path: Path) -> None:
    """The issue's first 'done' item, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "deploy", "fraud", "--all-regions", "--dry-run", "-o", "yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["labels"]["edgeinfer.dev/region"] for d in documents] == ["us-east", "eu-west", "ap-south"]
    for document in documents:
        assert validate(document) == []
    assert "kubectl apply --server-side --field-manager edgeinfer" in result.stdout
    assert "note: no nvidia.com/gpu limit" in result.stderr


def test_the_manifest_has_every_part_the_issue_lists() -> None:
    knobs = Autoscaling.model_validate(
        {"min-scale": 1, "max-scale": 8, "activation-scale": 2, "window": "90s", "container-concurrency": 16}
    )
    built = build_service(
        "fraud",
        "eu-west",
        ServiceOptions(autoscaling=knobs, limits={"nvidia.com/gpu": "1"}, model_version="7", timeout_seconds=30),
    )
    manifest = built.manifest
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "h2c", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["grpc"] == {"port": 8080}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EDGEINFER_MODEL_REPO"] == "file:///models" and env["EDGEINFER_MODELS"] == "fraud"
    assert env["EDGEINFER_EXECUTION_PROVIDERS"] == "tensorrt,cuda,cpu"  # a GPU: the config's providers
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert {k.removeprefix("autoscaling.knative.dev/") for k in annotations} >= set(KNOBS)
    assert annotations["autoscaling.knative.dev/min-scale"] == "1"
    assert annotations["autoscaling.knative.dev/max-scale"] == "8"
    assert annotations["autoscaling.knative.dev/window"] == "90s"
    assert annotations["autoscaling.knative.dev/activation-scale"] == "2"
    assert pod["containerConcurrency"] == 16 and pod["timeoutSeconds"] == 30
    assert manifest["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    labels = manifest["metadata"]["labels"]
    assert (labels["edgeinfer.dev/model"], labels["edgeinfer.dev/region"]) == ("fraud", "eu-west")
    assert labels["edgeinfer.dev/model-version"] == "7"
    assert pod["volumes"] == [{"name": "trt-engine-cache", "emptyDir": {"sizeLimit": "10Gi"}}]
    assert container["volumeMounts"] == [{"name": "trt-engine-cache", "mountPath": ENGINE_CACHE_PATH}]


def test_annotations_follow_knatives_formats() -> None:
    annotations = autoscaling_annotations(
        Autoscaling.model_validate({"target": 0.5, "window": "1m30s", "scale-down-delay": "500ms"})
    )
    assert annotations["autoscaling.knative.dev/target"] == "0.5"
    assert annotations["autoscaling.knative.dev/window"] == "90s"
    assert annotations["autoscaling.knative.dev/scale-down-delay"] == "500ms"
    assert annotations["autoscaling.knative.dev/target-utilization-percentage"] == "70"
    # Knative refuses an explicit activation-scale of 1, which is its behaviour without the annotation.
    assert "autoscaling.knative.dev/activation-scale" not in annotations


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["deploy", "fraud", "--region", "us-east", "--dry-run", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_traffic_and_tags_follow_kn(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = dry_run(
        capsys, "-o", "json", "--traffic", "fraud-00001=80", "--traffic", "@latest=20",
        "--tag", "fraud-00001=stable", "--tag", "canary", "--tag", "fraud-00002=next",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["spec"]["traffic"] == [
        {"tag": "stable", "revisionName": "fraud-00001", "percent": 80},
        {"tag": "canary", "latestRevision": True, "percent": 20},
        {"tag": "next", "revisionName": "fraud-00002", "percent": 0},  # a tag alone: its own URL, no traffic
    ]


def test_a_deployed_revision_serves_only_its_version(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for version in ("1", "2"):
        (tmp_path / "fraud" / version).mkdir(parents=True)
        (tmp_path / "fraud" / version / "model.onnx").touch()

    def deployed(*argv: str) -> tuple[str, dict[str, str]]:
        code, out, err = dry_run(capsys, "-o", "json", "--model-repo", str(tmp_path), *argv)
        assert code == 0, err
        service = json.loads(out)
        (container,) = service["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        return service["metadata"]["labels"]["edgeinfer.dev/model-version"], env

    label, env = deployed()  # the repository's latest, pinned: a version added later never reaches this revision
    assert label == env["EDGEINFER_MODEL_VERSION"] == "2"
    label, env = deployed("--version", "1")
    assert label == env["EDGEINFER_MODEL_VERSION"] == "1"
    code, _, err = dry_run(capsys, "--model-repo", str(tmp_path), "--version", "7")
    assert code == 2 and "--version 7: model 'fraud'" in err and "has no version 7 (it has: 1, 2)" in err


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["--traffic", "fraud-00001=70", "--traffic", "@latest=20"], 1, "spec.traffic: Traffic targets sum to 90"),
        (["--traffic", "fraud-00001"], 2, "--traffic 'fraud-00001': write REVISION=PERCENT"),
        (["--scale-min", "5", "--scale-max", "2"], 2, "min-scale (5) is above max-scale (2)"),
        (["--scale-utilization", "150"], 2, "--scale-utilization: Input should be less than or equal to 100"),
        (["--scale-window", "soon"], 2, "--scale-window: 'soon' is not a duration"),
        (["--limit", "nvidia.com/gpu"], 2, "--limit 'nvidia.com/gpu': write KEY=VALUE"),
        (
            ["--limit", "nvidia.com/gpu=0.5"],
            1,
            "policy gpu-whole-and-equal: spec.template.spec.containers[0].resources",
        ),
        (["--revision-name", "v2"], 1, 'spec.template.metadata.name: invalid value: "v2" must have prefix "fraud-"'),
        (["--region", "mars"], 2, "--region mars: not in"),
        (["--all-regions"], 2, "give --region R or --all-regions, not both"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, words: str
) -> None:
    got, out, err = dry_run(capsys, *argv)
    assert got == code and words in err, err
    assert out == ""


def test_what_a_cluster_may_allow_is_a_warning_until_the_cluster_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """Knative's default max-revision-timeout-seconds is 600; a cluster may raise it, and deploy asks each one."""
    code, out, err = dry_run(capsys, "--timeout", "900")
    assert code == 0 and yaml.safe_load(out)["spec"]["template"]["spec"]["timeoutSeconds"] == 900
    assert "warning: spec.template.spec.timeoutSeconds: expected 0 <= 900 <= 600" in err
    assert "max-revision-timeout-seconds" in err


def test_model_name_that_makes_no_service_name_names_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["deploy", "9lives", "--region", "us-east", "--dry-run"])
    assert code == 2 and "pass --service-name NAME" in capsys.readouterr().err
    code = main(["deploy", "9lives", "--region", "us-east", "--dry-run", "--service-name", "nine-lives"])
    assert code == 0 and "name: nine-lives" in capsys.readouterr().out


def test_grace_period_and_initial_scale_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fraud" / "1").mkdir(parents=True)
    (tmp_path / "fraud" / "1" / "model.onnx").touch()
    config = {"autoscaling": {"scale-to-zero-grace-period": "90s", "initial-scale": 0}}
    (tmp_path / "fraud" / "config.yaml").write_text(yaml.safe_dump(config))
    code, _, err = dry_run(capsys, "--model-repo", str(tmp_path))
    assert code == 0, err
    assert "scale-to-zero-grace-period 90s is cluster-wide in Knative" in err
    assert "allow-zero-initial-scale" in err
