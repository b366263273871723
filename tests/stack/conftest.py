from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def fraud_repo(model_repo: Path, tmp_path: Path) -> Path:
    """Only `fraud`: one function per region keeps the start light on two cores."""
    repo = tmp_path / "models"
    shutil.copytree(model_repo / "fraud", repo / "fraud")
    return repo
