"""deploy/prometheus/: the rules and the example config pass promtool (check and the unit tests of
rules_test.yml), and name only metrics the gateway exports, so a typo cannot pass silently (flagger#1581)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import grpc
import yaml
from testkit.prometheus import require_binary

from edgeinfer.gateway import metrics
from edgeinfer.regions.topology import default_topology
from edgeinfer.rollout import CLIENT_ERROR_CODES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "prometheus"
RULES = DEPLOY / "rules.yml"
DASHBOARD = REPO / "dashboards" / "edgeinfer-gateway.json"
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, cwd=DEPLOY)


def exported_names() -> set[str]:
    """Every series name the gateway exports: the constants, and a histogram's _bucket/_count/_sum."""
    names = {v for k, v in vars(metrics).items() if k.startswith("GATEWAY_") and isinstance(v, str)}
    return names | {f"{n}{suffix}" for n in names for suffix in ("_bucket", "_count", "_sum")}


def rules() -> list[dict[str, str]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_shown_firing_and_not_firing_by_the_unit_tests() -> None:
    tests = yaml.safe_load((DEPLOY / "rules_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    alerts = [rule["alert"] for rule in rules() if "alert" in rule]
    assert len(alerts) == 6
    for alert in alerts:
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert}
        assert outcomes == {True, False}, alert


def test_promtool_check_config_of_the_example() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_the_example_scrapes_the_default_topologys_admin_ports() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [r.gateway.admin for r in default_topology().regions]


def test_rules_and_dashboard_name_only_metrics_the_gateway_exports() -> None:
    exported = exported_names()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    texts = [rule["expr"] for rule in rules()]
    dashboard = yaml.safe_load(DASHBOARD.read_text())  # JSON is YAML
    texts += [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    texts += [v["query"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    used = {name for text in texts for name in _IDENTIFIER.findall(text) if name.startswith("edgeinfer_")}
    assert used and used <= exported, sorted(used - exported)
    # Recorded series used by the alerts exist: a misspelt one would make an alert that never fires.
    used_recorded = {name for text in texts for name in _IDENTIFIER.findall(text) if ":" in name}
    assert used_recorded <= recorded, sorted(used_recorded - recorded)


def test_server_errors_are_every_code_but_ok_and_the_rollouts_client_codes() -> None:
    """One regex in every server-error rule, listing exactly OK and the client codes the rollout ignores."""
    selectors = {m for rule in rules() for m in re.findall(r'code!~"([^"]*)"', rule["expr"])}
    assert len(selectors) == 1, selectors
    codes = set(selectors.pop().split("|"))
    assert codes == {"OK", *CLIENT_ERROR_CODES}
    assert codes <= {c.name for c in grpc.StatusCode}  # the gateway's label values are these names
