"""Every query of dashboards/edgeinfer-gateway.json, and the recording rules of deploy/prometheus/rules.yml, asked
of a real Prometheus that scrapes a real gateway's admin /metrics while traffic flows: each must parse, and
return series (except those listed in POLICY_ONLY, with the reason)."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from testkit.procs import Proc, start_gateway
from testkit.prometheus import Prometheus, PromQLError, running_prometheus

from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.gateway.metrics import GATEWAY_SHADOW_COMPARISONS, GATEWAY_TRAFFIC_WEIGHT
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "edgeinfer-gateway.json"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
REGION = "dash"

# Series that exist only while a model has a traffic policy (weights, shadow): this gateway has none, so their
# queries are checked to parse here; their series are the rollout tests' to check (tests/rollout/ sets policies).
POLICY_ONLY = {
    GATEWAY_TRAFFIC_WEIGHT: "exported per version only for a model with a traffic policy (PUT /v1/traffic)",
    GATEWAY_SHADOW_COMPARISONS: "counted only when a policy's shadow sends copies to a candidate version",
}

# Grafana's variables as a person's first look at the dashboard sets them: this gateway's region, the example
# model, every version. $__rate_interval is Grafana's max(4 × scrape interval, $__interval + scrape): with 1 s
# scrapes, 4 s; 10 s leaves room for late scrapes on a busy machine.
VARIABLES = {
    "region": REGION,
    "model": "fraud",
    "version": ".*",
    "__rate_interval": "10s",
    "__interval": "2s",
    "__range": "1m",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"the dashboard uses ${name}, which this test does not know: {expr}"
        return VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panel_queries() -> list[tuple[str, str]]:
    """(panel title and refId, PromQL as written) for every target of every panel."""
    panels = dashboard()["panels"]
    return [(f"{p['title']} [{t['refId']}]", t["expr"]) for p in panels for t in p["targets"]]


@dataclass
class Traffic:
    """Requests in a thread until stopped: new inputs (cache misses, function calls), repeated ones (hits), and
    ones with a wrong shape (INVALID_ARGUMENT: a client error, for the errors panels and rules)."""

    address: str
    stop: threading.Event
    codes: Counter[str]

    def run(self) -> None:
        rng = np.random.default_rng(1)
        repeated = build_request("fraud", {"features": np.ones((1, 30), dtype=np.float32)})
        wrong = build_request("fraud", {"features": np.ones((1, 29), dtype=np.float32)})
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            i = 0
            while not self.stop.wait(0.02):  # ~50 requests a second: enough for every rate, light on 2 cores
                i += 1
                if i % 4 == 0:
                    request = wrong
                elif i % 2 == 0:
                    request = repeated
                else:
                    features = rng.normal(size=(1, 30)).astype(np.float32)
                    request = build_request("fraud", {"features": features})
                try:
                    stub.ModelInfer(request, timeout=10)
                    self.codes["OK"] += 1
                except grpc.RpcError as exc:
                    self.codes[exc.code().name] += 1


@dataclass
class Scraped:
    prometheus: Prometheus
    traffic: Traffic


@pytest.fixture(scope="module")
def scraped(
    function_address: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scraped]:
    """A gateway (static route to the shared function, Redis and L1 cache) under steady traffic, scraped every
    second by a Prometheus that evaluates the rules every second."""
    tmp = tmp_path_factory.mktemp("dashboard")
    gateway: Proc
    gateway, addresses = start_gateway(
        tmp, {"fraud": [function_address]}, "--redis", redis_server.url, "--redis-prefix", "dashboard:", region=REGION
    )
    stop = threading.Event()
    traffic = Traffic(addresses["grpc"], stop, Counter())
    thread = threading.Thread(target=traffic.run, name="traffic", daemon=True)
    thread.start()
    try:
        admin = addresses["admin"].removeprefix("http://")
        with running_prometheus(tmp, [admin], rule_files=[RULES]) as prometheus:
            prometheus.wait_targets_up(1, timeout=30)
            yield Scraped(prometheus, traffic)
    finally:
        stop.set()
        thread.join(15)
        gateway.stop()


def test_every_dashboard_query_parses_and_returns_series_while_traffic_flows(scraped: Scraped) -> None:
    queries = panel_queries()
    assert len(queries) >= 15
    empty_allowed = []
    for where, expr in queries:
        promql = substitute(expr)
        policy_only = [name for name in POLICY_ONLY if name in promql]
        if policy_only:
            scraped.prometheus.query(promql)  # parses and evaluates (PromQLError otherwise)
            empty_allowed.append(where)
            continue
        series = scraped.prometheus.wait_for_series(promql, timeout=30)
        assert all(s["metric"].get("region") in (REGION, None) for s in series), (where, series)
    # The listed series are really the panels' (the list is not stale), and only those panels skip the check.
    assert len(empty_allowed) == 3, empty_allowed
    assert scraped.traffic.codes["OK"] > 0 and scraped.traffic.codes["INVALID_ARGUMENT"] > 0, scraped.traffic.codes


def test_a_query_that_does_not_parse_fails_with_prometheuss_message(scraped: Scraped) -> None:
    """The check above can fail: a broken query is Prometheus's error, not an empty result."""
    with pytest.raises(PromQLError, match="bad_data"):
        scraped.prometheus.query(
            substitute('sum by (region) (rate(edgeinfer_gateway_requests_total{region=~"$region"}[$__rate_interval])')
        )
    with pytest.raises(AssertionError, match=r"\$tenant"):
        substitute('edgeinfer_gateway_auth_total{tenant=~"$tenant"}')


