"""Every figure in docs/benchmarks.md's tables comes from the result file its section names.

Fast and offline: reads Markdown and JSON, starts no process.

Which file a table comes from: walking back from the table, paragraph by paragraph, within its `##`
section, the first paragraph that names one or more `benchmarks/results/....json` (or `docs/drills/....json`)
paths; those files are the table's pool. A table with no such paragraph before it fails the test.

Which numbers are checked: every number in every body cell, except the first column (the row's label,
e.g. "fraud, 30 features (p99 ≤ 10 ms)") and a column headed "target" (goals, not measurements).

The pool: every numeric leaf of the named JSON files, except under the keys "steps" and "searches" (the
rate search's raw steps) and lists of bare numbers (raw samples, and copies of figures held elsewhere).
That keeps a table value from matching by chance one of thousands of raw figures.

The rounding rule: a table value shown with d decimals (commas are thousands separators) matches a JSON
value x when |x·k − value| ≤ ½·10⁻ᵈ (+1e-9), i.e. x·k rounded to the shown precision is the shown value.
k is 1, or the unit's scale when the JSON may hold the base unit: 1000 for "ms" (JSON in seconds), 10⁶ for
"µs", 100 for "%". A number's unit is the first unit written after it in the same cell ("3.72 / 10.20 ms":
both ms).

Also here: docs/security.md's auth timings against benchmarks/results/auth_cost.json; the ratio arithmetic
of benchmarks/common/rounds.py (within a round, then median and range); and that functions_vs_peers.json's
reported ratios are exactly that, recomputed from its own per-round runs, and §1's rows one round each.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
RESULT_PATH = re.compile(r"(?:benchmarks/results|docs/drills)/[\w./-]+?\.json")
NUMBER = re.compile(r"(?<![\w.])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)")
UNIT = re.compile(r"ms\b|µs\b|/s\b|×|%|\bs\b")
SCALES = {"ms": (1.0, 1000.0), "µs": (1.0, 1e6), "%": (1.0, 100.0)}
RAW_KEYS = {"steps", "searches"}
EXEMPT_HEADERS = {"target"}


def load_rounds() -> ModuleType:
    """benchmarks/common/rounds.py by path: `benchmarks` is run from the repository, not installed."""
    path = ROOT / "benchmarks" / "common" / "rounds.py"
    spec = importlib.util.spec_from_file_location("benchmarks_common_rounds", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rounds = load_rounds()


# ---------------------------------------------------------------- parsing the doc


@dataclass(frozen=True)
class DocTable:
    section: str
    line: int  # 1-based line of the header row
    header: list[str]
    rows: list[list[str]]
    files: list[str]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_separator(line: str) -> bool:
    return bool(re.fullmatch(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?", line.strip()))


def doc_tables(text: str) -> list[DocTable]:
    lines = text.splitlines()
    tables: list[DocTable] = []
    section = ""
    paragraphs: list[list[str]] = [[]]  # of the current section, the last one still open
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section, paragraphs = line[3:].strip(), [[]]
        elif line.startswith("|") and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            start = i
            header = _cells(line)
            i += 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            files: list[str] = []
            for paragraph in reversed(paragraphs):
                files = sorted(set(RESULT_PATH.findall(" ".join(paragraph))))
                if files:
                    break
            tables.append(DocTable(section, start + 1, header, rows, files))
            paragraphs.append([])
            continue
        elif not line.strip():
            paragraphs.append([])
        else:
            paragraphs[-1].append(line)
        i += 1
    return tables


@dataclass(frozen=True)
class Figure:
    text: str
    value: float
    decimals: int
    unit: str


def figures(cell: str) -> Iterator[Figure]:
    for match in NUMBER.finditer(cell):
        text = match.group(1)
        unit_match = UNIT.search(cell, match.end())
        decimals = len(text.split(".")[1]) if "." in text else 0
        yield Figure(text, float(text.replace(",", "")), decimals, unit_match.group(0) if unit_match else "")


def json_numbers(data: Any) -> Iterator[float]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in RAW_KEYS:
                yield from json_numbers(value)
    elif isinstance(data, list):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in data):
            for value in data:
                yield from json_numbers(value)
    elif isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data):
        yield float(data)


def matches(figure: Figure, pool: list[float]) -> bool:
    tolerance = 0.5 * 10.0**-figure.decimals + 1e-9
    return any(abs(x * k - figure.value) <= tolerance for k in SCALES.get(figure.unit, (1.0,)) for x in pool)


@cache
def pool_of(files: tuple[str, ...]) -> list[float]:
    numbers: list[float] = []
    for name in files:
        numbers.extend(json_numbers(json.loads((ROOT / name).read_text())))
    return numbers


def check(table: DocTable) -> tuple[int, list[str]]:
    """How many figures the table's checked cells hold, and those not in its result files."""
    pool = pool_of(tuple(table.files))
    checked = [h.lower() not in EXEMPT_HEADERS for h in table.header]
    unmatched = []
    count = 0
    for row in table.rows:
        for column, cell in enumerate(row):
            if column == 0 or column >= len(checked) or not checked[column]:
                continue
            for figure in figures(cell):
                count += 1
                if not matches(figure, pool):
                    unmatched.append(f"{row[0]!r} / {table.header[column]!r}: {figure.text}{figure.unit}")
    return count, unmatched


