"""`edgeinfer up --workers N`: each region's gateway is started as a group of N workers (tests/gateway/test_workers.py
runs such groups for real: serving, restarts, drain); the flag's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from edgeinfer.cli import build_parser
from edgeinfer.regions.topology import default_topology
from edgeinfer.stack.local import LocalStack


def gateway_argv(tmp_path: Path, workers: int) -> list[str]:
    stack = LocalStack(
        default_topology(), None, 8001, tmp_path / "models", tmp_path / "state", 5.0, Console(), workers=workers
    )
    child = stack._gateway_child(stack.regions[0])
    return [str(a) for a in child._argv()] if child._argv is not None else []


@pytest.mark.parametrize(("workers", "flag"), [(1, None), (2, "2"), (0, "auto")])
def test_the_gateway_child_gets_the_workers(tmp_path: Path, workers: int, flag: str | None) -> None:
    argv = gateway_argv(tmp_path, workers)
    if flag is None:
        assert "--workers" not in argv  # one worker: today's single process
    else:
        assert argv[argv.index("--workers") + 1] == flag


def test_up_parses_and_refuses_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser("up").parse_args(["up"]).workers == 1
    assert build_parser("up").parse_args(["up", "--workers", "auto"]).workers == 0
    with pytest.raises(SystemExit):
        build_parser("up").parse_args(["up", "--workers", "lots"])
    assert "argument --workers: 'lots' is not a number of gateway processes" in capsys.readouterr().err
