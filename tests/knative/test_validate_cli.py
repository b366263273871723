"""`edgeinfer validate`: the shipped manifests and every example model's `deploy --dry-run -o yaml` pass; a
hand-broken copy is refused naming the field; warnings alone exit 0; unreadable input exits 2."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeinfer.cli import main
from edgeinfer.functions.examples import EXAMPLES as EXAMPLE_MODELS
from edgeinfer.knative.examples import example_repository

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "deploy" / "knative").glob("*.yaml"))


def validate(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        old, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            code = main(["validate", *argv])
        finally:
            sys.stdin = old
    else:
        code = main(["validate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def services(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_manifest_passes(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    code, out, err = validate(capsys, str(path))
    assert code == 0, out + err
    assert " error: " not in out and " policy " not in out
    assert f"{len(services(path.read_text()))} Service(s), 0 refused" in err


def test_the_folder_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = validate(capsys, str(ROOT / "deploy" / "knative"))
    assert code == 0, out + err


@pytest.mark.parametrize("model", sorted(EXAMPLE_MODELS))
def test_every_example_models_dry_run_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str) -> None:
    repo = example_repository(tmp_path / "models")
    assert main(["deploy", model, "--all-regions", "--dry-run", "-o", "yaml", "--model-repo", str(repo)]) == 0
    rendered = capsys.readouterr().out
    assert len(services(rendered)) >= 2
    code, out, err = validate(capsys, "-", stdin=rendered)
    assert code == 0, out + err
    assert out == ""  # not even a warning


def broken_copy(tmp_path: Path, change: Any) -> Path:
    documents = services(SHIPPED[0].read_text())
    change(documents[0])
    target = tmp_path / "broken.yaml"
    target.write_text(yaml.safe_dump_all(documents))
    return target


def test_a_hand_broken_copy_is_refused_naming_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def break_it(service: dict[str, Any]) -> None:
        service["spec"]["template"]["spec"]["containers"][0]["image"] = "foo:bar:baz"

    target = broken_copy(tmp_path, break_it)
    code, out, err = validate(capsys, str(target))
    assert code == 1, out + err
    lines = [line for line in out.splitlines() if line.startswith(f"{target}:1 error: ")]
    assert len(lines) == 1, out
    assert "spec.template.spec.containers[0].image: Failed to parse image reference" in lines[0]
    assert "; fix: " in lines[0]
    assert "1 refused" in err


def test_policy_is_apart_from_knative_and_can_be_waived(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def http1(service: dict[str, Any]) -> None:
        service["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "http1"

    target = broken_copy(tmp_path, http1)
    code, out, _ = validate(capsys, str(target))
    assert code == 1
    assert out.splitlines() == [
        f"{target}:1 policy h2c-port: spec.template.spec.containers[0].ports[0].name: port name http1 makes "
        "Knative speak HTTP/1 to the container; fix: name it h2c (or --allow h2c-port)"
    ]
    code, out, _ = validate(capsys, str(target), "--allow", "h2c-port")
    assert (code, out) == (0, "")
    code, _, err = validate(capsys, str(target), "--allow", "no-such-rule")
    assert code == 2 and "no such policy" in err and "h2c-port" in err


def test_feature_flags_decide_with_a_features_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def node_selector(service: dict[str, Any]) -> None:
        service["spec"]["template"]["spec"]["nodeSelector"] = {"gpu": "a100"}

    target = broken_copy(tmp_path, node_selector)
    # Without the cluster's ConfigMap: a warning naming the flag, exit 0.
    code, out, _ = validate(capsys, str(target))
    assert code == 0, out
    assert "warning: spec.template.spec.nodeSelector: must not set the field(s)" in out
    assert "kubernetes.podspec-nodeselector" in out
    features = tmp_path / "features.yaml"
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-features"}, "data": {}}
    features.write_text(yaml.safe_dump(configmap))
    code, out, _ = validate(capsys, str(target), "--features", str(features))
    assert code == 1
    assert "error: spec.template.spec.nodeSelector: must not set the field(s)" in out
    assert "kubernetes.podspec-nodeselector is Disabled in config-features from" in out
    configmap["data"] = {"kubernetes.podspec-nodeselector": "enabled"}
    features.write_text(yaml.safe_dump(configmap))
    code, out, _ = validate(capsys, str(target), "--features", str(features))
    assert (code, out) == (0, "")


def test_autoscaler_configmap_decides_initial_scale_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def zero(service: dict[str, Any]) -> None:
        service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/initial-scale"] = "0"

    target = broken_copy(tmp_path, zero)
    autoscaler = tmp_path / "autoscaler.json"
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-autoscaler"}, "data": {}}
    autoscaler.write_text(json.dumps(configmap))
    code, out, _ = validate(capsys, str(target), "--config", str(autoscaler))
    assert code == 1 and "autoscaling.knative.dev/initial-scale" in out, out
    configmap["data"] = {"allow-zero-initial-scale": "true"}
    autoscaler.write_text(json.dumps(configmap))
    code, out, _ = validate(capsys, str(target), "--config", str(autoscaler))
    assert (code, out) == (0, "")


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda d: d / "missing.yaml", "cannot read it"),
        (lambda d: (d / "bad.yaml").write_text("a: [1, 2") and d / "bad.yaml", "not YAML/JSON"),
        (lambda d: (d / "cm.yaml").write_text("kind: ConfigMap\n") and d / "cm.yaml", "no Knative Service"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no *.yaml"),
    ],
    ids=["missing file", "not yaml", "no service", "empty folder"],
)
def test_unreadable_input_exits_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, setup: Any, words: str
) -> None:
    code, out, err = validate(capsys, str(setup(tmp_path)))
    assert code == 2 and words in err and out == "", err


def test_a_broken_configmap_is_refused_as_knative_would(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    defaults = tmp_path / "defaults.yaml"
    configmap = {
        "kind": "ConfigMap",
        "metadata": {"name": "config-defaults"},
        "data": {"revision-timeout-seconds": "900"},
    }
    defaults.write_text(yaml.safe_dump(configmap))
    code, _, err = validate(capsys, str(SHIPPED[0]), "--config", str(defaults))
    assert code == 2
    assert "revision-timeout-seconds (900) cannot be greater than max-revision-timeout-seconds (600)" in err
