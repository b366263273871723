"""What the gateway's API-key check costs per call, in process (no server, no sockets).

    python benchmarks/auth_cost.py [--calls 200000] [--repeat 5] [--report benchmarks/results/auth_cost.json]

Times `Authenticator.authenticate` (SHA-256 of the presented key, one dict lookup) followed by `admit`
(one token-bucket charge) on a tenant with a rate limit high enough never to refuse, and, for scale,
SHA-256 alone and a refused unknown key. Each figure is the time per call of `--calls` calls, repeated
`--repeat` times: the report gives every repeat and their median and minimum (the least disturbed by other
work on a shared machine). Takes a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeinfer.gateway.auth import Authenticator, TenantEntry, Unauthenticated, key_digest, new_key

DEFAULT_REPORT = Path(__file__).resolve().parent / "results" / "auth_cost.json"


def per_call_us(fn: Callable[[], object], calls: int, repeat: int) -> dict[str, Any]:
    times = [t / calls * 1e6 for t in timeit.repeat(fn, number=calls, repeat=repeat)]
    return {"each_repeat_us": times, "median_us": statistics.median(times), "min_us": min(times)}


def measure(calls: int, repeat: int) -> dict[str, Any]:
    key, digest = new_key()
    auth = Authenticator({"acme": TenantEntry(keys=[digest], rate_per_second=1e12, burst=10**12)})
    header = f"Bearer {key}"

    def check_and_charge() -> None:
        auth.admit(auth.authenticate(header))

    def unknown() -> None:
        with contextlib.suppress(Unauthenticated):
            auth.authenticate("Bearer ei_not-a-key-anyone-was-given")

    return {
        "authenticate_and_admit": per_call_us(check_and_charge, calls, repeat),
        "sha256_of_the_key": per_call_us(lambda: key_digest(key), calls, repeat),
        "unknown_key_refused": per_call_us(unknown, calls, repeat),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    args = parser.parse_args(argv)
    report = {
        "benchmark": "auth_cost",
        "command": ["auth_cost.py", *(sys.argv[1:] if argv is None else argv)],
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "calls": args.calls,
        "repeat": args.repeat,
        "results": measure(args.calls, args.repeat),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    for name, figures in report["results"].items():
        print(f"{name:<26} median {figures['median_us']:6.2f} µs/call  min {figures['min_us']:6.2f} µs/call")
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
