"""Where the gateway's time goes on each path the issue-17 table measures: py-spy on a real gateway under load.

For each path (L1 hit, Redis hit, miss) it starts Redis, the fraud function and a gateway, drives the gateway
with perf_analyzer (the C++ client, so the client is not the bound) at a fixed rate near its highest with
p99 <= 5 ms (docs/benchmarks.md section 7), and samples the gateway's process with `py-spy record --native
--format raw`. The report groups the samples by the first stage a frame matches from the leaf up: idle (epoll),
socket syscalls, gRPC's C core, the event loop, the wire scan, the cache, the data plane, protobuf...

    python benchmarks/profile_gateway.py [--rate 3400] [--redis-rate 2200] [--miss-rate 400] [--seconds 10]
        [--paths l1,redis,miss] [--report FILE] [--keep-raw DIR]

It writes a JSON report and a PNG plot (benchmarks/results/gateway_profile.*), with --keep-raw DIR py-spy's
raw stacks too (for a flame graph), and prints the stages and top frames. py-spy must be installed
(requirements/dev.txt) and allowed to ptrace (root, or kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from benchmarks.common.bench import REPO_ROOT, edgeinfer_command
from benchmarks.common.procs import free_port
from benchmarks.gateway_vs_triton import MODEL, Stack, unique_input_data
from benchmarks.perf_analyzer import pa
from edgeinfer.cache.redis_server import RedisServer

RESULTS = REPO_ROOT / "benchmarks" / "results"
# Stages by a frame's file or function, the first that matches (checked from the leaf up).
STAGES: tuple[tuple[str, str], ...] = (
    ("idle (epoll wait)", "epoll_"),
    ("socket I/O syscalls", "sendmsg ("),
    ("socket I/O syscalls", "recvmsg ("),
    ("socket I/O syscalls", "recv ("),
    ("socket I/O syscalls", "write (libc"),
    ("socket I/O syscalls", "read (libc"),
    ("getpid (asyncio's fork check in get_running_loop)", "getpid ("),
    ("wire scan and key", "wire"),
    ("canonical key", "cache/key.py"),
    ("cache lookup (L1, Redis)", "cache/"),
    ("function call (backend)", "gateway/backends/"),
    ("data plane", "gateway/dataplane.py"),
    ("servicer", "gateway/servicer.py"),
    ("tensors (decode, encode)", "protocol/tensors.py"),
    ("redis-py", "redis/"),
    ("protobuf", "protobuf"),
    ("gRPC C core and Cython (cygrpc)", "cygrpc"),
    ("asyncio event loop (Python)", "asyncio/"),
)


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's --format raw: one `frame;frame;...;leaf count` line per distinct stack (root first)."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def stage_of(frames: list[str]) -> str:
    """The first stage a frame matches, from the leaf up: a syscall is judged by itself, Python by its module."""
    for frame in reversed(frames):
        for name, marker in STAGES:
            if marker in frame:
                return name
    return "other (interpreter, libc)"


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    total = sum(count for _, count in stacks) or 1
    leaves: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        leaves[frames[-1] if frames else "?"] += count
        stages[stage_of(frames)] += count
    busy = total - stages["idle (epoll wait)"] or 1
    return {
        "samples": total,
        "stages": {k: round(v / total, 4) for k, v in stages.most_common()},
        # The same shares without the idle samples: where the busy time goes.
        "busy_stages": {k: round(v / busy, 4) for k, v in stages.most_common() if k != "idle (epoll wait)"},
        "top_self": [{"frame": k, "share": round(v / total, 4)} for k, v in leaves.most_common(top)],
    }


def py_spy() -> str | None:
    """py-spy beside this interpreter (a venv's bin/ need not be on PATH), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_path(
    stack: Stack, gateway: list[str], path: str, rate: float, seconds: float, work: Path, keep_raw: Path | None
) -> dict[str, Any]:
    process, address = stack.process(f"gateway-{path}", gateway)
    base = ["-m", MODEL, "-u", address, "-i", "grpc", "-s", "10000"]
    args = [*base, "--request-rate-range", f"{rate:g}", "-p", "2000", "--max-trials", str(int(seconds / 2) + 3)]
    if path == "miss":
        data = unique_input_data(work / "unique.json", int(rate * (seconds + 10)), seed=7)
        args += ["--input-data", str(data), "--max-threads", "1"]
    else:  # fill the entry the hits read
        pa.run_perf_analyzer([*base, "--request-rate-range", "100", "-p", "300", "--max-trials", "3"], timeout=60.0)
    raw = work / f"{path}.raw"
    load = threading.Thread(target=pa.run_perf_analyzer, args=(args,), kwargs={"timeout": 120.0}, daemon=True)
    load.start()
    time.sleep(1.0)  # perf_analyzer's start: sampling begins on steady load, and stops before the load does
    spy = subprocess.run(
        [py_spy() or "py-spy", "record", "--pid", str(process.pid), "--duration", str(int(seconds)),
         "--rate", "250", "--format", "raw", "--output", str(raw), "--native"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    load.join(timeout=180)
    if spy.returncode != 0 or not raw.exists():
        raise SystemExit(f"py-spy failed on the {path} gateway: {spy.stderr.strip()[-500:]}")
    if keep_raw is not None:  # the stacks themselves, for a flame graph (flamegraph.pl, speedscope)
        keep_raw.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, keep_raw / f"gateway_{path}.raw")
    summary = summarize(parse_raw(raw.read_text()))
    summary.update({"path": path, "rate": rate, "seconds": seconds})
    process.stop()
    return summary


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["paths"]
    names = sorted({s for run in runs for s in run["stages"]})
    fig, ax = plt.subplots(figsize=(10, 4 + 0.3 * len(names)))
    left = [0.0] * len(runs)
    for name in names:
        shares = [run["stages"].get(name, 0.0) * 100 for run in runs]
        ax.barh([run["path"] for run in runs], shares, left=left, label=name)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.set_xlabel("share of the gateway's samples (%)")
    ax.set_title("gateway time by stage (py-spy, perf_analyzer load)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3400.0, help="requests/s for the L1 hit path (default 3400)")
    parser.add_argument("--redis-rate", type=float, default=2200.0, help="requests/s for the Redis hit path")
    parser.add_argument("--miss-rate", type=float, default=400.0, help="requests/s for the miss path (default 400)")
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time per path (default 10)")
    parser.add_argument("--paths", default="l1,redis,miss", help="which of l1, redis, miss (default all)")
    parser.add_argument("--report", type=Path, default=RESULTS / "gateway_profile.json")
    parser.add_argument("--keep-raw", type=Path, metavar="DIR", help="also keep py-spy's raw stacks there")
    args = parser.parse_args(argv)
    console = Console()
    if py_spy() is None:
        console.print("[red]py-spy is not installed: pip install -r requirements/dev.txt[/]")
        return 2
    report: dict[str, Any] = {"command": " ".join(["python", "benchmarks/profile_gateway.py", *(argv or sys.argv[1:])]),
                              "paths": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, Stack(Path(tmp)) as stack:
        work = Path(tmp)
        with console.status("starting Redis and the function"):
            repo = work / "models"
            subprocess.run([*edgeinfer_command("examples"), str(repo)], cwd=REPO_ROOT, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            redis = RedisServer(free_port(), dir=work / "redis")
            redis.start()
            stack.callback(redis.stop)
            redis.wait_ready()
            _, function = stack.process("function", [*edgeinfer_command("function"), "--model-repo", str(repo)])
        gateway = [*edgeinfer_command("gateway"), "--route", f"{MODEL}={function}", "--redis", redis.url]
        variants = {"l1": gateway, "redis": [*gateway, "--l1-max-bytes", "0"], "miss": gateway}
        for path in [p.strip() for p in args.paths.split(",") if p.strip()]:
            rate = {"miss": args.miss_rate, "redis": args.redis_rate}.get(path, args.rate)
            with console.status(f"profiling the {path} path at {rate:,.0f}/s for {args.seconds:g} s"):
                run = profile_path(stack, variants[path], path, rate, args.seconds, work, args.keep_raw)
                report["paths"].append(run)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.report.with_suffix(".png"))
    for run in report["paths"]:
        table = Table(title=f"{run['path']} at {run['rate']:,.0f}/s: {run['samples']} samples")
        table.add_column("stage")
        table.add_column("share", justify="right")
        table.add_column("of busy", justify="right")
        for name, share in run["stages"].items():
            table.add_row(
                name, f"{share:.1%}", f"{run['busy_stages'].get(name, 0.0):.1%}" if "idle" not in name else ""
            )
        console.print(table)
        for item in run["top_self"][:8]:
            console.print(f"  {item['share']:6.1%}  {item['frame']}")
    console.print(f"report: {args.report} and {args.report.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
