"""`edgeinfer drill`: the region drills of edgeinfer/stack/drill_cli.py, plus the canary drills:

    edgeinfer drill --scenario bad-canary-slow|bad-canary-errors|bad-canary-wrong|good-canary --report FILE

A canary drill starts the stack of `edgeinfer up` for one region (Redis, the gateway with its local pool, Envoy in
front) on a repository holding fraud/1 and a candidate fraud/2 written by `edgeinfer examples --canary`: slow
(+200 ms), errors (20 % INTERNAL), wrong (flipped probabilities) or good (the same model). Both versions are kept
warm and unversioned traffic is pinned on version 1; then open-loop load with unique inputs (every request reaches
a function) runs through Envoy while `edgeinfer rollout fraud --to 2` runs against the region. The JSON report
holds the rollout's own report, the load's per-second timeline and the measures of docs/rollout.md with their
targets; the PNG beside it plots weight, p99, errors and disagreement over time.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from edgeinfer.gateway.admin_client import AdminClient, AdminError
from edgeinfer.gateway.metrics import GATEWAY_REQUESTS
from edgeinfer.regions.topology import Topology
from edgeinfer.rollout.analysis import CLIENT_ERROR_CODES, Thresholds
from edgeinfer.rollout.cli import duration, steps
from edgeinfer.rollout.controller import RolloutConfig
from edgeinfer.rollout.errors import RolloutError
from edgeinfer.rollout.runner import RolloutOptions, run_rollout
from edgeinfer.stack import drill_cli as region_drill
from edgeinfer.stack.local import LocalStack
from edgeinfer.stack.procfs import set_child_subreaper, wide_console_width

# Scenario → the kind of candidate `edgeinfer examples --canary` writes.
CANARIES = {
    "bad-canary-slow": "slow",
    "bad-canary-errors": "errors",
    "bad-canary-wrong": "wrong",
    "good-canary": "good",
}
# The failing check each bad candidate must be caught by.
EXPECTED_CHECK = {"slow": "p99", "errors": "error rate", "wrong": "disagreement"}
ERRORS_RATE = 0.2  # what the `errors` candidate's faults.yaml fails (functions/examples.py)
MODEL = "fraud"
BASELINE = "1"
CANDIDATE = "2"
WARM_WAIT_S = 60.0
DRAIN_WAIT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    region_drill.add_arguments(parser, extra_scenarios=tuple(CANARIES))
    canary = parser.add_argument_group("canary scenarios (bad-canary-*, good-canary)")
    canary.add_argument("--interval", type=duration, default=5.0, help="the rollout's --interval (default: 5s)")
    canary.add_argument(
        "--steps", type=steps, default=(10, 25, 50, 100), help="the rollout's --steps (default: 10,25,50,100)"
    )
    canary.add_argument(
        "--shadow-percent",
        type=float,
        default=10.0,
        help="the rollout's --shadow-percent (default: 10, so a 5 s interval at 200 req/s copies ~100 requests)",
    )
    canary.add_argument("--min-requests", type=int, default=50, help="the rollout's --min-requests")
    # A canary drill's load lasts as long as its steps need unless --duration says otherwise.
    parser.set_defaults(duration=None)


def run(args: argparse.Namespace) -> int:
    if args.scenario not in CANARIES:
        if args.duration is None:
            args.duration = region_drill.DEFAULT_DURATION_S
        return region_drill.run(args)
    return run_canary(args)


def _one_region(topology: Topology, region: str) -> Topology:
    """The topology with only `region` (and no neighbours): a rollout is judged one region at a time, and the
    other regions' pools would only take the cores the measured one needs."""
    data = topology.to_dict()
    data["regions"] = [{**r, "neighbours": []} for r in data["regions"] if r["name"] == region]
    return Topology.model_validate(data)


def _versions_ready(admin: AdminClient) -> dict[str, int]:
    pool = admin.pools().get(MODEL) or {}
    versions = pool.get("versions") or {}
    return {v: int(status.get("ready") or 0) for v, status in versions.items() if isinstance(status, dict)}


def _served(admin: AdminClient) -> dict[tuple[str, str], float]:
    """The gateway's caller-facing requests of the model by (version, code), summed over cache statuses."""
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(admin.metrics()):
        for sample in family.samples:
            if sample.name == GATEWAY_REQUESTS and sample.labels.get("model") == MODEL:
                counts[(sample.labels.get("version", ""), sample.labels.get("code", ""))] += sample.value
    return dict(counts)