def test_template_variables_list_the_region_model_and_version(scraped: Scraped) -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"region", "model", "version"} <= variables.keys()
    wanted = {"region": REGION, "model": "fraud", "version": None}
    for name, expected in wanted.items():
        match = _LABEL_VALUES.match(variables[name]["query"])
        assert match, variables[name]["query"]
        selector = substitute(match["selector"])
        values: list[str] = []
        for _ in range(150):  # the first scrapes may not have come yet
            answer = scraped.prometheus.api(f"label/{match['label']}/values", [("match[]", selector)])
            assert answer["status"] == "success", (name, answer)
            values = answer["data"]
            if values:
                break
            scraped.traffic.stop.wait(0.2)
        assert values, f"${name}: no values for {selector}"
        if expected is not None:
            assert expected in values, (name, values)


def test_recording_rules_evaluate_on_the_gateways_real_series(scraped: Scraped) -> None:
    """The rules' label names and values (version, code names, le="0.1") are the gateway's own: each recorded
    series appears for the region, and the client errors in the traffic are not counted as server errors."""
    prometheus = scraped.prometheus
    for record in (
        "region_model_version:edgeinfer_gateway_requests:rate5m",
        "region_model_version:edgeinfer_gateway_request_seconds:p99_rate5m",
        "region_model_version:edgeinfer_gateway_slow_requests:ratio_rate5m",
        "region_model_version:edgeinfer_gateway_slow_requests:ratio_rate1h",
    ):
        series = prometheus.wait_for_series(f'{record}{{region="{REGION}", model="fraud"}}', timeout=30)
        assert {"region", "model", "version"} <= series[0]["metric"].keys(), series
    errors = prometheus.wait_for_series(
        f'region_model_version:edgeinfer_gateway_server_errors:ratio_rate5m{{region="{REGION}", model="fraud"}}',
        timeout=30,
    )
    client = prometheus.wait_for_series(
        f'sum(edgeinfer_gateway_requests_total{{region="{REGION}", model="fraud", code="INVALID_ARGUMENT"}}) > 0',
        timeout=30,
    )
    # The traffic's own replies: OK and INVALID_ARGUMENT only (a server error on loopback would be a bug).
    assert set(scraped.traffic.codes) == {"OK", "INVALID_ARGUMENT"}, scraped.traffic.codes
    assert client and all(float(s["value"][1]) == 0.0 for s in errors), errors
    assert prometheus.wait_for_series('edgeinfer_gateway_request_seconds_bucket{le="0.1"}', timeout=30)
