"""Progress of a rollout as it runs: a rich Live table (a row per region, refreshed at each poll) on a terminal,
plain lines otherwise (a log, a CI job)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from edgeinfer.rollout.report import RegionOutcome, Sample, StepResult

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "pending": "cyan", "no-data": "yellow"}
_OUTCOME_STYLE = {"promoted": "bold green", "rolled_back": "bold red", "aborted": "bold red", "preempted": "yellow"}


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


class LiveView:
    """The controller's observer that shows progress. Use as a context manager around the rollout."""

    def __init__(self, console: Console, regions: list[str], steps: list[int], title: str) -> None:
        self.console = console
        self.steps = steps
        self.title = title
        self.rows: dict[str, list[str]] = {r: [r, "-", "-", "-", "-", "-", "-", "waiting"] for r in regions}
        self._live: Live | None = None
        self._fancy = console.is_terminal

    def __enter__(self) -> LiveView:
        if self._fancy:
            self._live = Live(self._table(), console=self.console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
            self._live.__exit__(kind, value, tb)
            self._live = None

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for name, justify in (
            ("region", "left"),
            ("step", "right"),
            ("weight", "right"),
            ("requests (cand/base)", "right"),
            ("errors", "right"),
            ("p99 ms (cand/base)", "right"),
            ("disagreement", "right"),
            ("verdict", "left"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for row in self.rows.values():
            verdict = row[-1]
            style = _STYLE.get(verdict, _OUTCOME_STYLE.get(verdict, ""))
            table.add_row(*(Text(cell) for cell in row[:-1]), Text(verdict.replace("_", " "), style=style))
        return table

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table(), refresh=True)

    def sample(self, s: Sample) -> None:
        step = "pin" if s.step < 0 else f"{s.step + 1}/{len(self.steps)}" + (f" ×{s.attempt}" if s.attempt > 1 else "")
        errors = "-" if s.error_rate is None else f"{s.error_rate * 100:.2f} %"
        row = [
            s.region,
            step,
            f"{s.weight} %",
            f"{_num(s.candidate_requests, '.0f')}/{_num(s.baseline_requests, '.0f')}",
            errors,
            f"{_num(s.p99_ms, '.1f')}/{_num(s.baseline_p99_ms, '.1f')}",
            "-" if s.disagreement is None else f"{s.disagreement * 100:.2f} % of {s.comparisons:.0f}",
            s.verdict,
        ]
        previous = self.rows.get(s.region)
        if s.candidate_requests is None and previous is not None and previous[3] != "-":
            # A confirmed split (rolled back, promoted) has no window: keep the last one measured beside it.
            row = [*previous[:2], row[2], *previous[3:7], row[7]]
        self.rows[s.region] = row
        if self._fancy:
            self._refresh()
        else:
            self.console.print(
                f"t={s.t:7.2f}s {row[0]} step {row[1]} weight {row[2]} requests {row[3]} errors {row[4]} "
                f"p99 {row[5]} disagreement {row[6]}: {row[7]}",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )

    def step(self, r: StepResult) -> None:
        text = f"{r.region}: step {r.step + 1}/{len(self.steps)} ({r.weight} %) {r.verdict}"
        if r.reason:
            text += f": {r.reason}"
        self._print(text)

    def note(self, t: float, region: str, text: str) -> None:
        self._print(f"{region}: {text}")

    def outcome(self, o: RegionOutcome) -> None:
        row = self.rows.get(o.region)
        if row is not None:
            row[-1] = o.state
        text = f"{o.region}: {o.state.replace('_', ' ')}"
        if o.reason:
            text += f": {o.reason}"
        if o.rollback is not None and o.rollback.seconds is not None:
            text += f" (at 0 % {o.rollback.seconds:.2f} s after the failing check)"
        self._print(text)
        self._refresh()

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, soft_wrap=True, highlight=False, markup=False)
        else:
            self.console.print(text, soft_wrap=True, highlight=False, markup=False)