def _per_second(events: list[tuple[float, float, str, str]]) -> list[dict[str, Any]]:
    """The load's timeline: per second of intended send time, requests, failures and p99 (ms)."""
    buckets: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for t, latency, status, _ in events:
        buckets[math.floor(t)].append((latency, status))
    rows = []
    for second in sorted(buckets):
        items = buckets[second]
        latencies = sorted(latency for latency, _ in items)
        p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)] * 1000 if latencies else None
        failed = sum(1 for _, status in items if status != "OK")
        rows.append({"t": second, "requests": len(items), "failed": failed, "p99_ms": p99})
    return rows


def _measures(
    kind: str,
    rollout: dict[str, Any],
    served: dict[tuple[str, str], float],
    failures: Counter[str],
    rps: float,
    interval_s: float,
    drained: bool | None,
) -> list[dict[str, Any]]:
    """docs/rollout.md's measures, each {name, value, target, pass}."""
    out: list[dict[str, Any]] = []

    def measure(name: str, value: Any, target: str, passed: bool) -> None:
        out.append({"name": name, "value": value, "target": target, "pass": bool(passed)})

    outcome = rollout["outcome"]
    candidate_ok = sum(n for (v, code), n in served.items() if v == CANDIDATE and code == "OK")
    candidate_failed = sum(
        n for (v, code), n in served.items() if v == CANDIDATE and code != "OK" and code not in CLIENT_ERROR_CODES
    )
    failed_callers = sum(n for status, n in failures.items() if status != "OK")
    if kind == "good":
        measure("outcome", outcome, "promoted", outcome == "promoted")
        measure("old version drained to zero", drained, "true", drained is True)
        measure("failed requests", failed_callers, "0", failed_callers == 0)
        return out
    measure("outcome", outcome, "rolled_back", outcome == "rolled_back")
    check = (rollout.get("failed_check") or {}).get("name")
    measure("failing check", check, EXPECTED_CHECK[kind], check == EXPECTED_CHECK[kind])
    rollback = rollout.get("rollback") or {}
    seconds = rollback.get("seconds")
    measure(
        "time from the first failing check to 0 % (s)",
        seconds,
        f"<= 1 interval ({interval_s:g} s)",
        seconds is not None and seconds <= interval_s,
    )
    if kind == "errors":
        weighted = [s for s in rollout["steps"] if s["weight"] > 0]
        exposed_from = weighted[0]["started_t"] if weighted else None
        zero_t = rollback.get("zero_t")
        # Never given a weight (caught on its shadow copies): no caller was exposed, so the bound is 0.
        exposure = (zero_t - exposed_from if zero_t is not None else None) if exposed_from is not None else 0.0
        share = weighted[-1]["weight"] / 100 if weighted else 0.0
        bound = share * rps * exposure * ERRORS_RATE if exposure is not None else None
        measure(
            "requests failed because of the canary",
            failed_callers,
            "<= share x rate x time to rollback x error rate"
            + (
                f" = {share:g} x {rps:g}/s x {exposure:.2f} s x {ERRORS_RATE:g} = {bound:.1f}"
                if bound is not None and exposure is not None
                else ""
            ),
            bound is not None and failed_callers <= bound,
        )
        measure(
            "of the candidate's own replies, failed (gateway's count)",
            f"{candidate_failed:.0f} of {candidate_ok + candidate_failed:.0f}",
            f"<= ceil({ERRORS_RATE:g} x served) = {math.ceil(ERRORS_RATE * (candidate_ok + candidate_failed))}",
            candidate_failed <= math.ceil(ERRORS_RATE * (candidate_ok + candidate_failed)),
        )
    if kind == "wrong":
        measure(
            "wrong answers served to callers (candidate replies)",
            candidate_ok + candidate_failed,
            "0 (only shadow copies)",
            candidate_ok + candidate_failed == 0,
        )
        check_data = rollout.get("failed_check") or {}
        measure(
            "caught by",
            f"disagreement {check_data.get('value')} ({check_data.get('basis', '')})",
            "disagreement, while no caller was served",
            check == "disagreement",
        )
        measure("failed requests", failed_callers, "0 (latency and errors look healthy)", failed_callers == 0)
    return out


