"""The structure docs/architecture.md describes: packages import only from the layers above them, and the shipped
text cites papers by author and year, never by an internal file or section."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "curvlab"
LAYERS = [
    {"errors", "checks", "registry", "files", "pages", "losses", "plotting", "machine"},
    {"linalg"},
    {"core"},
    {"distributed", "fsdp"},
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


def _root_exports() -> dict[str, str]:
    """The names curvlab/__init__.py re-exports, each with the package it comes from."""
    out = {}
    for node in ast.walk(ast.parse((SRC / "__init__.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("curvlab"):
            for alias in node.names:
                package = node.module.split(".")[1] if "." in node.module else alias.name
                out[alias.asname or alias.name] = package
    return out


EXPORTS = _root_exports()
LEVEL["curvlab"] = max(LEVEL[p] for p in EXPORTS.values() if p in LEVEL)  # `import curvlab`: all of it


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an import-from names, relative imports (``from ..core import x``) resolved against ``path``."""
    if not node.level:
        return node.module or ""
    package = list(path.relative_to(SRC.parent).parent.parts)
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported_packages(path: Path, source: str | None = None) -> set[str]:
    """Every curvlab package a file imports, whatever the form: ``import curvlab.x``, ``from curvlab.x import y``,
    ``from curvlab import y`` (y a package, or a name re-exported from one), ``import curvlab`` (the whole package)
    and relative imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, path)
            if module == "curvlab":
                found |= {EXPORTS.get(alias.name, alias.name) for alias in node.names}
            elif module.startswith("curvlab."):
                found.add(module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "curvlab":
                    found.add("curvlab")
                elif alias.name.startswith("curvlab."):
                    found.add(alias.name.split(".")[1])
    return found


def test_the_layering_check_sees_every_import_form():
    path = SRC / "core" / "objective.py"
    forms = {
        "import curvlab.monitor.metrics": {"monitor"},
        "from curvlab.monitor import Monitor": {"monitor"},
        "from curvlab import Monitor": {"monitor"},
        "from curvlab import geometry": {"geometry"},
        "import curvlab": {"curvlab"},
        "from ..monitor import Monitor": {"monitor"},
        "from .. import experiments": {"experiments"},
        "from . import hvp": {"core"},
    }
    for source, packages in forms.items():
        assert _imported_packages(path, source) == packages, source
        assert all(LEVEL[p] > LEVEL["core"] for p in packages - {"core"})


def test_every_package_is_in_a_layer():
    packages = {_package(p) for p in SRC.rglob("*.py")} - {"__init__", "__main__"}
    assert packages <= set(LEVEL), f"add {packages - set(LEVEL)} to LAYERS and docs/architecture.md"


def test_no_package_imports_from_a_layer_below_it():
    upward = []
    for path in SRC.rglob("*.py"):
        me = _package(path)
        if me in ("__init__", "__main__"):
            continue
        for other in _imported_packages(path) - {me, "__init__"}:
            if LEVEL[other] > LEVEL[me]:
                upward.append(f"{path.relative_to(ROOT)} imports curvlab.{other}")
    assert not upward, upward


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The curvlab modules ``path`` imports at module level (``from a import b`` counts as a.b when that is a
    module, else as a)."""
    found = set()
    for node in _outside_functions(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("curvlab"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("curvlab")}
    return found & modules


def _outside_functions(tree: ast.AST) -> list[ast.AST]:
    """Every node not inside a function body (``if TYPE_CHECKING:`` imports included)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def test_no_import_cycles_between_modules():
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    modules = set(paths)
    graph = {m: _module_imports(p, modules) - {m} for m, p in paths.items()}
    # a package's __init__ re-exports its modules: an edge into a package means "into its modules", not a cycle
    # through the package's own __init__, so a module importing a sibling through the package is still caught
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                cycles.append(trail[trail.index(n) :] + [n])
            elif n not in state:
                visit(n, trail + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_function_local_curvlab_imports():
    """Imports of curvlab modules sit at the top of a module, where a cycle would show (none hides in a function)."""
    hidden = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    module = getattr(inner, "module", None) or ""
                    names = [a.name for a in getattr(inner, "names", [])] if isinstance(inner, ast.Import) else []
                    if module.startswith("curvlab") or any(n.startswith("curvlab") for n in names):
                        hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not hidden, hidden


def test_every_registry_is_one_registry_type():
    from curvlab.data import DATASETS
    from curvlab.models import BUILDERS
    from curvlab.monitor import METRICS
    from curvlab.optim import OPTIMIZERS
    from curvlab.registry import Registry
    from curvlab.reproductions import REGISTRY
    from curvlab.tuners import TUNERS

    for registry in (DATASETS, BUILDERS, METRICS, OPTIMIZERS, REGISTRY, TUNERS):
        assert isinstance(registry, Registry) and len(registry) > 0
        assert all(registry.description(name) for name in registry), registry.kind


def test_an_unknown_name_is_an_input_error_listing_the_choices():
    import pytest

    from curvlab.errors import InputError
    from curvlab.optim import OPTIMIZERS

    with pytest.raises(InputError, match=r"optimizer: unknown optimizer 'adamm'; expected one of .*'adam'"):
        OPTIMIZERS["adamm"]
    with pytest.raises(KeyError):  # still a KeyError for code that expects a mapping's error
        OPTIMIZERS["adamm"]


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
