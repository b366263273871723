"""Each upstream case a test module here leaves out is listed, with its module's reason, in docs/knative.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DOCS = (HERE.parents[2] / "docs" / "knative.md").read_text()
MODULES = sorted(p for p in HERE.glob("test_*.py") if p.name != Path(__file__).name and "LEFT_OUT" in p.read_text())


def left_out(path: Path) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location(f"left_out_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: dict[str, str] = module.LEFT_OUT
    return found


def test_every_table_module_keeps_a_left_out_list() -> None:
    tables = [p for p in HERE.glob("test_*_validation.py")] + [p for p in HERE.glob("test_*_defaults.py")]
    assert tables and all(p in MODULES for p in tables)


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_left_out_cases_are_in_the_docs(path: Path) -> None:
    for case, reason in left_out(path).items():
        assert reason.strip(), case
        assert f"`{case}`" in DOCS, f"{path.name}: {case} is left out but docs/knative.md does not list it"
