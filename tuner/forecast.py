"""Demand forecast per (region, model) and time slot: an hour-of-week profile learned from history, corrected by
a recent EWMA of the measured rate, plus a burst allowance at an upper quantile.

Everything is learned from counts per bin (a history trace, or the gateway's counters); time is in trace
seconds, and one "hour" is day_s / 24 of them, so a compressed trace forecasts the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOURS_PER_WEEK = 168


@dataclass(frozen=True, slots=True)
class SlotForecast:
    mean_rps: float  # expected miss-request rate in the slot
    upper_rps: float  # the upper quantile of the 1-minute rate (burst allowance)
    cold_waits_at_zero: float  # requests expected to wait on a cold start in the slot if min-scale is 0
    level: float  # EWMA correction applied to the profile (1 = as history says)


class DemandModel:
    """What history says about one pool: its hour-of-week profile, how far minutes run above it, how fast
    bursts outrun a reactive autoscaler, and how often it would wake from zero."""

    def __init__(
        self,
        counts: np.ndarray,
        bin_s: float,
        *,
        day_s: float = 86400.0,
        start_hour_of_week: float = 0.0,
        upper_quantile: float = 0.95,
        reaction_s: float = 12.0,
        keep_s: float = 60.0,
        utilization: float = 0.7,
    ) -> None:
        self.bin_s = bin_s
        self.hour_s = day_s / 24.0
        self.start_how = start_hour_of_week
        # The clock forecasts are asked in: the history's while learning; set it to the live or replayed trace's.
        self.clock_how = start_hour_of_week
        self.upper_quantile = upper_quantile
        counts = np.asarray(counts, dtype=np.float64)
        self.history_s = len(counts) * bin_s
        hours = (self.start_how + (np.arange(len(counts)) + 0.5) * bin_s / self.hour_s) % HOURS_PER_WEEK
        how = hours.astype(np.int64)
        # Hour of week where history has it, else hour of day (mean over the days seen) times a weekday factor.
        sums = np.bincount(how, counts, minlength=HOURS_PER_WEEK)
        seen = np.bincount(how, minlength=HOURS_PER_WEEK) * bin_s
        hod_sum = np.bincount(how % 24, counts, minlength=24)
        hod_seen = np.bincount(how % 24, minlength=24) * bin_s
        hod = np.divide(hod_sum, hod_seen, out=np.zeros(24), where=hod_seen > 0)
        dow_sum = np.bincount(how // 24, counts, minlength=7)
        dow_seen = np.bincount(how // 24, minlength=7) * bin_s
        overall = counts.sum() / max(self.history_s, 1e-9)
        dow = np.divide(dow_sum, dow_seen, out=np.ones(7) * overall, where=dow_seen > 0) / max(overall, 1e-12)
        fallback = np.array([hod[h % 24] * dow[h // 24] for h in range(HOURS_PER_WEEK)])
        observed = np.divide(sums, seen, out=fallback.copy(), where=seen > 0)
        # Blend: the hour-of-week value alone is one noisy sample per week of history.
        self.profile = 0.5 * observed + 0.5 * fallback  # requests per trace second, per hour of week
        expected = self.rate_at(np.arange(len(counts)) * bin_s + bin_s / 2) * bin_s
        self._upper_ratio = self._learn_upper(counts, expected)
        self._burst_grid, self._burst_exposure = self._learn_bursts(counts, expected, reaction_s, utilization)
        self._cold_by_hour = self._learn_cold(counts, keep_s)

    # -- learning ------------------------------------------------------------------------------

    def _learn_upper(self, counts: np.ndarray, expected: np.ndarray) -> float:
        per_minute = max(1, round(self.hour_s / 60.0 / self.bin_s))
        n = len(counts) // per_minute * per_minute
        if n == 0:
            return 1.0
        observed = counts[:n].reshape(-1, per_minute).sum(axis=1)
        wanted = expected[:n].reshape(-1, per_minute).sum(axis=1)
        meaningful = wanted >= 5.0  # minutes where Poisson noise does not dominate
        if meaningful.sum() < 10:
            return 1.5
        return max(1.0, float(np.quantile(observed[meaningful] / wanted[meaningful], self.upper_quantile)))

    def _learn_bursts(
        self, counts: np.ndarray, expected: np.ndarray, reaction_s: float, utilization: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Share of requests that arrive beyond both a warm floor of u × forecast and what a reactive autoscaler
        provisioned one reaction time earlier (the previous window's demand at its target utilization)."""
        per_window = max(1, round(reaction_s / self.bin_s))
        n = len(counts) // per_window * per_window
        grid = np.concatenate([np.linspace(0.0, 3.0, 31), np.linspace(3.2, 12.0, 45)])
        if n < 2 * per_window:
            return grid, np.zeros_like(grid)
        demand = counts[:n].reshape(-1, per_window).sum(axis=1)
        forecast = expected[:n].reshape(-1, per_window).sum(axis=1)
        reactive = np.concatenate([[0.0], demand[:-1] / utilization])
        total = max(demand.sum(), 1.0)
        exposure = np.array(
            [np.maximum(0.0, demand - np.maximum(u * forecast, reactive)).sum() / total for u in grid]
        )
        return grid, exposure

    def _learn_cold(self, counts: np.ndarray, keep_s: float) -> np.ndarray:
        """Requests per hour of day that would wake the pool from zero: the first after a gap longer than keep_s."""
        busy = np.flatnonzero(counts > 0)
        per_hour = np.zeros(24)
        if len(busy) == 0:
            return per_hour
        gaps = np.diff(np.concatenate([[-math.inf], busy.astype(np.float64)])) * self.bin_s
        wakes = busy[gaps > keep_s]
        hours = ((self.start_how + (wakes + 0.5) * self.bin_s / self.hour_s) % 24).astype(np.int64)
        days = max(self.history_s / (24 * self.hour_s), 1e-9)
        # Each wake makes its own request wait, and those of its bin (they arrive during the cold start).
        np.add.at(per_hour, hours, counts[wakes])
        return per_hour / days  # per hour of day, per day

    # -- forecasting ---------------------------------------------------------------------------

    def hour_of_week(self, t: np.ndarray | float) -> np.ndarray:
        return np.asarray((self.clock_how + np.asarray(t) / self.hour_s) % HOURS_PER_WEEK)

    def rate_at(self, t: np.ndarray | float) -> np.ndarray:
        """Profile rate (requests per trace second) at trace times t, linear between hour centres."""
        h = self.hour_of_week(t) - 0.5
        low = np.floor(h).astype(np.int64) % HOURS_PER_WEEK
        frac = h - np.floor(h)
        return np.asarray(self.profile[low] * (1 - frac) + self.profile[(low + 1) % HOURS_PER_WEEK] * frac)

    def burst_exposure(self, headroom: float) -> float:
        """Share of requests meeting demand beyond a warm floor of `headroom` × the forecast (learned)."""
        return float(np.interp(headroom, self._burst_grid, self._burst_exposure, right=0.0))

    def _level(self, counts: np.ndarray, expected: np.ndarray, weights: np.ndarray, bin_s: float) -> float:
        """How far recent demand runs above the profile: the EWMA-weighted median of the minutes' ratios where
        minutes hold enough requests, so a burst of a minute or two (which the burst allowance covers) does not
        raise the next slots' level; else the ratio of the weighted sums, with a prior of a few requests."""
        per_minute = max(1, round(self.hour_s / 60.0 / bin_s))
        n = len(counts) // per_minute * per_minute
        if n:
            tail = len(counts) - n  # whole minutes, the newest kept
            observed = counts[tail:].reshape(-1, per_minute).sum(axis=1)
            wanted = expected[tail:].reshape(-1, per_minute).sum(axis=1)
            weight = weights[tail:].reshape(-1, per_minute).mean(axis=1)
            meaningful = wanted >= 5.0
            if meaningful.sum() >= 10:
                ratio, weight = observed[meaningful] / wanted[meaningful], weight[meaningful]
                order = np.argsort(ratio)
                cumulative = np.cumsum(weight[order])
                return float(ratio[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
        prior = 2.0  # pseudo-requests: a few stray requests do not double a quiet pool's forecast
        return float(((weights * counts).sum() + prior) / ((weights * expected).sum() + prior))

    def forecast(self, start: float, end: float, recent: tuple[np.ndarray, float, float] | None = None,
                 halflife_s: float = 1800.0) -> SlotForecast:  # fmt: skip
        """Forecast for trace times [start, end), this model's clock starting where the history's did.

        `recent` = (counts, bin_s, t0): what was measured just before `start` (bins from t0); its EWMA against
        the profile's over the same bins corrects the level (clipped to [0.5, 2]).
        """
        grid = np.linspace(start, end, 16, endpoint=False) + (end - start) / 32
        base = float(self.rate_at(grid).mean())
        level = 1.0
        if recent is not None and len(recent[0]):
            counts, bin_s, t0 = recent
            centres = t0 + (np.arange(len(counts)) + 0.5) * bin_s
            weights = 0.5 ** ((start - centres) / halflife_s)
            level = min(2.0, max(0.5, self._level(np.asarray(counts, dtype=np.float64),
                                                  self.rate_at(centres) * bin_s, weights, bin_s)))  # fmt: skip
        mean = base * level
        hours = ((self.clock_how + grid / self.hour_s) % 24).astype(np.int64)
        slot_hours = (end - start) / self.hour_s
        cold = float(self._cold_by_hour[hours].mean() * slot_hours * level)
        return SlotForecast(mean, mean * self._upper_ratio, cold, level)
