"""Griffe extension for the API reference (mkdocs.yml loads it): docstring idioms as Markdown.

crane_lens' docstrings are Google style with two habits griffe's Google parser does not read:
``Example:`` (griffe knows only ``Examples:``; otherwise doctest lines render as prose and their
``x[0][1]`` as broken links), Sphinx roles (``:func:`explain```), which would show verbatim, and
arguments documented together (``mode, values, factor: ...``), which it takes for one unknown
parameter. Roles become optional cross-references: a link where the target is documented,
plain code otherwise (never a warning); grouped arguments get one entry each, with the shared
description; an RST literal-block marker ``text::`` becomes ``text:``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`(~?)([^`<>]+)`")
LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
GROUPED = re.compile(r"^(\s+)(\w+(?:,\s*\w+)+):\s+(.*)$")


def target(obj: griffe.Object, name: str) -> str:
    """The full path ``name`` refers to in ``obj``'s scope, or ``name`` if it does not resolve."""
    head, _, rest = name.partition(".")
    try:
        path = obj.resolve(head)
    except (griffe.NameResolutionError, KeyError, ValueError):
        return name
    return f"{path}.{rest}" if rest else path


def split_grouped(text: str) -> str:
    """``a, b: text`` inside an ``Args:`` section as ``a: text`` and ``b: text``."""
    lines, section = [], None  # indentation of the current Args header
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip())
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            section = indent
        elif line.strip() and section is not None and indent <= section:
            section = None
        grouped = GROUPED.match(line) if section is not None else None
        if grouped:
            names = [n.strip() for n in grouped[2].split(",")]
            lines += [f"{grouped[1]}{name}: {grouped[3]}" for name in names]
        else:
            lines.append(line)
    return "\n".join(lines)


def markdown(obj: griffe.Object, text: str) -> str:
    """``text`` with the idioms above rewritten."""

    def role(match: re.Match[str]) -> str:
        name = match[2].strip().removesuffix("()")
        shown = name.rsplit(".", 1)[-1] if match[1] else name
        identifier = html.escape(target(obj, name), quote=True)
        return f'<autoref identifier="{identifier}" optional><code>{html.escape(shown)}</code></autoref>'

    text = split_grouped(EXAMPLE.sub(r"\1Examples:", text))
    text = LITERAL.sub(r"\1:", text)
    return ROLE.sub(role, text)


class CraneDocstrings(griffe.Extension):
    """Rewrite every docstring once the object tree is complete (names resolve then)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj, obj.docstring.value)
