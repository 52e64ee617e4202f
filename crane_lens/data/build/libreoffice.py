"""Readers for LibreOffice's localised help pages (HTML) and UI catalogues (gettext ``.mo``).

The help pages of every language are generated from the same sources: a paragraph keeps its
id (``par_id…``, ``hd_id…``) across languages, which is what aligns them. The UI catalogues
key every translation by its English ``msgid``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from crane_lens.data.build.text import normalize_text

_SEGMENT_ID = re.compile(r"^(?:par|hd)_id\w+$")
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    ]
)
# Subtrees that are not running text: code samples, scripts, the debug footer.
_SKIP_TAGS = frozenset({"script", "style", "pre", "code", "footer", "head", "nav", "aside"})
_SKIP_CLASSES = frozenset({"bascode", "pycode", "code", "iconcell", "noteicon", "debug"})


class _HelpPageParser(HTMLParser):
    """Collects the text of every element whose id marks a translatable help segment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.segments: list[tuple[str, str]] = []
        self._stack: list[tuple[str, bool, str | None]] = []  # (tag, skipped, segment id)
        self._buffers: dict[int, list[str]] = {}  # stack depth of an open segment -> text

    def _skipping(self) -> bool:
        return any(skipped for _, skipped, _ in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        attr = dict(attrs)
        classes = set((attr.get("class") or "").split())
        element_id = attr.get("id") or ""
        # System-specific variants are hidden and switched by JavaScript; keep only the default.
        hidden = "hidden" in attr and not element_id.startswith("default")
        skipped = tag in _SKIP_TAGS or bool(classes & _SKIP_CLASSES) or hidden
        segment = element_id if _SEGMENT_ID.match(element_id) else None
        self._stack.append((tag, skipped, segment))
        if segment is not None and not self._skipping():
            self._buffers[len(self._stack)] = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Tolerate stray end tags: close up to the matching open tag, if any.
        for depth in range(len(self._stack), 0, -1):
            if self._stack[depth - 1][0] == tag:
                while len(self._stack) >= depth:
                    self._close()
                return

    def _close(self) -> None:
        depth = len(self._stack)
        _, _, segment = self._stack.pop()
        parts = self._buffers.pop(depth, None)
        if segment is not None and parts is not None:
            text = normalize_text("".join(parts))
            if text:
                self.segments.append((segment, text))

    def handle_data(self, data: str) -> None:
        if self._buffers and not self._skipping():
            # Only the innermost open segment collects: every piece of text has one owner.
            self._buffers[max(self._buffers)].append(data)

    def close(self) -> None:
        super().close()
        while self._stack:
            self._close()


def extract_help_segments(html: str) -> list[tuple[str, str]]:
    """Extract ``(segment id, text)`` pairs from one LibreOffice help page.

    Hidden system variants (macOS menu names) and code samples are left out; inline markup is
    flattened; whitespace is normalised.

    Args:
        html: The page's HTML source.

    Returns:
        Segments in document order. An id may occur more than once (embedded sections).
    """
    parser = _HelpPageParser()
    parser.feed(html)
    parser.close()
    return parser.segments


def read_help_tree(root: Path) -> dict[str, list[tuple[str, str]]]:
    """Read every help page below a language's help folder.

    Args:
        root: e.g. ``usr/share/libreoffice/help/en-US`` of an extracted package.

    Returns:
        Page path relative to ``root`` (POSIX, without ``.html``) → its segments.
    """
    pages: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root).with_suffix("").as_posix()
        pages[rel] = extract_help_segments(path.read_text(encoding="utf-8"))
    return pages


# Keyboard mnemonics: "~Open" (VCL) and "_Open" (GtkBuilder .ui strings).
_MNEMONIC = re.compile(r"~(?=\w)|(?<![\w_])_(?=\w)")


def read_ui_catalog(path: Path) -> dict[str, tuple[str, str]]:
    """Read one compiled gettext catalogue of the LibreOffice UI.

    Args:
        path: A ``.mo`` file.

    Returns:
        ``"<msgctxt>|<msgid>"`` → ``(english, translation)``, both without the ``~``/``_``
        mnemonic markers and with normalised whitespace. Untranslated entries are left out.
    """
    import polib  # build-time dependency only (extra "build")

    entries: dict[str, tuple[str, str]] = {}
    for entry in polib.mofile(str(path)):
        if not entry.msgstr:
            continue
        english = normalize_text(_MNEMONIC.sub("", entry.msgid))
        translation = normalize_text(_MNEMONIC.sub("", entry.msgstr))
        entries[f"{entry.msgctxt or ''}|{entry.msgid}"] = (english, translation)
    return entries
