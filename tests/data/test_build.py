"""The corpus builder's extraction and quality checks, on hand-written inputs."""

from __future__ import annotations

from crane_lens.data.build.libreoffice import extract_help_segments
from crane_lens.data.build.text import is_translated, normalize_text, numbers_match, script_share
from crane_lens.data.build.udhr import align_declarations, read_declaration

HELP_PAGE = """<html><head><title>t</title><script>var x = "<p id='par_id9'>no</p>";</script></head>
<body><div id="DisplayArea">
<h1 id="hd_id1" dir="auto">Load/Save   options</h1>
<p id="par_id2" class="paragraph">Choose <span class="switchinline"><span hidden="true"
 id="MACtext_1" class="MAC"><span class="emph">LibreOffice - Preferences</span></span><span
 hidden="true" id="defaulttext_1"><span class="emph">Tools - Options</span></span></span>
 - Load.</p>
<div class="bascode"><p id="par_id3">Sub Main</p></div>
<p class="howtogetheader">To access this command...</p>
<table><tr><td><p id="par_id4" class="tablecontent">Cell&nbsp;text &amp; more</p></td></tr></table>
</div><footer><p id="par_id5">debug</p></footer></body></html>"""


def test_help_page_extraction() -> None:
    assert extract_help_segments(HELP_PAGE) == [
        ("hd_id1", "Load/Save options"),
        ("par_id2", "Choose Tools - Options - Load."),  # default variant only, no macOS text
        ("par_id4", "Cell text & more"),  # entities decoded; code, debug and scripts skipped
    ]


def test_normalize_text() -> None:
    assert normalize_text(" a\u00ad b\n\tc\u200b ") == "a b c"
    assert normalize_text("e\u0301") == "\u00e9"  # NFC


def test_translation_checks() -> None:
    assert not is_translated("Open file", "Open file", "Latn")
    assert is_translated("Ouvrir le fichier", "Open file", "Latn")
    assert not is_translated("LibreOffice Calc", "LibreOffice Calc help", "Hans")
    assert is_translated("打开 LibreOffice 文件", "Open LibreOffice file", "Hans")
    assert script_share("abc", "Latn") == 1.0
    assert numbers_match("Seite 3 von 10", "page 10 of 3")
    assert numbers_match("٣ ملفات", "3 files")  # Arabic-Indic digits
    assert not numbers_match("Schritt 2", "Step 3")


UDHR_EN = """<html><body><header><h2>Preamble</h2><p>Whereas one,</p><p>Whereas two,</p></header>
<article data-number="1"><h2>Article 1</h2><p>All are free.</p></article>
<article data-number="2"><h2>Article 2</h2><p>Everyone.</p><p>Furthermore.</p>
<ol><li>Item</li></ol></article></body></html>"""
UDHR_XX = """<html><body><header><p>Un,</p><p>Deux,</p></header>
<article data-number="1"><p>Tous libres.</p></article>
<article data-number="2"><p>Chacun. De plus.</p><ol><li>Point</li></ol></article></body></html>"""


def test_udhr_alignment_keeps_identical_keys() -> None:
    en, xx = read_declaration(UDHR_EN), read_declaration(UDHR_XX)
    assert en["art02"] == ["Everyone.", "Furthermore.", "Item"]
    rows = align_declarations({"en": en, "fr": xx})
    assert list(rows["en"]) == list(rows["fr"])
    assert rows["fr"]["udhr:preamble.2"] == "Deux,"
    # Article 2 differs in structure: it becomes one row for every language.
    assert rows["en"]["udhr:art02"] == "Everyone. Furthermore. Item"
    assert rows["fr"]["udhr:art02"] == "Chacun. De plus. Point"


def test_dedup_key_catches_case_width_and_space_variants() -> None:
    from crane_lens.data.build.text import dedup_key

    assert dedup_key("Open  File") == dedup_key("open file") == dedup_key("Ｏｐｅｎ file")
    assert dedup_key("Open file") != dedup_key("Open files")


def test_ui_catalog_strips_mnemonics_and_skips_untranslated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import polib

    from crane_lens.data.build.libreoffice import read_ui_catalog

    catalog = polib.POFile()
    catalog.append(polib.POEntry(msgctxt="a|b", msgid="_Edit the ~document", msgstr="حرّر _المستند"))
    catalog.append(polib.POEntry(msgctxt="c", msgid="Not translated", msgstr=""))
    catalog.append(polib.POEntry(msgid="FILE_NAME stays", msgstr="FILE_NAME يبقى"))
    catalog.save_as_mofile(str(tmp_path / "x.mo"))
    assert read_ui_catalog(tmp_path / "x.mo") == {
        "a|b|_Edit the ~document": ("Edit the document", "حرّر المستند"),
        "|FILE_NAME stays": ("FILE_NAME stays", "FILE_NAME يبقى"),
    }
