"""`edgeinfer trace generate|stats|import|replay`: synthetic traces, their Azure statistics, recorded gateway
traces, and the live check (a trace replayed through a running stack)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from edgeinfer.tuner.traces import (
    DEFAULT_REGIONS,
    RegionSpec,
    TraceError,
    TraceParams,
    format_stats,
    generate,
    read_spans,
    read_trace,
    trace_stats,
)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 30,8,2") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _regions(text: str) -> tuple[RegionSpec, ...]:
    """NAME:UTC_OFFSET:SCALE,... e.g. us-east:-5:1,eu-west:0:0.8"""
    out = []
    for part in _names(text):
        try:
            name, offset, scale = part.split(":")
            out.append(RegionSpec(name, float(offset), float(scale)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--regions {part!r}: expected NAME:UTC_OFFSET_HOURS:SCALE") from None
    return tuple(out)


_CONVERTERS = {"popular_rates": _floats, "popular_profiles": _names, "other_profiles": _names, "names": _names,
               "regions": _regions}  # fmt: skip
_HELP = {
    "hours": "length of the trace in (possibly compressed) hours",
    "resolution_s": "bin width of the written counts, seconds",
    "day_s": "seconds per diurnal cycle: 86400 real time, 600 compresses a day into 10 minutes",
    "start_hour_of_week": "UTC hour of the week at t=0 (Monday 00:00 = 0)",
    "regions": "NAME:UTC_OFFSET_HOURS:SCALE,... (default us-east:-5:1,eu-west:0:0.8,ap-south:5.5:0.6)",
    "trough_ratio": "night rate over afternoon peak rate",
    "models": "models in the catalog (each region serves all)",
    "popular_rates": "daily-mean requests/s of the popular models, most popular first",
    "popular": "how many popular models (default: from --share-minutely-or-less)",
    "names": "model names in catalog order (default m00, m01, ...)",
    "burst_gap_mean_s": "mean gap between burst onsets of a popular model (Pareto, heavy-tailed)",
    "burst_gap_alpha": "Pareto shape of burst gaps (lower = heavier tail)",
    "hit_ratio": "share of requests the gateway cache answers",
    "rate_scale": "multiply every rate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trace_command", required=True)
    gen = sub.add_parser("generate", help="write a synthetic multi-region trace", description=__doc__)
    gen.add_argument("--out", type=Path, required=True, help="trace file to write (.csv or .csv.gz)")
    defaults = TraceParams()
    for f in fields(TraceParams):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        convert = _CONVERTERS.get(f.name) or (type(default) if default is not None else int)
        shown = ",".join(str(x) for x in default) if isinstance(default, tuple) and f.name != "regions" else default
        text = _HELP.get(f.name, f.name.replace("_", " "))
        gen.add_argument(flag, dest=f.name, type=convert, default=None,
                         help=f"{text} (default: {shown})" if f.name != "regions" else text)  # fmt: skip
    stats = sub.add_parser("stats", help="a trace's requests and Azure statistics")
    stats.add_argument("trace", type=Path)
    imp = sub.add_parser("import", help="a recorded trace from gateway span files (--trace console --trace-file)")
    imp.add_argument("spans", type=Path, nargs="+")
    imp.add_argument("--out", type=Path, required=True)
    imp.add_argument("--hit-ratio", type=float, default=0.0, help="the cache hit ratio to replay with")
    from edgeinfer.tuner.replay import add_replay_arguments

    add_replay_arguments(sub.add_parser("replay", help="the live check: replay a trace through a running stack"))


def run(args: argparse.Namespace) -> int:
    try:
        if args.trace_command == "generate":
            values = {f.name: getattr(args, f.name) for f in fields(TraceParams) if getattr(args, f.name) is not None}
            params = TraceParams(**values)
            if not params.regions:
                params = TraceParams(**{**values, "regions": DEFAULT_REGIONS})
            trace = generate(params)
            trace.write(args.out)
            print(f"wrote {args.out}: {format_stats(trace_stats(trace))}", end="")
            return 0
        if args.trace_command == "stats":
            trace = read_trace(args.trace)
            print(format_stats(trace_stats(trace)), end="")
            return 0
        if args.trace_command == "import":
            trace = read_spans(args.spans, args.hit_ratio)
            trace.write(args.out)
            print(f"wrote {args.out}: {format_stats(trace_stats(trace))}", end="")
            return 0
        from edgeinfer.tuner.replay import run_replay

        return run_replay(args)
    except (TraceError, ValueError) as exc:
        print(f"edgeinfer trace: {exc}", file=sys.stderr)
        return 2