# ---------------------------------------------------------------- the doc against its result files

TABLES = doc_tables(BENCHMARKS_MD.read_text())


def test_the_doc_has_tables() -> None:
    assert len(TABLES) >= 5, [t.section for t in TABLES]


@pytest.mark.parametrize("table", TABLES, ids=[f"line{t.line}" for t in TABLES])
def test_every_table_figure_is_in_its_result_file(table: DocTable) -> None:
    assert table.files, (
        f"docs/benchmarks.md:{table.line} ({table.section}): no paragraph before the table names its result file"
    )
    missing_files = [f for f in table.files if not (ROOT / f).is_file()]
    assert not missing_files, f"docs/benchmarks.md:{table.line}: named result files do not exist: {missing_files}"
    count, unmatched = check(table)
    assert count, f"docs/benchmarks.md:{table.line}: a table without figures"
    assert not unmatched, (
        f"docs/benchmarks.md:{table.line} ({table.section}): not in {table.files} at the shown precision:\n  "
        + "\n  ".join(unmatched)
    )


def test_the_check_catches_a_figure_that_is_not_in_the_file() -> None:
    """The rule itself: a changed digit fails, a value rounded to the shown precision passes."""
    pool = [1063.9038796529042, 1.5779448705843713, 0.0032714340013626497]
    assert matches(next(figures("1,064/s")), pool)
    assert not matches(next(figures("1,065/s")), pool)
    assert matches(next(figures("**1.58×**")), pool)
    assert not matches(next(figures("1.57×")), pool)
    assert not matches(next(figures("1.6×")), [1.5779448705843713 * 1.1])
    assert matches(next(figures("3.27 ms")), pool)  # seconds in the JSON
    first, second = figures("3.27 / 10.20 ms")
    assert first.unit == second.unit == "ms"


def _bumped(figure: Figure) -> Figure:
    """The figure with its last digit changed (9 → 0), at the same precision and unit."""
    text = figure.text[:-1] + str((int(figure.text[-1]) + 1) % 10)
    return Figure(text, float(text.replace(",", "")), figure.decimals, figure.unit)


@pytest.mark.parametrize("table", TABLES, ids=[f"line{t.line}" for t in TABLES])
def test_the_check_is_not_vacuous_on_the_real_tables(table: DocTable) -> None:
    """Most figures of each table, with one digit changed, are no longer found in the result file.

    (Not all: a pool holds every round and rate searched, so a neighbouring value can match by chance.)
    """
    pool = pool_of(tuple(table.files))
    checked = [h.lower() not in EXEMPT_HEADERS for h in table.header]
    shown = [
        figure
        for row in table.rows
        for column, cell in enumerate(row)
        if 0 < column < len(checked) and checked[column]
        for figure in figures(cell)
    ]
    caught = [f for f in shown if not matches(_bumped(f), pool)]
    assert len(caught) >= len(shown) / 2, [f.text for f in shown if f not in caught]


def test_a_table_takes_its_files_from_the_nearest_paragraph_that_names_one() -> None:
    text = (
        "## 1. x\n\nResult file `benchmarks/results/a.json`.\n\n| a | b |\n|---|---|\n| r | 1 |\n\n"
        "Some prose.\n\n| a | b |\n|---|---|\n| r | 2 |\n\n"
        "## 2. y\n\n| a | b |\n|---|---|\n| r | 3 |\n"
    )
    first, second, third = doc_tables(text)
    assert first.files == second.files == ["benchmarks/results/a.json"]
    assert third.files == []  # never from another section


# ---------------------------------------------------------------- ratios within a round


def test_ratios_are_taken_within_a_round_and_summarised_by_median_and_range() -> None:
    # Round 1 is slow for edgeinfer, round 2 for KServe: best-of-each would say 1000 / 500 = 2.0.
    rates = {
        "fraud": {
            1: {"echo": 1500.0, "edgeinfer": 600.0, "mlserver": 300.0, "kserve": 500.0},
            2: {"echo": 1400.0, "edgeinfer": 1000.0, "mlserver": 560.0, "kserve": 250.0},
        }
    }
    out = rounds.ratios_across_rounds(rates)["fraud"]
    assert out["best_peer"] == {"1": "kserve", "2": "mlserver"}
    best = out["summary"]["edgeinfer_vs_best_peer"]
    assert best["each_round"] == pytest.approx([1.2, 1000 / 560])
    assert best["median"] == pytest.approx((1.2 + 1000 / 560) / 2)
    assert (best["min"], best["max"]) == pytest.approx((1.2, 1000 / 560))
    assert best["max"] < 2.0
    assert out["summary"]["vs_echo.edgeinfer"]["each_round"] == pytest.approx([0.4, 1000 / 1400])


