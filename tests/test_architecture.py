"""The structure docs/architecture.md describes: packages import only from the layers above them, and the shipped
text cites papers by author and year, never by an internal file or section."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "curvlab"
LAYERS = [
    {"errors", "losses", "plotting"},
    {"linalg"},
    {"core"},
    {"distributed"},
    {"optim"},
    {"tuners"},
    {"geometry"},
    {"monitor"},
    {"data", "models"},
    {"experiments"},
    {"integrations"},
    {"reproductions"},
    {"demo", "cli"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("curvlab."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("curvlab.")}
    return found


def test_every_package_is_in_a_layer():
    packages = {_package(p) for p in SRC.rglob("*.py")} - {"__init__", "__main__"}
    assert packages <= set(LEVEL), f"add {packages - set(LEVEL)} to LAYERS and docs/architecture.md"


def test_no_package_imports_from_a_layer_below_it():
    upward = []
    for path in SRC.rglob("*.py"):
        me = _package(path)
        if me in ("__init__", "__main__"):
            continue
        for other in _imported_packages(path) - {me}:
            if LEVEL[other] > LEVEL[me]:
                upward.append(f"{path.relative_to(ROOT)} imports curvlab.{other}")
    assert not upward, upward


def test_shipped_text_cites_papers_not_internal_files():
    shipped = [*SRC.rglob("*.py"), *SRC.rglob("*.toml"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]
    shipped += [*(ROOT / "examples").glob("*")]
    pattern = re.compile(r"SPEC\b|seed[ -]00\d")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in shipped
        if path.is_file()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
