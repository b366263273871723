"""NVIDIA's perf_analyzer, unchanged, from the tritonclient 2.45.0 wheel: a judge for the tests and a load generator
for benchmarks/perf_analyzer.py.

The wheel pins protobuf < 5 and so conflicts with tritonclient 2.73 in the dev environment: it lives in a venv of
its own, built once and reused (`ensure_perf_analyzer`). Where: $EDGEINFER_PERF_ANALYZER_VENV, else
benchmarks/.venvs/perf_analyzer-2.45.0 in this clone (git-ignored, next to the benchmark peers' venvs). A file lock
beside it makes concurrent builders (pytest-xdist workers, .ci/run and a test run) wait for one build; a marker
file written last says the build finished. `python tests/testkit/perf_analyzer.py` builds it and prints its path.

The binary (<venv>/bin/perf_analyzer, in the wheel's data) needs only `--no-deps` installs of the wheel and of
nvidia-cuda-runtime-cu12 (libcudart.so.12, put on LD_LIBRARY_PATH; no GPU needed), plus Debian's libb64-0d. It
depends on no Python at run time.

Standard library only, so the file also runs as a script and is loaded by path from benchmarks/.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

TRITONCLIENT_VERSION = "2.45.0"
REQUIREMENTS = (f"tritonclient=={TRITONCLIENT_VERSION}", "nvidia-cuda-runtime-cu12==12.*")
VENV_ENV = "EDGEINFER_PERF_ANALYZER_VENV"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO / "benchmarks" / ".venvs" / f"perf_analyzer-{TRITONCLIENT_VERSION}"
MARKER = ".edgeinfer-perf-analyzer.json"
BUILD_TIMEOUT_S = 600.0

# Short measurements for tests: three windows of a few requests each (perf_analyzer wants 3 stable windows), and
# a stability bound (max/min of the windows ≤ 101) that a busy 2-core machine cannot miss. The tests judge that
# perf_analyzer works against us, not a figure.
SHORT = ("--measurement-mode", "count_windows", "--measurement-request-count", "20", "-s", "10000", "--max-trials", "5")


class PerfAnalyzerUnavailable(RuntimeError):
    """perf_analyzer cannot be installed or cannot start on this machine; the message says what to do."""


class PerfAnalyzerFailed(RuntimeError):
    """perf_analyzer ran but exited non-zero, printed no throughput, or ran past its timeout."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n--- perf_analyzer output ---\n{output}")
        self.output = output


@dataclass(frozen=True, slots=True)
class Installation:
    venv: Path
    binary: Path
    lib_dir: Path  # libcudart.so.12

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        paths = [str(self.lib_dir), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep))]
        return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(paths), **(extra or {})}


def venv_path() -> Path:
    configured = os.environ.get(VENV_ENV)
    return Path(configured).expanduser().resolve() if configured else DEFAULT_VENV


