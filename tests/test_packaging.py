"""What a wheel of curvlab holds: every data file under src/curvlab (configs, claims files, the typing marker) is
declared in pyproject.toml's package-data, so that a file the code reads cannot be left out of an install that is
not editable (the tests run on an editable install, which would not notice)."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "curvlab"


def test_every_data_file_of_the_package_is_declared_for_the_wheel():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["curvlab"]
    data = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert "py.typed" in data  # the package says it is typed (PEP 561)
    undeclared = [f for f in data if not any(fnmatch.fnmatch(f, pattern) for pattern in declared)]
    assert not undeclared, f"pyproject.toml's package-data leaves these out of the wheel: {undeclared}"


def test_the_version_has_one_source():
    """pyproject.toml reads the version from curvlab.__version__, and the installed metadata says the same."""
    from importlib.metadata import version

    import curvlab

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "curvlab.__version__"}
    assert version("curvlab") == curvlab.__version__


def test_the_changelog_has_this_version():
    """CHANGELOG.md (Keep a Changelog) opens with an [Unreleased] section, then this version's, dated."""
    import re

    import curvlab

    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == ("Unreleased", "")
    assert headings[1][0] == curvlab.__version__ and headings[1][1], "the newest version in CHANGELOG.md, with its date"
