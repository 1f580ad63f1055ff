"""Every code block of README.md and docs/ runs, so a renamed function or argument breaks the build.

- ```python blocks run in a namespace of tests/doc_context.py that stands for the reader's own model, data and
  trainer; the comment ``<!-- snippet: NAME -->`` before a block picks it (``classifier`` when none), and
  ``<!-- snippet: torchrun NAME -->`` runs the block as a script under torchrun, two CPU processes on gloo.
- A block or a code span written as a signature, ``name(a, b=1, *, c=None)``, must match the function's real
  signature: names, order, kinds and defaults (a trailing ``...`` leaves the rest out). The name is looked up in
  curvlab's public modules, or given by ``<!-- signature: dotted.path -->`` on the line before.
- ```toml blocks are validated as run configs; ``curvlab ...`` command lines in ```bash blocks are parsed by the
  CLI's own parser.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from doc_context import CONTEXTS
from ranks import run_torchrun
from test_api_reference import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SEARCHED = [*PUBLIC_MODULES, "curvlab.distributed", "curvlab.fsdp"]  # where a name written in the docs is looked up
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*(snippet|signature):\s*([^>]*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    marker: tuple[str, str] | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _marker_before(text: str, start: int) -> tuple[str, str] | None:
    before = text[:start].rstrip("\n").rsplit("\n", 1)[-1]
    found = MARKER.search(before)
    return (found.group(1), found.group(2)) if found else None


def blocks(language: str) -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text[: match.start(2)].count("\n") + 1
                found.append(Block(page, line, language, match.group(2), _marker_before(text, match.start())))
    return found


SPAN = re.compile(r"`((?:curvlab\.)?[A-Za-z_][\w.]*)\(([^`]*)\)`")


def _parse_signature(text: str) -> tuple[str, list[inspect.Parameter], bool] | None:
    """``name(params)`` → (name, parameters, partial), or None when it is not written as a signature."""
    match = re.fullmatch(r"\s*((?:curvlab\.)?[A-Za-z_][\w.]*)\((.*)\)\s*", text, re.S)
    if not match:
        return None
    params, partial = match.group(2).strip(), False
    if params.endswith("..."):
        params, partial = params[:-3].rstrip().rstrip(","), True
    try:
        tree = ast.parse(f"def f({params}): pass")
        for default in tree.body[0].args.defaults + tree.body[0].args.kw_defaults:
            if default is not None:
                ast.literal_eval(default)
    except (SyntaxError, ValueError):
        return None  # not a parameter list, or a default that is an expression (a usage, not a signature)
    args = tree.body[0].args
    out = []
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in zip(positional, defaults):
        out.append(_param(arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default))
    if args.vararg:
        out.append(_param(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, None))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out.append(_param(arg.arg, inspect.Parameter.KEYWORD_ONLY, default))
    if args.kwarg:
        out.append(_param(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, None))
    return match.group(1), out, partial


def _param(name: str, kind, default) -> inspect.Parameter:
    value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
    return inspect.Parameter(name, kind, default=value)


# ----- Python blocks ---------------------------------------------------------------------------------------------
def _is_signature(code: str) -> bool:
    try:
        ast.parse(code)
        return False
    except SyntaxError:
        return _parse_signature(code) is not None


PYTHON = [b for b in blocks("python") if not _is_signature(b.code)]
TORCHRUN = [b for b in PYTHON if b.marker and b.marker[1].startswith("torchrun")]
IN_PROCESS = [b for b in PYTHON if b not in TORCHRUN]


@pytest.mark.parametrize("block", IN_PROCESS, ids=lambda b: b.id)
def test_python_snippet_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    context = block.marker[1] if block.marker else "classifier"
    namespace = CONTEXTS[context]()
    exec(compile(block.code, block.id, "exec"), namespace)


@pytest.mark.parametrize("block", TORCHRUN, ids=lambda b: b.id)
def test_distributed_snippet_runs_under_torchrun(block, tmp_path):
    context = block.marker[1].split()[1]
    script = tmp_path / "snippet.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"from doc_context import CONTEXTS\nglobals().update(CONTEXTS[{context!r}]())\n"
        f"exec(compile({block.code!r}, {block.id!r}, 'exec'))\n"
    )
    done = run_torchrun([str(script)], world=2, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]


def test_every_python_block_is_collected():
    """A block the fence pattern missed would pass unseen: count them the simple way."""
    fences = sum(page.read_text().count("```python\n") for page in PAGES)
    assert len(blocks("python")) == fences > 0


# ----- signatures ------------------------------------------------------------------------------------------------
def _lookup(name: str):
    name = name.removeprefix("curvlab.")
    for module_name in SEARCHED:
        obj = importlib.import_module(module_name)
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    return None


def _resolve(path: str):
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _is_declaration(line: str, span: str, marked: bool) -> bool:
    """A span is a declaration of the signature when it is a heading, stands alone on its line, or is marked;
    anywhere else in prose it is a usage (``sharpness(obj, k)``), which need only bind."""
    stripped = line.strip()
    return marked or stripped.startswith("#") or stripped == span


def signatures() -> list[tuple[str, str, object, bool]]:
    """(where, written, the object it documents, declared) for every signature or usage written in the pages."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            marker = MARKER.search(lines[i - 1]) if i else None
            marked = bool(marker and marker.group(1) == "signature")
            for span in SPAN.finditer(line):
                written = f"{span.group(1)}({span.group(2)})"
                declared = _is_declaration(line, span.group(0), marked)
                if declared and _parse_signature(written) is None:
                    continue
                if not declared and _parse_usage(written) is None:
                    continue
                target = _resolve(marker.group(2)) if marked else _lookup(span.group(1))
                if target is not None and callable(target):
                    found.append((f"{page.relative_to(ROOT)}:{i + 1}", written, target, declared))
    for block in blocks("python"):
        if _is_signature(block.code):
            parsed = _parse_signature(block.code)
            target = _resolve(block.marker[1]) if block.marker else _lookup(parsed[0])
            assert target is not None, f"{block.id}: a signature block naming nothing curvlab exports"
            found.append((block.id, block.code, target, True))
    return found


