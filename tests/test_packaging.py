"""The packaging stays coherent: environment.yml mirrors pyproject.toml, the layout exists, Python >= 3.12."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", req)
    name = m.group(1).lower().replace("_", "-")
    return name + (m.group(2) or ""), m.group(3).replace(" ", "")


def _requirements(py: dict) -> list[str]:
    """Every requirement of pyproject: the dependencies and each extra's, without an extra's reference to others."""
    extras = [r for reqs in py["optional-dependencies"].values() for r in reqs]
    return py["dependencies"] + [r for r in extras if not r.startswith(py["name"] + "[")]


def test_environment_yml_matches_pyproject():
    """environment.yml (the researchers' conda environment) holds the dependencies and every extra."""
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in _requirements(py)}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.12" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    have = {_norm(r) for r in pip if not r.startswith("-e")}
    assert have == wanted, f"only in environment.yml: {have - wanted}; only in pyproject.toml: {wanted - have}"


def test_every_dependency_has_a_lower_bound():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in _requirements(py):
        assert ">=" in req, f"{req} has no lower bound"
    assert py["requires-python"] == ">=3.12"


def test_required_layout():
    for d in ("dashboard", "feeds", "compute", "assets", "notebooks", "tests"):
        assert (ROOT / d).is_dir(), d
    for f in ("environment.yml", "serve.py", "pyproject.toml", "README.md", "Makefile", ".ci/run"):
        assert (ROOT / f).is_file(), f


def test_running_python_is_new_enough():
    assert sys.version_info >= (3, 12)


def test_find_python_finds_one_at_least_312():
    out = subprocess.run(["bash", str(ROOT / ".ci/find-python")], capture_output=True, text=True, check=True)
    exe = out.stdout.strip()
    v = subprocess.run([exe, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True)
    assert v.stdout.strip() == "True"
    assert "using Python" in out.stderr


def test_every_package_is_listed_for_the_wheel():
    """A package directory missing from [tool.setuptools] packages is left out of a built wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    skip = {"tests", "build", "notebooks", "benchmarks"}
    tops = [d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in skip]
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for top in tops for p in top.rglob("__init__.py")}
    assert found == listed
