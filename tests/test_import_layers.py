"""Imports between crane_lens's top packages run one way: cli → study → pipeline → report →
plots → the rest (data, model, stats, selection, intervention, evaluation, explore, runs, utils,
errors).

Read from the source with :mod:`ast`, so an import inside a function (a lazy import) counts as
much as one at the top of a module: both make a cycle. Imports under ``if TYPE_CHECKING:`` make
no cycle at run time and are left to :func:`test_type_only_imports_point_down_too`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "crane_lens"
# Top to bottom; a package may import the ones below it. Every other top package (and the
# root's modules, such as crane_lens.errors) is in the bottom layer, below all of these.
ORDER = ("cli", "study", "pipeline", "report", "plots")
BOTTOM = len(ORDER)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. crane_lens.report.html
    line: int
    target: str  # what it imports, e.g. crane_lens.pipeline.RunResult
    type_only: bool  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules (or module attributes) an import names, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".")
        package = package if is_package else package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # ``from crane_lens.report import html`` imports a module; ``... import write_report`` a
    # name: either way the import runs base, and base.name covers the sub-module case.
    return [f"{base}.{alias.name}" for alias in node.names]


def _walk(
    node: ast.AST, module: str, is_package: bool, type_only: bool = False
) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk_stmt(stmt, module, is_package, True)
            for stmt in child.orelse:
                yield from _walk_stmt(stmt, module, is_package, type_only)
            continue
        yield from _walk_stmt(child, module, is_package, type_only)


def _walk_stmt(node: ast.AST, module: str, is_package: bool, type_only: bool) -> Iterator[Import]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        for target in _targets(node, module, is_package):
            yield Import(module, node.lineno, target, type_only)
    yield from _walk(node, module, is_package, type_only)


def imports(root: Path = PACKAGE) -> Iterator[Import]:
    """Every import statement of every module under ``root``, in functions too."""
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        yield from _walk(tree, _module_name(path, root), path.name == "__init__.py")


def _lazy_names() -> dict[str, str]:
    """``crane_lens.<name>`` → the module that defines it, for the root's lazy names
    (``from crane_lens import RunResult`` imports crane_lens.pipeline)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
        ):
            return {f"crane_lens.{k}": v for k, v in ast.literal_eval(node.value).items()}
    return {}


LAZY = _lazy_names()


def layer(name: str) -> int | None:
    """The layer of a crane_lens module or name (0 = cli, the top); ``None`` outside crane_lens
    and for the root package itself, which only re-exports lazily."""
    name = LAZY.get(name, name)
    parts = name.split(".")
    if parts[0] != "crane_lens" or len(parts) == 1:
        return None
    return ORDER.index(parts[1]) if parts[1] in ORDER else BOTTOM


def upward(found: Iterator[Import], type_only: bool) -> list[str]:
    """The imports of ``found`` that point to a higher layer than their module's."""
    bad = []
    for imp in found:
        if imp.type_only != type_only:
            continue
        mine, theirs = layer(imp.module), layer(imp.target)
        if mine is not None and theirs is not None and theirs < mine:
            bad.append(str(imp))
    return bad


def _explain(bad: list[str]) -> str:
    return (
        "imports must run "
        + " → ".join(ORDER)
        + " → the rest; these point upward:\n  "
        + "\n  ".join(bad)
        + "\nmove what the lower module needs down (e.g. into crane_lens.runs), do not import up."
    )


def test_imports_run_one_way() -> None:
    bad = upward(imports(), type_only=False)
    assert not bad, _explain(bad)


def test_type_only_imports_point_down_too() -> None:
    """An annotation naming a higher layer's type is a sign the type lives too high."""
    bad = upward(imports(), type_only=True)
    assert not bad, _explain(bad)


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("from crane_lens.pipeline import RunResult\n", "report/html.py", ["line 1"]),
        ("def f():\n    import crane_lens.report.html\n", "plots/run.py", ["line 2"]),
        ("from ..pipeline import run\n", "report/html.py", ["crane_lens.pipeline.run"]),
        ("from crane_lens import RunResult\n", "plots/run.py", ["crane_lens.RunResult"]),
        ("from crane_lens import report\n", "evaluation/x.py", ["crane_lens.report"]),
        ("from crane_lens.report import write_report\n", "pipeline/run.py", []),
        ("from crane_lens.runs import RunResult\n", "plots/run.py", []),
        ("from crane_lens import __version__\n", "report/html.py", []),
    ],
)
def test_the_check_finds_upward_imports(
    tmp_path: Path, source: str, where: str, expected: list[str]
) -> None:
    path = tmp_path / "crane_lens" / where
    path.parent.mkdir(parents=True)
    path.write_text(source)
    bad = upward(imports(tmp_path / "crane_lens"), type_only=False)
    assert len(bad) == len(expected) and all(e in b for e, b in zip(expected, bad, strict=True))


def test_type_checking_blocks_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "crane_lens" / "plots" / "run.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from crane_lens.pipeline import RunResult\n"
        "else:\n    from crane_lens.report import html\n"
    )
    found = list(imports(tmp_path / "crane_lens"))
    assert upward(iter(found), type_only=False) == [
        "crane_lens.plots.run (line 5) imports crane_lens.report.html"
    ]
    assert upward(iter(found), type_only=True) == [
        "crane_lens.plots.run (line 3) imports crane_lens.pipeline.RunResult"
    ]