def plot(data: dict[str, Any], png: Path) -> None:
    """Weight, p99, errors and disagreement over the load's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offset = data["rollout_offset_s"]
    samples = data["rollout"]["timeline"]
    load = data["load"]["per_second"]
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    t = [s["t"] + offset for s in samples]
    axes[0].step(t, [s["weight"] for s in samples], where="post", color="tab:purple")
    axes[0].set_ylabel("candidate %")
    axes[0].set_ylim(-5, 105)
    axes[1].plot([r["t"] for r in load], [r["p99_ms"] for r in load], label="callers (per s)", color="tab:blue")
    axes[1].plot(t, [s["p99_ms"] for s in samples], "o", ms=3, label="candidate's callers (window)", color="tab:orange")
    shadow_p99 = [s.get("shadow_p99_ms") for s in samples]
    axes[1].plot(t, shadow_p99, "x", ms=4, label="candidate's shadow copies (window)", color="tab:brown")
    axes[1].axhline(data["rollout"]["config"].get("max_p99_ms", 100), color="red", lw=0.7, ls="--")
    axes[1].set_ylabel("p99 ms")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[2].bar([r["t"] for r in load], [r["failed"] for r in load], width=0.9, color="tab:red")
    axes[2].set_ylabel("failed / s")
    axes[3].plot(t, [s["disagreement"] for s in samples], "o-", ms=3, color="tab:green")
    axes[3].axhline(data["rollout"]["config"].get("max_disagreement", 0.01), color="red", lw=0.7, ls="--")
    axes[3].set_ylabel("disagreement")
    axes[3].set_xlabel("seconds of measured load")
    for axis in axes:
        for step in data["rollout"]["steps"]:
            axis.axvline(step["ended_t"] + offset, color="grey", lw=0.4, ls=":")
        rollback = data["rollout"].get("rollback")
        if rollback and rollback.get("detected_t") is not None:
            axis.axvline(rollback["detected_t"] + offset, color="red", lw=0.8, ls="-.")
    verdict = "PASS" if data["passed"] else "FAIL"
    fig.suptitle(f"drill {data['scenario']}: {data['rollout']['outcome']} ({verdict})")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def run_canary(args: argparse.Namespace) -> int:
    from edgeinfer.functions.examples import write_canary
    from edgeinfer.loadgen import BenchOptions
    from edgeinfer.loadgen.runner import BackgroundBench

    kind = CANARIES[args.scenario]
    console = Console(highlight=False, width=wide_console_width())
    chosen = region_drill.drilled_region(args, console)
    if chosen is None:
        return 2
    topology, region = chosen
    if args.rps <= 0 or args.min_requests < 1 or not 0 <= args.shadow_percent <= 100:
        console.print("edgeinfer drill: --rps and --min-requests must be positive, --shadow-percent in 0-100")
        return 2
    one = _one_region(topology, region)
    phases = len(args.steps) + (1 if args.shadow_percent > 0 else 0)
    # By default long enough for every step, the promotion and its drain, with an interval to spare.
    load_s = args.duration if args.duration is not None else (phases + 2) * args.interval + 5.0
    if load_s <= 0:
        console.print("edgeinfer drill: --duration must be positive")
        return 2
    state_dir = (args.state_dir or Path(tempfile.mkdtemp(prefix="edgeinfer-canary-"))).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    repo = state_dir / "models"
    write_canary(repo, kind, CANDIDATE)

    stack = LocalStack(one, None, one.entry, repo, state_dir, 120.0, console, edge=None)
    stack.install_signal_handlers()
    set_child_subreaper()
    target = stack.regions[0]
    assert target.endpoints.admin is not None, "the drill's region has an admin port (the default topology gives it)"
    admin = AdminClient(target.endpoints.admin)
    command = "edgeinfer drill " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        if not region_drill.start_stack(stack, console):
            return 1
        with console.status(f"both versions of {MODEL} warm; unversioned traffic pinned on version {BASELINE}"):
            admin.update_pool(MODEL, {"min-scale": 1})
            admin.set_traffic(MODEL, {"weights": {BASELINE: 100}})
            deadline = time.monotonic() + WARM_WAIT_S
            while (ready := _versions_ready(admin)).get(BASELINE, 0) < 1 or ready.get(CANDIDATE, 0) < 1:
                if time.monotonic() > deadline:
                    console.print(f"edgeinfer drill: versions not warm after {WARM_WAIT_S:.0f}s: {ready}")
                    return 1
                time.sleep(0.1)  # poll interval; the pools' own readiness decides
        console.print(
            f"drill {args.scenario}: {args.rps:g} req/s of unique requests through {stack.entry} for {load_s:g}s; "
            f"rollout of {MODEL} {BASELINE} → {CANDIDATE} ({kind}) in {region}, interval {args.interval:g}s, "
            f"steps {','.join(map(str, args.steps))}, shadow {args.shadow_percent:g} %"
        )
        options = BenchOptions(
            target=stack.entry,
            model=MODEL,
            rate=args.rps,
            duration=load_s,
            warmup=args.warmup,
            unique=True,
            record_events=True,
            timeout_ms=args.timeout_ms,
            processes=1,
        )
        bench = BackgroundBench(options, progress=False)  # the rollout's live table is the one display
        start_wall = bench.start()
        rollout: dict[str, Any] | None = None
        notes: list[str] = []
        drained: bool | None = None
        if start_wall is not None:
            measured_wall = start_wall + args.warmup
            stack.stop.wait(max(0.0, measured_wall - time.time()))
            config = RolloutConfig(
                steps=tuple(args.steps),
                interval_s=args.interval,
                thresholds=Thresholds(min_requests=args.min_requests),
                shadow_percent=args.shadow_percent,
            )
            rollout_options = RolloutOptions(
                model=MODEL,
                candidate=CANDIDATE,
                config=config,
                region=region,
                admin=target.endpoints.admin,
                grpc=target.endpoints.grpc,
                command=f"edgeinfer rollout {MODEL} --to {CANDIDATE} (in {command})",
            )
            try:
                result = run_rollout(rollout_options, console=console)
                rollout = result.report.to_dict()
            except RolloutError as exc:
                notes.append(f"the rollout was refused: {exc}")
            if rollout is not None and rollout["outcome"] == "promoted":
                deadline = time.monotonic() + DRAIN_WAIT_S
                while _versions_ready(admin).get(BASELINE, 0) > 0 and time.monotonic() < deadline:
                    time.sleep(0.1)  # poll interval: the drain itself is the pool's
                drained = _versions_ready(admin).get(BASELINE, 0) == 0
        try:
            bench_report = bench.result()
        except Exception as exc:
            console.print(f"edgeinfer drill: the load did not run: {exc}")
            return 1
        if rollout is None:
            console.print(f"edgeinfer drill: {'; '.join(notes) or 'the rollout did not run'}")
            return 1
        try:
            served = _served(admin)
        except AdminError as exc:
            console.print(f"edgeinfer drill: the gateway's metrics are unreadable: {exc}")
            return 1
        events = [(e[0] - args.warmup, e[1], e[2], e[3]) for e in bench_report.events]
        failures = Counter(e[2] for e in events)
        measures = _measures(kind, rollout, served, failures, args.rps, args.interval, drained)
        data = {
            "scenario": args.scenario,
            "candidate_kind": kind,
            "command": command,
            "region": region,
            "rps": args.rps,
            "load_s": load_s,
            "rollout_offset_s": round(rollout["started_at"] - (start_wall or 0.0) - args.warmup, 3),
            "measures": measures,
            "passed": all(m["pass"] for m in measures),
            "served_by_version": {f"{v or '-'}/{c}": n for (v, c), n in sorted(served.items())},
            "load": {
                "sent": len(events),
                "by_status": dict(failures),
                "per_second": _per_second(events),
            },
            "rollout": rollout,
            "notes": notes,
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(data, indent=1) + "\n")
        png = args.report.with_suffix(".png")
        plot(data, png)
        _print_verdict(console, data, args.report, png)
        return 0 if data["passed"] else 1
    finally:
        stack.shutdown()


def _print_verdict(console: Console, data: dict[str, Any], report: Path, png: Path) -> None:
    table = Table(title=f"drill {data['scenario']} in {data['region']}", title_justify="left")
    table.add_column("measure")
    table.add_column("measured", justify="right")
    table.add_column("target")
    table.add_column("")
    for m in data["measures"]:
        value = m["value"]
        shown = "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        table.add_row(m["name"], shown, m["target"], "[green]pass[/]" if m["pass"] else "[red]FAIL[/]")
    console.print(table)
    console.print(f"load: sent {data['load']['sent']}, by status {data['load']['by_status']}", soft_wrap=True)
    console.print(f"served by version/code: {data['served_by_version']}", soft_wrap=True)
    verdict = "[bold green]PASS[/]" if data["passed"] else "[bold red]FAIL[/]"
    console.print(f"{verdict}: report {report}, plot {png}")
