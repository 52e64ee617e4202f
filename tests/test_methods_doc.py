"""docs/methods.md, the method spec, against the code: its defaults table states the defaults the
code has, it names every method, statistic, rule, mode and LRP rule the code offers, and nothing
in the project points at a spec outside the repository."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "methods.md"
# The defaults that must stay in the table (deleting a row must fail, not shrink the check).
REQUIRED = {
    "crane_lens.stats.engine:compute_stats(target)",
    "crane_lens.stats.engine:compute_stats(attention)",
    "crane_lens.stats.engine:compute_stats(objective)",
    "crane_lens.stats.lape:TOP_RATE",
    "crane_lens.stats.lape:ACTIVATION_BAR_RATIO",
    "crane_lens.selection.select:DEFAULT_BUDGET",
    "crane_lens.selection.select:DEFAULT_RULE",
    "crane_lens.selection.select:DEFAULT_STATISTIC",
    "crane_lens.selection.select:select_language_neurons(top_rate)",
    "crane_lens.stats.kojima:KOJIMA_MAX_BLOCKS",
    "crane_lens.evaluation.ablation:ablation_matrix(random_seeds)",
    "crane_lens.intervention.hooks:intervention(mode)",
    "crane_lens.pipeline:RunConfig.budget",
    "crane_lens.pipeline:RunConfig.lape_top_rate",
    "crane_lens.pipeline:RunConfig.langs",
}
_WHERE = re.compile(r"^(?P<module>[\w.]+):(?P<name>\w+)(?:\((?P<param>\w+)\)|\.(?P<field>\w+))?$")


def _text() -> str:
    return SPEC.read_text(encoding="utf-8")


def stated_defaults(text: str) -> dict[str, str]:
    """``where -> default`` (both without backticks) from the table between the markers."""
    match = re.search(r"<!-- defaults -->\n(.*?)<!-- /defaults -->", text, re.S)
    assert match, "docs/methods.md has no <!-- defaults --> table"
    rows = {}
    for line in match.group(1).strip().splitlines()[2:]:  # after the header and --- rows
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3 and all(cells), f"malformed row: {line!r}"
        where, default = (cell.strip("`") for cell in cells[:2])
        assert where not in rows, f"{where} stated twice"
        rows[where] = default
    return rows


def actual_default(where: str) -> Any:
    """The code's default at ``module:function(param)``, ``module:CONSTANT`` or
    ``module:Class.field``."""
    match = _WHERE.match(where)
    assert match, f"cannot read the location {where!r}"
    obj = getattr(importlib.import_module(match["module"]), match["name"])
    if match["param"]:
        parameters = inspect.signature(obj).parameters
        assert match["param"] in parameters, f"{where}: no such parameter"
        default = parameters[match["param"]].default
        assert default is not inspect.Parameter.empty, f"{where}: no default"
        return default
    if match["field"]:
        field = {f.name: f for f in dataclasses.fields(obj)}.get(match["field"])
        assert field is not None, f"{where}: no such field"
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return field.default
    return obj


def test_the_parser_reads_a_table_and_rejects_a_wrong_default() -> None:
    table = (
        "<!-- defaults -->\n| where | default | why |\n| --- | --- | --- |\n"
        "| `crane_lens.stats.lape:TOP_RATE` | `0.5` | a wrong value |\n<!-- /defaults -->"
    )
    rows = stated_defaults(table)
    assert rows == {"crane_lens.stats.lape:TOP_RATE": "0.5"}
    assert ast.literal_eval(rows["crane_lens.stats.lape:TOP_RATE"]) != actual_default(
        "crane_lens.stats.lape:TOP_RATE"
    )


def test_every_stated_default_is_the_codes() -> None:
    rows = stated_defaults(_text())
    missing = REQUIRED - rows.keys()
    assert not missing, f"docs/methods.md no longer states {sorted(missing)}"
    assert len(rows) >= 40
    wrong = {}
    for where, stated in rows.items():
        value = ast.literal_eval(stated)
        actual = actual_default(where)
        if isinstance(actual, tuple | list) and isinstance(value, tuple | list):
            value, actual = list(value), list(actual)
        if value != actual or type(value) is not type(actual):
            wrong[where] = (stated, actual)
    assert not wrong, f"docs/methods.md states defaults the code does not have: {wrong}"


def test_the_spec_names_every_option_the_code_offers() -> None:
    from crane_lens.intervention.hooks import MODES
    from crane_lens.selection.select import RULES
    from crane_lens.stats.engine import Objective, Target
    from crane_lens.stats.lrp import AttentionRule
    from crane_lens.stats.methods import METHODS, STATISTICS

    text = _text()
    options = {
        "method": list(METHODS), "statistic": list(STATISTICS), "rule": list(RULES),
        "mode": list(MODES), "attention": list(typing.get_args(AttentionRule)),
        "target": list(typing.get_args(Target)), "objective": list(typing.get_args(Objective)),
    }  # fmt: skip
    absent = {
        kind: [name for name in names if f"`{name}`" not in text and f'"{name}"' not in text]
        for kind, names in options.items()
    }
    assert not any(absent.values()), f"docs/methods.md does not describe {absent}"
    assert "cp-attention" in options["attention"]  # the older CP variant stays selectable


def test_links_between_pages_are_relative_md_links_that_exist() -> None:
    links = re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", _text())
    assert links, "the spec links the pages it builds on"
    for link in links:
        assert "://" not in link and not link.startswith("/"), link
        assert (SPEC.parent / link).is_file(), f"broken link {link}"


@pytest.mark.parametrize(
    "folder", ["crane_lens", "docs", "tests", "scripts", "benchmarks", "notebooks", "."]
)
def test_nothing_points_at_a_spec_outside_the_repository(folder: str) -> None:
    needle = "shared" + "/"  # spelt apart so this file does not match itself
    base = ROOT / folder
    files = base.glob("*.md") if folder == "." else base.rglob("*")
    hits = [
        str(path.relative_to(ROOT))
        for path in files
        if path.suffix in (".py", ".md") and path.is_file()
        and needle in path.read_text(encoding="utf-8", errors="replace")
    ]  # fmt: skip
    assert not hits, f"{hits} mention {needle!r} (the method spec is docs/methods.md)"