def _installation(venv: Path) -> Installation | None:
    """The finished install at `venv` (its marker names exactly REQUIREMENTS), or None."""
    try:
        marker = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return None
    libs = sorted(venv.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))
    binary = venv / "bin" / "perf_analyzer"
    if marker.get("requirements") != list(REQUIREMENTS) or not libs or not binary.is_file():
        return None
    return Installation(venv, binary, libs[-1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def _build(venv: Path) -> None:
    log = venv.parent / f"{venv.name}.build.log"
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", *REQUIREMENTS],
    ]
    with log.open("wb") as out:
        for argv in steps:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            try:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                done = None
            if done is None or done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise PerfAnalyzerUnavailable(
                    f"building perf_analyzer's venv {venv} failed at `{' '.join(argv)}` (log {log}); it needs "
                    f"PyPI (or an index that has {' and '.join(REQUIREMENTS)}):\n{tail}"
                )
    (venv / MARKER).write_text(json.dumps({"requirements": list(REQUIREMENTS)}, indent=2) + "\n")


def ensure_perf_analyzer(venv: Path | None = None) -> Installation:
    """The perf_analyzer install, built first if missing (once, whoever else is building it), and checked to start."""
    venv = venv or venv_path()
    installation = _installation(venv)
    if installation is None:
        with _locked(venv.parent / f"{venv.name}.lock"):
            installation = _installation(venv)  # another process may have built it while this one waited
            if installation is None:
                _build(venv)
                installation = _installation(venv)
        if installation is None:
            raise PerfAnalyzerUnavailable(f"{venv}: the wheel installed, but no bin/perf_analyzer or libcudart in it")
    _check_starts(installation)
    return installation


@cache
def _check_starts(installation: Installation) -> None:
    """`perf_analyzer --version`: the loader finds its libraries. A missing libb64 says how to install it."""
    done = subprocess.run(
        [str(installation.binary), "--version"], capture_output=True, text=True, env=installation.env(), timeout=60
    )
    output = done.stdout + done.stderr
    if done.returncode == 0 and "Perf Analyzer Version" in output:
        return
    if "libb64" in output:
        raise PerfAnalyzerUnavailable(
            "perf_analyzer needs Debian's libb64 (libb64.so.0d): `apt-get install libb64-0d` "
            f"(.ci/run installs it). The loader said: {output.strip()}"
        )
    raise PerfAnalyzerUnavailable(f"{installation.binary} --version exited {done.returncode}: {output.strip()}")


# ---------------------------------------------------------------- its output

_LOAD = re.compile(r"^(Request concurrency|Request Rate): ([\d.]+)")
_THROUGHPUT = re.compile(r"^\s+Throughput: ([\d.eE+-]+) infer/sec")
_AVG = re.compile(r"^\s+Avg latency: (\d+) usec")
_PERCENTILE = re.compile(r"^\s+p(\d+) latency: (\d+) usec")
_SERVER_COUNT = re.compile(r"^\s+(Inference|Execution|Cache hit|Cache miss|Successful request|Request) count: (\d+)")
_SUMMARY = re.compile(r"^(Concurrency|Request Rate): [\d.]+, throughput: ([\d.eE+-]+) infer/sec, latency (\d+) usec")


@dataclass(slots=True)
class Measurement:
    """One stable measurement: a concurrency or a request rate, as perf_analyzer reports it."""

    load: str  # "concurrency" or "request_rate"
    value: float
    throughput: float = 0.0  # infer/sec, the client's
    avg_latency_us: int | None = None
    latency_us: dict[int, int] = field(default_factory=dict)  # percentile -> usec
    client_lines: list[str] = field(default_factory=list)
    server_lines: list[str] = field(default_factory=list)
    # From the Server section: inference, execution, cache_hit, cache_miss, successful_request (counts).
    server: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PerfResult:
    args: list[str]
    returncode: int
    output: str
    measurements: list[Measurement]
    summary: list[str]  # the "Concurrency: 1, throughput: ... infer/sec, latency ... usec" lines

    @property
    def last(self) -> Measurement:
        if not self.measurements:
            raise PerfAnalyzerFailed("perf_analyzer reported no measurement", self.output)
        return self.measurements[-1]

    @property
    def throughput(self) -> float:
        return self.last.throughput

    def p(self, percentile: int) -> int:
        """The last measurement's client latency at p50, p90, p95 or p99, in usec."""
        return self.last.latency_us[percentile]

    @property
    def client_lines(self) -> list[str]:
        return self.last.client_lines

    @property
    def server_lines(self) -> list[str]:
        return self.last.server_lines


def parse_output(text: str) -> tuple[list[Measurement], list[str]]:
    """The measurements and summary lines of perf_analyzer's standard output."""
    measurements: list[Measurement] = []
    summary: list[str] = []
    current: Measurement | None = None
    section: list[str] | None = None
    for line in text.splitlines():
        if _SUMMARY.match(line):  # before _LOAD: "Request Rate: 100, throughput: ..." starts both
            summary.append(line)
            current = section = None
        elif match := _LOAD.match(line):
            kind = "concurrency" if match.group(1) == "Request concurrency" else "request_rate"
            current = Measurement(kind, float(match.group(2)))
            measurements.append(current)
            section = None
        elif current is not None and line.strip() == "Client:":
            section = current.client_lines
        elif current is not None and line.strip() == "Server:":
            section = current.server_lines
        elif current is not None and section is not None and line.startswith("    "):
            section.append(line.strip())
            if match := _THROUGHPUT.match(line):
                current.throughput = float(match.group(1))
            elif match := _AVG.match(line):
                current.avg_latency_us = int(match.group(1))
            elif match := _PERCENTILE.match(line):
                current.latency_us[int(match.group(1))] = int(match.group(2))
            elif section is current.server_lines and (match := _SERVER_COUNT.match(line)):
                current.server[match.group(1).lower().replace(" ", "_")] = int(match.group(2))
        elif line.strip() and not line.startswith(" "):
            section = None
    # A load level perf_analyzer announced but could not measure (no Client section) is not a measurement.
    return [m for m in measurements if m.client_lines], summary


UNSTABLE = "Failed to obtain stable measurement"


def run_perf_analyzer(
    args: Sequence[str],
    timeout: float,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    unstable_retries: int = 0,
) -> PerfResult:
    """Run perf_analyzer with `args` (killed, with nothing left behind, after `timeout` s) and parse its output.

    With `check`, PerfAnalyzerFailed unless it exited 0 and printed a throughput for every measurement.
    `unstable_retries`: runs again, up to that many times, only when perf_analyzer's verdict was that its windows
    did not agree (its own defaults want three 5 s windows within 10 %: noise on a shared machine, not an error
    of the server); any other failure fails at once. `timeout` is per run.
    """
    for attempt in range(unstable_retries + 1):
        result = _run_once(args, timeout, env)
        if result.returncode == 0 or UNSTABLE not in result.output or attempt == unstable_retries:
            break
    if check:
        command = "perf_analyzer " + " ".join(args)
        if result.returncode != 0:
            raise PerfAnalyzerFailed(f"{command}: exited {result.returncode}", result.output)
        if not result.measurements or not result.summary or any(m.throughput <= 0 for m in result.measurements):
            raise PerfAnalyzerFailed(f"{command}: no throughput line", result.output)
    return result


def _run_once(args: Sequence[str], timeout: float, env: dict[str, str] | None) -> PerfResult:
    installation = ensure_perf_analyzer()
    argv = [str(installation.binary), *args]
    # Its own process group: a kill takes every thread and anything it started, whatever happens here.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=installation.env(env),
        start_new_session=True,
    )
    timed_out = False
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raw, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = raw.decode(errors="replace")
    if timed_out:
        raise PerfAnalyzerFailed(f"perf_analyzer {' '.join(args)}: still running after {timeout:g} s, killed", output)
    measurements, summary = parse_output(output)
    return PerfResult(list(args), proc.returncode, output, measurements, summary)


if __name__ == "__main__":
    print(ensure_perf_analyzer().venv)
