"""Generated blocks inside hand-written Markdown (data and model cards).

A block is delimited by ``<!-- NAME: free comment -->`` and ``<!-- /NAME -->``; scripts rewrite
what lies between, tests compare it with what the script would write.
"""

from __future__ import annotations

import re
from pathlib import Path

from crane_lens.utils.io import write_text


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- {re.escape(name)}:[^>]*-->\n)(.*?)(<!-- /{re.escape(name)} -->)", re.S
    )


def read_marked_block(path: Path, name: str) -> str:
    """The content of block ``name`` in ``path`` (empty string when absent)."""
    match = _pattern(name).search(path.read_text(encoding="utf-8"))
    return match.group(2) if match else ""


def update_marked_block(path: Path, name: str, content: str) -> None:
    """Replace the content of block ``name`` in ``path``, atomically.

    Raises:
        ValueError: ``path`` has no such block.
    """
    text = path.read_text(encoding="utf-8")
    pattern = _pattern(name)
    if not pattern.search(text):
        raise ValueError(f"{path} has no <!-- {name}: ... --> block")
    new = pattern.sub(lambda m: m.group(1) + content + m.group(3), text)
    write_text(path, new)
