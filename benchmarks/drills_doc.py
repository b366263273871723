"""Render docs/drills.md from the drill reports in docs/drills/*.json (written by `edgeinfer drill`).

python benchmarks/drills_doc.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("kill", "blackhole", "slow", "flap")
WHY = {
    "kill": (
        "SIGKILL closes the gateway's sockets: calls in flight are reset and new connections refused, both "
        "retried at once by Envoy on the next region (`reset`, `connect-failure`); outlier detection ejects the "
        "host on the first gateway failures and the next health check (every 200 ms) marks it unhealthy."
    ),
    "blackhole": (
        "A stopped gateway keeps its connections open and answers nothing, so only timeouts catch it: each try "
        "that has not answered within the per-try timeout (50 ms, half the SLO) is hedged to the next region; "
        "outlier detection ejects the host after three such timeouts, and two missed health checks (150 ms "
        "timeout, 200 ms apart) mark it unhealthy."
    ),
    "slow": (
        "A slow region still passes its health checks, so detection is by outlier detection alone: tries slower "
        "than the per-try timeout are hedged to the next region and count as gateway failures; three in a row "
        "eject the region for 5 s (health checks may not cut that short), then it is tried again."
    ),
    "flap": (
        "Each kill is handled as in `kill`; each restart rejoins once the new gateway's pool reached its initial "
        "scale and two health checks passed; ejections do not grow with repetition (max ejection time = base)."
    ),
}


def _value(check: dict[str, Any]) -> str:
    value = check["value"]
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def section(scenario: str, report: dict[str, Any]) -> str:
    result = report["result"]
    rows = "\n".join(
        f"| {name} | {_value(check)} | {check['budget']} | {'pass' if check['pass'] else '**FAIL**'} |"
        for name, check in result["checks"].items()
    )
    detection = result["detection"]
    detected = (
        f"{detection['after_fault_s'] * 1000:.0f} ms after the fault (Envoy: `{detection['state']}`)"
        if detection
        else "not seen by Envoy's health view"
    )
    served = ", ".join(f"{region} {count}" for region, count in result["served_by_region"].items())
    latency = result["latency_ms"]
    command = (
        f"edgeinfer drill --scenario {scenario} --region {report['region']} --rps {report['rps']:g} "
        f"--duration {report['duration_s']:g} --report docs/drills/{scenario}.json"
    )
    return f"""## {scenario}: {"PASS" if result["passed"] else "FAIL"}

```
{command}
```

| check | measured | budget | |
|---|---|---|---|
{rows}

Sent {result["sent"]}, completed {result["ok"]}, failed {result["failed"]} {result["failed_by_status"] or ""}; served by
{served}. Latency p50 {latency["p50"]:.1f} ms, p99 {latency["p99"]:.1f} ms, max {latency["max"]:.1f} ms. Detection:
{detected}. Why: {WHY[scenario]}

![{scenario}](drills/{scenario}.png)
"""


def main() -> int:
    reports = {}
    for scenario in SCENARIOS:
        path = ROOT / "docs" / "drills" / f"{scenario}.json"
        if path.exists():
            reports[scenario] = json.loads(path.read_text())
    intro = """# Failover drills

Each drill starts the stack of `edgeinfer up` (three regions: Redis + gateway with its local pool each, one
Envoy in front), keeps `fraud` warm in every region (min-scale 1 through the pools' admin API: the standby
must be warm for a failover to hold a 100 ms p99), sends 200 requests/s of unique inputs (every one reaches a
function) open-loop through Envoy, faults the serving region us-east a third of the way in, restores it at
60 %, and judges the run against the budgets below. The detection window is the 1 s after each change (fault
or restore) in which the p99 budget does not apply. Machine: a shared 2-core box; the whole stack, the load
generator and other work share the two cores, so absolute latencies are noisy.

Regenerate this page from the reports with `python benchmarks/drills_doc.py`.
"""
    body = "\n".join(section(s, r) for s, r in reports.items())
    (ROOT / "docs" / "drills.md").write_text(intro + "\n" + body)
    print(f"docs/drills.md: {', '.join(reports) or 'no reports'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
