"""Ratios between servers, each computed within one round, then summarised across rounds.

A ratio divides two rates measured in the same round (the same minutes of the same machine), so the
machine's drift between rounds cancels out. Across rounds the summary gives the median and the range
(lowest, highest) of each ratio, and every round's value. Taking each server's best round and dividing
those would mix rounds: on 2026-11-29 fraud's edgeinfer ÷ best peer was 1.58× in round 1 and 1.84× in
round 2, and best-of-each would have said 1.84× from edgeinfer's round 2 over KServe's round 1.

Pure functions on plain data, so that the benchmark (benchmarks/functions_vs_peers.py) and a
recomputation from its JSON report (`ratios_from_report`) share the same code; no imports from the
benchmark's process machinery.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

PEERS = ("mlserver", "kserve")


def _ratio(a: float, b: float) -> float | None:
    return a / b if a > 0 and b > 0 else None


def model_ratios(rates: Mapping[str, float]) -> dict[str, Any]:
    """The ratios for one model from one round's rates, keyed by contender ("echo", "edgeinfer", ...)."""
    entry: dict[str, Any] = {}
    peers = {k: v for k, v in rates.items() if k in PEERS and v > 0}
    if "edgeinfer" in rates and peers:
        best_peer = max(peers, key=lambda k: peers[k])
        entry["best_peer"] = best_peer
        entry["edgeinfer_vs_best_peer"] = _ratio(rates["edgeinfer"], peers[best_peer])
        entry["edgeinfer_vs_each_peer"] = {k: _ratio(rates["edgeinfer"], v) for k, v in peers.items()}
    if "edgeinfer" in rates and "edgeinfer-nobatch" in rates:
        entry["batching_on_vs_off"] = _ratio(rates["edgeinfer"], rates["edgeinfer-nobatch"])
    if rates.get("echo", 0) > 0:
        entry["vs_echo"] = {k: _ratio(v, rates["echo"]) for k, v in rates.items() if k != "echo"}
    return entry


def rates_by_round(runs: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """model → round → contender → max rate, from run records with model, contender, round, max_rate.

    A run that found no passing rate counts as 0 (its ratios are then None).
    """
    out: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        rate = run.get("max_rate", run.get("max_achieved_rate"))
        out.setdefault(run["model"], {}).setdefault(int(run.get("round", 1)), {})[run["contender"]] = float(rate or 0.0)
    return out


def _flatten(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """{"vs_echo": {"edgeinfer": 0.7}} → {"vs_echo.edgeinfer": 0.7}; non-numeric leaves (best_peer) dropped."""
    flat: dict[str, float | None] = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif value is None or isinstance(value, int | float):
            flat[name] = value
    return flat


def summarise(values: Iterable[float | None]) -> dict[str, Any]:
    """Median and range of a ratio across rounds; a round where it is undefined (None) is left out."""
    each = list(values)
    defined = [v for v in each if v is not None]
    return {
        "median": statistics.median(defined) if defined else None,
        "min": min(defined) if defined else None,
        "max": max(defined) if defined else None,
        "each_round": each,
    }


def ratios_across_rounds(rates: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, Any]:
    """For each model: every round's ratios (within that round) and each ratio's median and range.

    {"fraud": {"rounds": {"1": {...model_ratios...}, "2": {...}},   (string keys, as JSON has them)
               "best_peer": {"1": "kserve", "2": "mlserver"},
               "summary": {"edgeinfer_vs_best_peer": {"median": .., "min": .., "max": .., "each_round": [..]},
                           "vs_echo.edgeinfer": {...}, ...}}}
    """
    out: dict[str, Any] = {}
    for model, rounds in rates.items():
        per_round = {str(n): model_ratios(rounds[n]) for n in sorted(rounds)}
        flat = {n: _flatten(entry) for n, entry in per_round.items()}
        names = sorted({name for entry in flat.values() for name in entry})
        out[model] = {
            "rounds": per_round,
            "best_peer": {n: entry.get("best_peer") for n, entry in per_round.items()},
            "summary": {name: summarise(flat[n].get(name) for n in per_round) for name in names},
        }
    return out


def ratios_from_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """Recompute `ratios_across_rounds` from a functions_vs_peers JSON report's per-round `runs`."""
    return ratios_across_rounds(rates_by_round(report["runs"]))