def test_median_of_three_rounds_and_an_undefined_round() -> None:
    assert rounds.summarise([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "each_round": [3.0, 1.0, 2.0]}
    # A round where a server found no passing rate has no ratio; the others still count.
    got = rounds.ratios_across_rounds({"m": {1: {"edgeinfer": 10.0, "kserve": 0.0, "mlserver": 5.0}, 2: {}}})
    assert got["m"]["summary"]["edgeinfer_vs_best_peer"] == {
        "median": 2.0,
        "min": 2.0,
        "max": 2.0,
        "each_round": [2.0, None],
    }
    assert rounds.summarise([None, None]) == {"median": None, "min": None, "max": None, "each_round": [None, None]}


def test_functions_vs_peers_report_holds_its_within_round_ratios() -> None:
    report = json.loads((ROOT / "benchmarks" / "results" / "functions_vs_peers.json").read_text())
    recomputed = rounds.ratios_from_report(report)
    assert report["ratios"] == json.loads(json.dumps(recomputed)), (
        "rerun: python benchmarks/functions_vs_peers.py --recompute"
    )
    fraud = recomputed["fraud"]
    # The example: fraud is 1.58× within round 1 (KServe the best peer there), 1.84× within round 2.
    assert [round(v, 2) for v in fraud["summary"]["edgeinfer_vs_best_peer"]["each_round"]] == [1.58, 1.84]
    assert fraud["best_peer"] == {"1": "kserve", "2": "mlserver"}
    # Each round's ratio is exactly that round's two rates.
    rates = rounds.rates_by_round(report["runs"])
    for model, by_round in rates.items():
        for number, entry in recomputed[model]["rounds"].items():
            mine = by_round[int(number)]
            if "edgeinfer_vs_best_peer" in entry:
                assert entry["edgeinfer_vs_best_peer"] == mine["edgeinfer"] / mine[entry["best_peer"]]


SERVER_COLUMNS = {"echo ceiling": "echo", "edgeinfer": "edgeinfer", "MLServer": "mlserver", "KServe": "kserve"}


def test_functions_vs_peers_rows_are_one_round_each() -> None:
    """§1's every-round table: each row's rates are that model's runs in that round, and its ratio is theirs."""
    report = json.loads((ROOT / "benchmarks" / "results" / "functions_vs_peers.json").read_text())
    rates = rounds.rates_by_round(report["runs"])
    ratios = rounds.ratios_from_report(report)
    table = next(t for t in TABLES if t.header[0].startswith("model (bound), round"))
    assert len(table.rows) == sum(len(by_round) for by_round in rates.values())
    for row in table.rows:
        label = row[0]
        model = label.split(",")[0]
        number = int(re.findall(r"round (\d+)", label)[-1])
        for column, header in enumerate(table.header):
            if header in SERVER_COLUMNS:
                (figure,) = figures(row[column])
                assert figure.value == round(rates[model][number][SERVER_COLUMNS[header]]), (label, header)
            elif header.startswith("edgeinfer ÷ best peer"):
                figure = next(figures(row[column]))
                entry = ratios[model]["rounds"][str(number)]
                assert figure.value == round(entry["edgeinfer_vs_best_peer"], figure.decimals), label
                peer = {"kserve": "KServe", "mlserver": "MLServer"}[entry["best_peer"]]
                assert f"({peer})" in row[column], label


def test_security_md_auth_timings_are_in_their_result_file() -> None:
    """security.md's µs figures sit in the paragraph naming benchmarks/results/auth_cost.json, and are in it."""
    text = (ROOT / "docs" / "security.md").read_text()
    paragraph = next(p for p in text.split("\n\n") if "benchmarks/results/auth_cost.json" in p)
    shown = re.findall(r"(\d+(?:\.\d+)?) µs", paragraph)
    assert shown, paragraph
    pool = pool_of(("benchmarks/results/auth_cost.json",))
    decimals = [len(t.split(".")[1]) if "." in t else 0 for t in shown]
    unmatched = [t for t, d in zip(shown, decimals, strict=True) if not matches(Figure(t, float(t), d, "µs"), pool)]
    assert not unmatched, unmatched
    # No other paragraph of security.md quotes a timing in µs (it would have no result file).
    elsewhere = text.replace(paragraph, "")
    assert not re.search(r"\d µs", elsewhere), re.findall(r"[^\n]*\d µs[^\n]*", elsewhere)
