"""One version string: edgeinfer.version owns it; code imports it and the docs quote it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from edgeinfer.functions.dataplane import SERVER_VERSION as FUNCTION_VERSION
from edgeinfer.gateway.servicer import SERVER_VERSION as GATEWAY_VERSION
from edgeinfer.knative.manifest import DEFAULT_IMAGE
from edgeinfer.version import __version__

ROOT = Path(__file__).resolve().parents[2]
# Places where prose and generated files write the version (image tags, `edgeinfer deploy` headers, labels).
QUOTED = re.compile(
    r"edgeinfer/(?:function|gateway):(\S+?)(?=[\s.]*$|\s)|\(edgeinfer ([^)]+)\)|app\.kubernetes\.io/version: (\S+)",
    re.MULTILINE,
)


def test_code_uses_the_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", __version__)
    assert FUNCTION_VERSION == GATEWAY_VERSION == __version__
    assert f"edgeinfer/function:{__version__}" == DEFAULT_IMAGE
    # The installed distribution's metadata comes from the same attribute (pyproject's dynamic version).
    assert importlib.metadata.version("edgeinfer") == __version__


def test_docs_and_deploy_files_quote_the_current_version() -> None:
    files = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("deploy/*.Dockerfile"),
        *ROOT.glob("deploy/**/*.yaml"),
    ]
    seen: list[tuple[str, str]] = []
    for path in files:
        for match in QUOTED.finditer(path.read_text()):
            quoted = next(group for group in match.groups() if group)
            seen.append((path.relative_to(ROOT).as_posix(), quoted))
    assert len(seen) >= 10, seen  # the pattern still finds the quotes
    assert [(path, v) for path, v in seen if v != __version__] == []