def _parse_usage(written: str) -> tuple[int, list[str]] | None:
    """``f(a, b, c=1)`` → (2, ["c"]): how many positional arguments and which keywords a usage passes."""
    try:
        call = ast.parse(written, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call) or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    if any(k.arg is None for k in call.keywords):
        return None
    return len(call.args), [k.arg for k in call.keywords]


def _call_signature(target) -> inspect.Signature:
    signature = inspect.signature(target)
    return signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "self"])


@pytest.mark.parametrize("where,written,target,declared", signatures(), ids=lambda v: v if isinstance(v, str) else "")
def test_written_signature_matches_the_code(where, written, target, declared):
    real = _call_signature(target)
    if not declared:
        n_positional, keywords = _parse_usage(written)
        try:
            real.bind_partial(*range(n_positional), **dict.fromkeys(keywords))
        except TypeError as err:
            pytest.fail(f"{where}: {written} does not fit {target.__qualname__}{real}: {err}")
        return
    _, params, partial = _parse_signature(written)
    described = [(p.name, p.kind, p.default) for p in real.parameters.values()]
    wanted = [(p.name, p.kind, p.default) for p in params]
    if partial:
        assert described[: len(wanted)] == wanted, f"{where}: {written}\n  the code says: {real}"
    else:
        assert described == wanted, f"{where}: {written}\n  the code says: {real}"


def test_signatures_are_found():
    declared = {w.split(":")[0] for w, _, _, d in signatures() if d}
    assert {"docs/core.md", "docs/integrations.md"} <= declared
    assert len([s for s in signatures() if not s[3]]) > 20


# ----- configs and commands --------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", blocks("toml"), ids=lambda b: b.id)
def test_toml_snippet_is_a_valid_config(block):
    from curvlab.experiments import validate

    validate(tomllib.loads(block.code))


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for block in blocks("bash"):
        for offset, line in enumerate(block.code.splitlines()):
            words = shlex.split(line, comments=True)
            if words[:1] == ["curvlab"]:
                found.append((f"{block.id}+{offset}", words[1:]))
    return found


@pytest.mark.parametrize("where,argv", _commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_command_line_parses(where, argv):
    from curvlab.cli import build_parser

    args = build_parser().parse_args(argv)
    for value in vars(args).values():
        if isinstance(value, str) and value.startswith("examples/"):
            assert (ROOT / value).exists(), f"{where}: {value} does not exist"


# ----- pages that describe the code ------------------------------------------------------------------------------
def test_reading_a_report_explains_every_column_and_figure():
    """docs/reading-a-report.md names each key-numbers column the report can write and each figure file."""
    from curvlab.experiments import report

    page = (ROOT / "docs" / "reading-a-report.md").read_text()
    source = inspect.getsource(report.key_numbers)
    columns = set(re.findall(r'row\["([^"]+)"\]', source)) | set(re.findall(r'"(\w+)": status', source))
    assert len(columns) >= 10
    missing = [c for c in columns if f"| `{c}` |" not in page]
    figures = [f"`{name}.png`" for name, _, _ in report.FIGURE_KINDS] + ["`edge_of_stability.png`"]
    missing += [f for f in figures if f not in page]
    assert not missing, f"docs/reading-a-report.md does not explain: {missing}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
