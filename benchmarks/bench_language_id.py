#!/usr/bin/env python
"""Language identifiers compared on the 17 embedded languages: ours and maintained libraries.

Identifiers, each restricted to the 17 languages of the embedded corpus (the question the
generation check asks is "which of these?"):

* ``hand-written``: the script rules + character n-gram naive Bayes that crane_lens used to ship,
  trained on the embedded *train* split (given with ``--hand-written module:function``, a
  callable ``text -> code | None`` answering among the 17; left out when not given);
* ``py3langid`` 0.4 (langid.py's model, ``set_languages``) and ``lingua`` 2.1
  (``LanguageDetectorBuilder.from_languages``, high-accuracy mode, and low-accuracy mode);
* ``crane_lens``: :class:`crane_lens.evaluation.language_id.LanguageIdentifier` as it is now
  (script rules, then py3langid among the candidates of that script).

Test sets (all held out: the embedded *eval* split):

* ``texts``: every eval text of at least 20 characters (help paragraphs, UI strings, UDHR);
* ``50 chars`` / ``20 chars``: the first 50 / 20 characters of every eval text that long;
* ``generations``: greedy continuations (24 new tokens) of 20 held-out 12-token prompts per
  language, exactly what :func:`crane_lens.evaluation.generation_check` classifies; the label is
  the prompt's language (a continuation that really switched language counts as a miss for
  every identifier alike). Generated with ``--model`` (gemma-3-270m: 45 min on 2 busy cores) or
  read back from ``--generations FILE`` (written by an earlier run with ``--save-generations``).

Prints markdown tables: accuracy per language and set, speed (texts/s on each set, one process,
after a warm-up), load time and installed size.

    python benchmarks/bench_language_id.py --model gemma-3-270m --save-generations gen.json
    python benchmarks/bench_language_id.py --generations gen.json [--write-docs]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import crane_lens as cl
from crane_lens.data.sources.builtin import builtin_langs
from crane_lens.utils.markdown import update_marked_block

DOCS = Path(__file__).resolve().parents[1] / "docs" / "language-id.md"
Identify = Callable[[str], "str | None"]
Make = Callable[[list[str]], Identify]


def py3langid(langs: list[str]) -> Identify:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(langs)
    return lambda text: identifier.classify(text)[0]


def lingua(langs: list[str], *, low_accuracy: bool = False) -> Identify:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_languages(
        *(Language.from_iso_code_639_1(getattr(IsoCode639_1, x.upper())) for x in langs)
    )
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def identify(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return None if found is None else found.iso_code_639_1.name.lower()

    return identify


def crane_lens_now(langs: list[str]) -> Identify:
    from crane_lens.evaluation.language_id import LanguageIdentifier

    return LanguageIdentifier(langs).predict


def from_path(spec: str) -> Make:
    module, name = spec.split(":")
    function = getattr(importlib.import_module(module), name)
    return lambda langs: function  # its default languages: the 17 built-in ones


def identifiers(hand_written: str | None) -> dict[str, tuple[Make, str | None]]:
    """``name -> (maker, distribution)`` of the identifiers compared."""
    makers: dict[str, tuple[Make, str | None]] = {
        "crane_lens": (crane_lens_now, "py3langid"),
        "py3langid": (py3langid, "py3langid"),
        "lingua": (lingua, "lingua-language-detector"),
        "lingua (low accuracy)": (
            lambda x: lingua(x, low_accuracy=True),
            "lingua-language-detector",
        ),
    }
    if hand_written:
        makers = {"hand-written": (from_path(hand_written), None), **makers}
    return makers


def load_time(name: str, hand_written: str | None) -> float:
    """Seconds to load ``name`` and identify one text, in a fresh process (no shared caches)."""
    command = [sys.executable, __file__, "--load-time", name]
    command += ["--hand-written", hand_written] if hand_written else []
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def installed_mb(dist: str) -> float:
    files = importlib.metadata.distribution(dist).files or []
    paths = [Path(str(f.locate())) for f in files]
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6


def test_sets(generations: dict[str, list[str]] | None) -> dict[str, dict[str, list[str]]]:
    corpus = cl.load_corpus("builtin", split="eval")
    texts = {lang: list(corpus[lang]) for lang in corpus.langs}
    sets = {
        "texts": {lang: [t for t in rows if len(t) >= 20] for lang, rows in texts.items()},
        "50 chars": {lang: [t[:50] for t in rows if len(t) >= 50] for lang, rows in texts.items()},
        "20 chars": {lang: [t[:20] for t in rows if len(t) >= 20] for lang, rows in texts.items()},
    }
    if generations:
        sets["generations"] = generations
    return sets


def generate(model_name: str, n_prompts: int) -> dict[str, list[str]]:
    from crane_lens.evaluation.generation import generation_check

    model = cl.load_model(model_name, device="cpu")
    report = generation_check(model, n_prompts=n_prompts, prompt_tokens=12, max_new_tokens=24)
    return report.continuations


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(["", *lines, *("| " + " | ".join(r) + " |" for r in rows), ""])


def report(
    sets: dict[str, dict[str, list[str]]],
    accuracy: dict[str, dict[str, dict[str, float]]],
    speed: dict[str, dict[str, float]],
    about: dict[str, tuple[float, str]],
    langs: list[str],
) -> str:
    """Markdown: one accuracy table per test set, then speed and size."""
    names = list(about)
    out = []
    for set_name, by_name in accuracy.items():
        count = {lang: len(texts) for lang, texts in sets[set_name].items()}
        rows = [[lang, str(count[lang]), *(f"{by_name[x][lang]:.3f}" for x in names)]
                for lang in langs]  # fmt: skip
        means = [f"**{statistics.fmean(by_name[x].values()):.3f}**" for x in names]
        mins = [f"{min(by_name[x].values()):.3f}" for x in names]
        rows += [["mean", str(sum(count.values())), *means], ["min", "", *mins]]
        title = f"\n**{set_name}** (accuracy per language)\n"
        out.append(title + table(rows, ["lang", "n", *names]))
    rows = [[x, f"{about[x][0]:.2f}", about[x][1], *(f"{speed[x][s]:,.0f}" for s in sets)]
            for x in names]  # fmt: skip
    header = ["identifier", "load (s)", "installed", *(f"texts/s: {s}" for s in sets)]
    out.append("\n**speed and size**\n" + table(rows, header))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="generate continuations with this model")
    parser.add_argument("--n-prompts", type=int, default=20)
    parser.add_argument("--generations", type=Path, help="continuations saved earlier (JSON)")
    parser.add_argument("--save-generations", type=Path)
    parser.add_argument("--hand-written", help="module:function of an extra identifier")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--load-time", help=argparse.SUPPRESS)  # internal: one fresh process
    args = parser.parse_args()
    langs = builtin_langs()
    makers = identifiers(args.hand_written)
    if args.load_time:
        start = time.perf_counter()
        makers[args.load_time][0](langs)("Load and use once: ready for texts.")
        print(time.perf_counter() - start)
        return 0
    generations = None
    if args.generations:
        saved = json.loads(args.generations.read_text(encoding="utf-8"))
        generations = saved.get("continuations", saved)  # a GenerationReport's JSON too
    elif args.model:
        generations = generate(args.model, args.n_prompts)
    if generations and args.save_generations:
        args.save_generations.write_text(json.dumps(generations, ensure_ascii=False), "utf-8")
    sets = test_sets(generations)
    accuracy: dict[str, dict[str, dict[str, float]]] = {}  # set -> identifier -> lang -> acc
    speed: dict[str, dict[str, float]] = {}  # identifier -> set -> texts/s
    about: dict[str, tuple[float, str]] = {}
    for name, (make, dist) in makers.items():
        identify = make(langs)
        identify("warm up: build caches")
        loaded = load_time(name, args.hand_written)
        about[name] = (loaded, f"{installed_mb(dist):.1f} MB" if dist else "0 (in crane_lens)")
        for set_name, by_lang in sets.items():
            start, n = time.perf_counter(), 0
            per_lang = {}
            for lang, rows in by_lang.items():
                hits = sum(identify(text) == lang for text in rows)
                per_lang[lang], n = hits / len(rows), n + len(rows)
            speed.setdefault(name, {})[set_name] = n / (time.perf_counter() - start)
            accuracy.setdefault(set_name, {})[name] = per_lang
    text = report(sets, accuracy, speed, about, langs)
    print(text)
    if args.write_docs:
        update_marked_block(DOCS, "bench-language-id", text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
