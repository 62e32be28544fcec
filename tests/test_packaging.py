"""pyproject.toml: test and lint tools in the `dev` extra (not runtime dependencies), package-data
naming only files that exist, and the Makefile installing the extra so `make test` works."""

import glob
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(reqs: list[str]) -> set[str]:
    import re

    return {re.split(r"[=<>\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_test_tools_are_a_dev_extra():
    runtime = _names(PROJECT["project"]["dependencies"])
    dev = _names(PROJECT["project"]["optional-dependencies"]["dev"])
    assert {"pytest", "pytest-benchmark", "ruff", "zizmor"} <= dev
    assert not {"pytest", "pytest-benchmark", "ruff", "zizmor"} & runtime
    assert "junitparser" in runtime  # hemoedge gate --junit uses it at run time


def test_the_package_does_not_import_test_tools():
    for path in (ROOT / "hemoedge").rglob("*.py"):
        text = path.read_text()
        for tool in ("import pytest", "pytest_benchmark", "import ruff"):
            assert tool not in text, f"{path} uses {tool}"


def test_package_data_names_files_that_exist():
    for package, patterns in PROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert glob.glob(str(ROOT / package / pattern)), f"{package}/{pattern} matches nothing"


def test_makefile_installs_the_dev_extra():
    assert "-e '.[dev]'" in (ROOT / "Makefile").read_text()
