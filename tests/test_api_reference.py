"""The API reference (docs/api/, built by mkdocstrings in `make docs`) covers every public name, and every public
name and method has a docstring to show: mkdocstrings leaves out what has none, silently."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api"
PUBLIC_MODULES = [
    "curvlab",
    "curvlab.linalg",
    "curvlab.geometry",
    "curvlab.monitor",
    "curvlab.optim",
    "curvlab.tuners",
    "curvlab.experiments",
    "curvlab.errors",
]


def _directives() -> list[tuple[str, list[str] | None]]:
    """Each `::: dotted.path` of the API pages, with its explicit `members:` list if it has one."""
    found = []
    for page in sorted(API.glob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("::: "):
                members, j = None, i + 1
                while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                    if lines[j].strip() == "members:":
                        members = []
                    elif members is not None and lines[j].strip().startswith("- "):
                        members.append(lines[j].strip()[2:])
                    j += 1
                found.append((line[4:].strip(), members))
    return found


def _resolve(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _documented() -> list[tuple[str, object]]:
    """(qualified name, object) of everything the API pages render."""
    shown = []
    for path, members in _directives():
        obj = _resolve(path)
        if inspect.ismodule(obj):
            for name in members if members is not None else obj.__all__:
                shown.append((f"{path}.{name}", getattr(obj, name)))
        else:
            shown.append((path, obj))
    return shown


def _public_names() -> set[int]:
    ids = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.ismodule(obj) and (inspect.isclass(obj) or inspect.isfunction(obj)):
                ids.add((module_name, name, id(obj)))
    return ids


def test_every_public_name_is_in_the_api_reference():
    shown = {id(obj) for _, obj in _documented()}
    missing = sorted(f"{module}.{name}" for module, name, ident in _public_names() if ident not in shown)
    assert not missing, f"public names absent from docs/api/*.md: {missing}"


def test_the_functions_every_example_uses_are_in_the_reference():
    names = {path.rsplit(".", 1)[-1] for path, _ in _documented()}
    assert {"load_records", "Monitor", "write_report", "register_metric", "Objective", "CurvlabCallback"} <= names


def _methods(cls: type) -> list[tuple[str, object]]:
    out = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, property) or inspect.isfunction(value):
            out.append((attr, getattr(cls, attr) if inspect.isfunction(value) else value))
    return out


@pytest.mark.parametrize("name,obj", _documented(), ids=lambda v: v if isinstance(v, str) else "")
def test_public_names_and_their_methods_have_docstrings(name, obj):
    if not (inspect.isclass(obj) or callable(obj)):
        return  # a constant (a registry): documented by its module
    assert inspect.getdoc(obj), f"{name} has no docstring: the API reference would leave it out"
    if inspect.isclass(obj):
        bare = [attr for attr, member in _methods(obj) if not inspect.getdoc(member)]
        assert not bare, f"{name}: public methods without a docstring (inherited ones count): {bare}"


def test_docstring_arguments_name_real_parameters():
    """Google-style 'Args:' entries name parameters the signature has (mkdocs --strict checks the rendered ones)."""
    wrong = []
    for name, obj in _documented():
        doc = inspect.getdoc(obj) or ""
        if "Args:" not in doc or not callable(obj):
            continue
        try:
            params = set(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            continue
        block = doc.split("Args:", 1)[1].split("\n\n", 1)[0]
        for arg in re.findall(r"^    (\*{0,2}\w+)(?: \([^)]*\))?:", block, re.M):
            if arg.lstrip("*") not in params:
                wrong.append(f"{name}: {arg}")
    assert not wrong, wrong
