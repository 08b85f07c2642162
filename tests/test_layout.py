"""The layout docs/architecture.md describes, held against the code: the layers import downwards
only, no module imports another that imports it back, and modules and functions stay small
enough to read (tests aside)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: the code (tests, fakes and their child scripts aside)
CODE = ("main.py", "app.py", "service", "bots", "vqa_engine", "config", "deploy", "benchmarks")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the code."""
    for entry in CODE:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            relative = file.relative_to(ROOT).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            yield ".".join(parts), file


def imported(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """The modules a module imports anywhere in it, except under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for nested in ast.iter_child_nodes(node):
            visit(nested)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the code it imports."""
    files = dict(modules())
    graph = {}
    for name, path in files.items():
        targets = imported(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    cycles = []
    state: dict[str, str] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    # a package's __init__ re-exporting its own modules is not a cycle of the code's parts
    cycles = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert cycles == []


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("vqa_engine", "bots"),
        ("vqa_engine", "service"),
        ("vqa_engine", "config"),
        ("vqa_engine", "deploy"),
        ("bots", "service"),
        ("bots", "deploy"),
        ("config", "service"),
        ("vqa_engine.serving", "vqa_engine.tools"),
        ("vqa_engine.backends", "vqa_engine.tools"),
        ("vqa_engine.loading", "vqa_engine.tools"),
        ("vqa_engine.checks", "vqa_engine.tools"),
        ("vqa_engine.modular", "vqa_engine.tools"),
    ],
)
def test_a_layer_imports_only_the_layers_below_it(lower: str, upper: str) -> None:
    """``lower`` never imports ``upper``: the model side knows nothing of chat, chat nothing of
    the wiring, and serving nothing of training."""
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module == lower or module.startswith(lower + ".")
        for target in targets
        if target == upper or target.startswith(upper + ".")
    )
    assert wrong == []


def test_modules_and_functions_stay_small() -> None:
    long_modules, long_functions = [], []
    for name, path in modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert long_modules == []
    assert long_functions == []


def test_vqa_engine_keeps_its_top_level_small() -> None:
    """Its parts live in sub-packages that say what they are; the top holds what all of them share."""
    top = sorted(p.name for p in (ROOT / "vqa_engine").glob("*.py"))
    assert len(top) <= 10, top
    packages = sorted(p.name for p in (ROOT / "vqa_engine").iterdir() if (p / "__init__.py").is_file())
    assert packages == ["backends", "checks", "loading", "modular", "serving", "tools"]
