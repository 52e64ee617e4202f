"""The volumes table of the data card (docs/data.md), rendered from ``PROVENANCE.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crane_lens.data.languages import LANGUAGES
from crane_lens.utils.markdown import read_marked_block, update_marked_block


def volume_table(provenance: dict[str, Any]) -> str:
    """Markdown table: per language, train/eval texts and characters, eval characters by origin."""
    counts = provenance["counts"]
    lines = [
        "| lang | language | train texts | train chars | eval texts | eval chars "
        "| eval: help | eval: UI | eval: UDHR |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for lang in provenance["languages"]:
        train, held = counts["train"][lang], counts["eval"][lang]
        cells = [
            f"{train['texts']:,}",
            f"{train['chars']:,}",
            f"{held['texts']:,}",
            f"{held['chars']:,}",
            *(
                f"{held.get(f'chars:{o}', 0):,}"
                for o in ("libreoffice-help", "libreoffice-ui", "udhr")
            ),
        ]
        lines.append(f"| {lang} | {LANGUAGES[lang].name} | " + " | ".join(cells) + " |")
    total = [sum(counts[s][x][k] for x in provenance["languages"]) for s in ("train", "eval")
             for k in ("texts", "chars")]  # fmt: skip
    lines.append("| **all** | | " + " | ".join(f"**{v:,}**" for v in total) + " | | | |")
    return "\n".join(lines) + "\n"


def update_card(card: Path, provenance: dict[str, Any]) -> None:
    """Rewrite the volumes table of the data card."""
    update_marked_block(card, "volumes-table", volume_table(provenance))


def card_table(card: Path) -> str:
    """The volumes table currently in ``card``."""
    return read_marked_block(card, "volumes-table")
