"""Fixtures of the rollout's unit tests; the fakes themselves are in rollout_fakes.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The tests import the fakes by name (pytest runs with --import-mode=importlib, which adds no test folder to the path).
sys.path.insert(0, str(Path(__file__).parent))

from rollout_fakes import CLIENT, ERRORS, GOOD, SLOW, WRONG, Behaviour, FakeClock, FakeGateway


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gateway(clock: FakeClock) -> FakeGateway:
    return FakeGateway(clock)


@pytest.fixture
def make_gateway(clock: FakeClock) -> Callable[..., FakeGateway]:
    def make(**kwargs: Any) -> FakeGateway:
        return FakeGateway(clock, **kwargs)

    return make


@pytest.fixture
def behaviours() -> dict[str, Behaviour]:
    return {"good": GOOD, "slow": SLOW, "errors": ERRORS, "wrong": WRONG, "client": CLIENT}
