#!/usr/bin/env python
"""Regenerate a results page of docs/ — its tables AND its figures — for a model; resumable.

    python scripts/make_results.py --write-docs                         # crane-tiny: ≈ 45 min
    python scripts/make_results.py --model gemma-3-270m --write-docs    # a real LLM: hours

``--model crane-tiny`` (the default) runs the demo study below and fills docs/results.md; any other
model (installed name, local folder or hub id) runs the real-LLM study of scripts/science_llm.py
(its options pass through) and fills docs/results-<model>.md. Both draw their figures into
docs/figures/<model>-<figure>.png (kaleido + a Chromium: ``pip install 'crane_lens[figures]'``,
Debian ``apt install chromium``) and link them from the page. Finished stages are read back, so
re-running with --write-docs after a finished run only redraws tables and figures.

Stages of the demo study (each saved under --out as soon as it is done; re-running skips finished
work):
1. statistics of the model on the training split of all 17 languages (crane, attribution,
   grad_act, lape, kojima, plnd) and, separately, CRANE with the log-probability target;
2. selection at the same budget for every method;
3. the 17 × 17 CRANE ablation matrix with random control sets (--seeds), and every other
   method's matrix (no random sets: the CRANE run gives the random baseline per language);
4. base → chat transfer on en, zh, vi: the base model's CRANE sets masked in the chat model
   (--chat-model; crane-tiny-chat for crane-tiny), against the chat model's own sets;
5. benchmarks under masking (en, zh, vi): multiple-choice accuracy and the language of greedy
   continuations;
6. estimates vs exact ablation (en, zh, vi): exact single-neuron zero-ablation ΔNLL of every
   neuron of --causal-layers on a few held-out blocks, against attribution and CRANE;
and, from stage 1's per-part sums, how stable each method's sets are (split halves, nested
fractions of the training text).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

import crane_lens as cl
from crane_lens.evaluation import AblationMatrix
from crane_lens.intervention import intervention_values
from crane_lens.model.installable import crane_lens_home
from crane_lens.plots import NamedFigure
from crane_lens.report.export import check_exporter, export_figures
from crane_lens.utils.io import write_json
from crane_lens.utils.markdown import update_marked_block
from crane_lens.utils.ranking import spearman

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results.md"
FIGURES = DOCS.parent / "figures"
PAPER = ["en", "zh", "vi"]
STATS_METHODS = ["crane", "attribution", "grad_act", "lape", "kojima", "plnd"]
# label -> (stats key, method, rule, intervention mode)
VARIANTS: dict[str, tuple[str, str, str | None, str]] = {
    "crane": ("main", "crane", None, "zero"),
    "crane (logprob target)": ("logprob", "crane", None, "zero"),
    "crane (top, no specificity)": ("main", "crane", "top", "zero"),
    "lape": ("main", "lape", None, "zero"),
    "attribution": ("main", "attribution", None, "zero"),
    "attribution (specificity)": ("main", "attribution", "specificity", "zero"),
    "grad_act": ("main", "grad_act", None, "zero"),
    "kojima": ("main", "kojima", None, "zero"),
    "kojima (fixed to medians)": ("main", "kojima", None, "fixed"),
    "plnd": ("main", "plnd", None, "zero"),
}


# Rows per forward pass of the ablation matrices: on a 6 M-parameter model a pass of 8 rows is
# mostly overhead, so 32 (4 conditions × 8 blocks) per pass.
EVAL_ROWS = 32
# Variants whose ablation matrix is computed (the others are compared through their sets only).
MATRIX_VARIANTS = [
    v for v in VARIANTS if v not in ("crane (top, no specificity)", "kojima (fixed to medians)")
]


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def matrix(out: Path, label: str, compute: Any) -> AblationMatrix:
    folder = out / "ablation" / slug(label)
    if (folder / "matrix.json").is_file():
        return AblationMatrix.load(folder)
    start = time.perf_counter()
    result = compute(folder)
    result.config["seconds"] = round(time.perf_counter() - start, 1)
    return AblationMatrix.load(result.save(folder))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="crane-tiny",
                        help="crane-tiny: the demo study; any other: scripts/science_llm.py")  # fmt: skip
    parser.add_argument("--chat-model", default=None,
                        help="stage 4's fine-tuned model (default: crane-tiny-chat for crane-tiny)")  # fmt: skip
    parser.add_argument("--out", default=None, help="default $CRANE_LENS_HOME/science/MODEL")
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--max-tokens", type=int, default=8192, help="train tokens per language")
    parser.add_argument(
        "--eval-tokens",
        type=int,
        default=2048,
        help="held-out tokens per language (2048: 16 blocks of --eval-seq-len for the intervals)",
    )
    parser.add_argument("--eval-seq-len", type=int, default=128,
                        help="held-out block length (tokens, BOS included): the unit the intervals resample")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--causal-layers", default="1,3", help="stage 6: layers ablated exactly")
    parser.add_argument("--causal-blocks", type=int, default=4,
                        help="stage 6: held-out blocks of 64 tokens per language")  # fmt: skip
    parser.add_argument("--stages", default="1,2,3,4,5,6")
    parser.add_argument("--write-docs", action="store_true")
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.model != "crane-tiny":
        return real_llm(args, rest)
    if rest:
        parser.error(f"unrecognised arguments for the demo study: {' '.join(rest)}")
    if args.write_docs:
        check_exporter()  # the figures need kaleido and a browser: say so before hours of work
    out = Path(args.out or crane_lens_home() / "science" / args.model).expanduser()
    stages = {int(s) for s in args.stages.split(",")}
    base = cl.load_model(args.model)
    train = cl.load_corpus("builtin", split="train")
    held_out = cl.load_corpus("builtin", split="eval")
    langs = held_out.langs
    common = {"max_tokens_per_lang": args.max_tokens, "seq_len": 128, "batch_size": 8}
    stats = {
        "main": cl.compute_stats(base, train, STATS_METHODS, output_dir=out / "stats", **common),
        "logprob": cl.compute_stats(base, train, ["crane"], target="logprob",
                                    output_dir=out / "stats_logprob", **common),
    }  # fmt: skip
    neurons = {}
    for label, (key, method, rule, _) in VARIANTS.items():
        path = out / "neurons" / f"{slug(label)}.json"
        if not path.is_file():
            cl.select_language_neurons(stats[key], method, budget=args.budget, rule=rule).save(path)  # type: ignore[arg-type]
        neurons[label] = cl.LanguageNeurons.load(path)
    matrices: dict[str, AblationMatrix] = {}
    if 3 in stages:
        for label in MATRIX_VARIANTS:
            key, _, _, mode = VARIANTS[label]
            seeds = args.seeds if label == "crane" else 0
            values = ({lang: intervention_values(stats[key], "fixed", lang) for lang in langs}
                      if mode == "fixed" else None)  # fmt: skip
            matrices[label] = matrix(out, label, lambda folder, label=label, seeds=seeds,
                                     values=values, mode=mode: cl.ablation_matrix(
                base, held_out, neurons[label], mode=mode, values=values, random_seeds=seeds,
                max_tokens_per_lang=args.eval_tokens, seq_len=args.eval_seq_len,
                max_batch_rows=EVAL_ROWS, checkpoint_dir=folder))  # fmt: skip
    transfer: dict[str, Any] = {}
    if 4 in stages:
        chat = cl.load_model(args.chat_model or "crane-tiny-chat")
        chat_train = train.select(langs=PAPER)
        chat_stats = cl.compute_stats(chat, chat_train, ["crane"], output_dir=out / "stats_chat",
                                      **common)  # fmt: skip
        chat_sets = cl.select_language_neurons(chat_stats, "crane", budget=args.budget)
        base_sets = cl.select_language_neurons(stats["main"], "crane", budget=args.budget,
                                               langs=PAPER)  # fmt: skip
        paper_eval = held_out.select(langs=PAPER)
        for label, model, sets in (("base sets on base", base, base_sets),
                                   ("base sets on chat", chat, base_sets),
                                   ("chat sets on chat", chat, chat_sets)):  # fmt: skip
            transfer[label] = matrix(out, f"transfer {label}", lambda folder, m=model, s=sets:
                                     cl.ablation_matrix(m, paper_eval, s, random_seeds=args.seeds,
                                                        max_tokens_per_lang=args.eval_tokens,
                                                        seq_len=args.eval_seq_len,
                                                        max_batch_rows=EVAL_ROWS,
                                                        checkpoint_dir=folder))  # fmt: skip
        transfer["jaccard"] = base_sets.jaccard(chat_sets)
    benchmarks: dict[str, Any] = {}
    if 5 in stages:
        strong = cl.select_language_neurons(stats["main"], "crane", budget=5 * args.budget)
        benchmarks = run_benchmarks(out, base, {
            "crane": neurons["crane"].select_langs(PAPER), "lape": neurons["lape"].select_langs(PAPER),
            f"crane ×5 budget ({strong.count('en')} neurons)": strong.select_langs(PAPER),
        })  # fmt: skip
    causality: cl.NeuronStats | None = None
    if 6 in stages:
        causality = cl.compute_stats(
            base, held_out.select(langs=PAPER), ["crane", "attribution", "ablation"], seq_len=64,
            max_tokens_per_lang=64 * args.causal_blocks, batch_size=args.causal_blocks,
            ablation_layers=[int(x) for x in args.causal_layers.split(",")],
            output_dir=out / "stats_causality",
        )  # fmt: skip
    if args.write_docs:
        # How much each set depends on the training text: from the statistics' per-part sums.
        stability = cl.selection_stability(stats["main"], MAIN_METHODS, budget=args.budget)
        write_docs(args, out, neurons, matrices, transfer, benchmarks, causality, stability)
        write_figures(args, stats["main"], neurons, matrices, transfer, benchmarks, causality,
                      stability)  # fmt: skip
    return 0


def real_llm(args: argparse.Namespace, rest: list[str]) -> int:
    """Any model but the demo one: the real-LLM study of scripts/science_llm.py."""
    import science_llm

    argv = ["--model", args.model, *rest]
    if args.out:
        argv += ["--out", args.out]
    if args.write_docs:
        argv += ["--write-docs", str(DOCS.parent / f"results-{Path(args.model).name}.md")]
    return science_llm.main(argv)


def run_benchmarks(out: Path, model: Any, sets_by_name: dict[str, Any]) -> dict[str, Any]:
    """Multiple-choice accuracy and generation language, unmasked and with each set masked."""
    from crane_lens.evaluation.generation import generation_check
    from crane_lens.evaluation.multiple_choice import builtin_multiple_choice, mc_accuracy

    path = out / "benchmarks.json"
    if path.is_file():
        return json.loads(path.read_text())
    # Help-text items: the UDHR items are out of crane-tiny's domain (accuracy at chance).
    mc = builtin_multiple_choice(PAPER, origins=["libreoffice-help"], max_items_per_lang=200)
    rows: dict[str, Any] = {"mc": {}, "generation": {},
                            "mc_items": {x: len(mc.items[x]) for x in PAPER}}  # fmt: skip
    conditions: list[tuple[str, Any, str | None]] = [("none", None, None)]
    conditions += [(f"{name}:{lang}", sets, lang) for name, sets in sets_by_name.items()
                   for lang in PAPER]  # fmt: skip
    for label, sets, lang in conditions:
        logging.info("benchmarks under %s", label)
        if sets is None:
            report, generated = mc_accuracy(model, mc), generation_check(model, langs=PAPER)
        else:
            with cl.ablate(model, sets, lang):
                report, generated = mc_accuracy(model, mc), generation_check(model, langs=PAPER)
        rows["mc"][label] = {x: report.accuracy(x) for x in PAPER}
        rows["generation"][label] = {x: generated.fraction_in_language(x) for x in PAPER}
    write_json(path, rows)
    return rows


def fmt(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_markdown(floatfmt=f".{digits}f")


def _bracketed(matrix: AblationMatrix) -> pd.DataFrame:
    """ΔNLL as text, a cell in brackets where its 95 % interval includes 0."""
    from crane_lens.plots.matrix import uncertain_cells

    delta, marks = matrix.delta(), uncertain_cells(matrix, "delta")
    text = delta.map(lambda v: f"{v:.2f}")
    return text if marks is None else text.where(~marks.astype(bool), "(" + text + ")")


def write_docs(args: Any, out: Path, neurons: dict[str, Any], matrices: dict[str, AblationMatrix],
               transfer: dict[str, Any], benchmarks: dict[str, Any],
               causality: cl.NeuronStats | None, stability: Any) -> None:  # fmt: skip
    blocks: dict[str, str] = {}
    table = stability.summary()
    blocks["stability"] = (
        "Each method selected again, at the same budget, on two disjoint halves of the training "
        "text (interleaved blocks) and on its first 1/16 … 1/2, from the per-part sums of the one "
        "statistics pass; Jaccard index of the sets (chance: random sets of the same sizes):\n\n"
        + "\n".join(f"* {line}" for line in stability.describe().splitlines()) + "\n\n"
        + fmt(table.rename(columns={"median": "split-half median", "min": "lowest",
                                    "min_lang": "lowest language", "tokens": "tokens per half",
                                    "converged": "at 1/4 vs all"}), 3)
        + "\n\nSplit-half Jaccard per language:\n\n" + fmt(stability.split_half(), 2) + "\n"
    )  # fmt: skip
    crane = matrices["crane"]
    sel = crane.selectivity()
    n_blocks = len(next(iter(crane.per_block["tokens"].values()))) if crane.per_block else 0
    blocks["crane-matrix"] = (
        f"ΔNLL (nats/token) on {args.eval_tokens} held-out tokens per language; rows: the "
        f"language whose {sel.n_neurons.iloc[0]}-neuron CRANE set is zero-ablated; columns: the "
        "evaluated language. Diagonal = own language; a value in brackets: its 95 % interval "
        "includes 0.\n\n" + fmt(_bracketed(crane), 2) + "\n\n"
        "Per language — own ΔNLL and its 95 % bootstrap interval (low, high: resampling the "
        f"{n_blocks} held-out blocks of each language, paired across conditions), the mean over "
        "the other 16, the selectivity index and its interval, random sets of the same "
        f"per-layer sizes ({args.seeds} seeds, mean), vs_random = own − random_own (the ΔNLL "
        "beyond the random sets') and the empirical p-value against the random sets, (1 + "
        f"#{{random ≥ own}}) / (1 + {args.seeds}), which cannot go below "
        f"{1 / (args.seeds + 1):.2f}:\n\n"
        + fmt(sel[["n_neurons", "own", "own_low", "own_high", "others", "index", "index_low",
                   "index_high", "random_own", "vs_random", "p_value"]]) + "\n"
    )  # fmt: skip
    summaries = {label: m.summary() for label, m in matrices.items()}
    comparison = pd.DataFrame({label: m.selectivity()["index"] for label, m in matrices.items()})
    own = pd.DataFrame({label: m.selectivity()["own"] for label, m in matrices.items()})
    sizes = pd.DataFrame({label: pd.Series(m.n_neurons) for label, m in matrices.items()})

    def interval(key: str) -> pd.Series:
        return pd.Series({k: f"{s[f'{key}_low']:.3f} to {s[f'{key}_high']:.3f}"
                          for k, s in summaries.items()})  # fmt: skip

    summary = pd.DataFrame({
        "neurons (mean per language)": sizes.mean(),
        "own ΔNLL (mean)": own.mean(), "own 95 % CI": interval("own"),
        "others ΔNLL (mean)": pd.Series({k: s["others"] for k, s in summaries.items()}),
        "selectivity index (mean)": comparison.mean(), "index 95 % CI": interval("index"),
        "languages won": (comparison.max(axis=1) == comparison.T).sum(axis=1),
    })  # fmt: skip
    blocks["method-comparison"] = (
        "Mean over the 17 languages (index = (own⁺ − others⁺) / (own⁺ + others⁺), x⁺ = max(x, "
        "0); 95 % CI: bootstrap over held-out blocks; 'languages won' = languages where the "
        "method's index is the highest). LAPE's sets are matched to the others' mean size (the "
        "smallest total whose sets average k per language):\n\n" + fmt(summary) + "\n\n"
        "Selectivity index per language:\n\n" + fmt(comparison, 2) + "\n\n"
        "Own-language ΔNLL per language:\n\n" + fmt(own, 2) + "\n"
    )
    overlap = []
    for label in ("crane", "crane (top, no specificity)", "lape", "attribution", "kojima", "plnd"):
        counts = neurons[label].overlap_counts().query("layer == 'all'")
        overlap.append({"method": label, "selected": counts.selected.sum(),
                        "exclusive": counts.exclusive.sum(), "shared": counts.shared.sum(),
                        "shared %": 100 * counts.shared.sum() / max(1, counts.selected.sum())})  # fmt: skip
    off = crane.delta().values
    n = len(off)
    mean_off = (off.sum() - off.trace()) / (n * n - n)
    rand = crane.random_delta().values
    blocks["exclusive-shared"] = (
        fmt(pd.DataFrame(overlap).set_index("method"), 1) + "\n\n"
        f"Selective but not exclusive: masking a language's CRANE set raises the other languages' "
        f"NLL by {mean_off:.3f} nats/token on average (random sets of the same sizes: "
        f"{(rand.sum() - rand.trace()) / (n * n - n):.3f}), against {off.trace() / n:.3f} for its "
        "own language.\n\nJaccard overlap of CRANE's set with the other methods' sets "
        "(mean over languages):\n\n"
        + fmt(pd.Series({label: float(pd.Series({x: neurons["crane"].jaccard(neurons[label]).loc[x, x]
                                                 for x in neurons["crane"].langs}).mean())
                         for label in neurons if label != "crane" and VARIANTS[label][3] != "fixed"},
                        name="jaccard").to_frame())
        + "\n"
    )  # fmt: skip
    if transfer:
        parts = []
        for label in ("base sets on base", "base sets on chat", "chat sets on chat"):
            parts.append(f"**{label}** (ΔNLL):\n\n" + fmt(transfer[label].delta()) + "\n\n"
                         + fmt(transfer[label].selectivity()[["own", "others", "index",
                                                              "random_own", "vs_random"]]))  # fmt: skip
        jac = transfer["jaccard"]
        parts.append("Jaccard overlap of the base model's and the chat model's CRANE sets "
                     "(rows: base, columns: chat):\n\n" + fmt(jac))  # fmt: skip
        blocks["transfer"] = "\n\n".join(parts) + "\n"
    if benchmarks:
        mc = pd.DataFrame(benchmarks["mc"]).T
        gen = pd.DataFrame(benchmarks["generation"]).T
        blocks["benchmarks"] = (
            f"Multiple-choice accuracy (items per language: {benchmarks['mc_items']}; chance "
            "0.25), rows = masked set:\n\n" + fmt(mc) + "\n\nShare of greedy continuations "
            "identified as the prompt's language:\n\n" + fmt(gen) + "\n"
        )
    if causality is not None:
        exact = causality.scores("ablation")
        layers = causality.config["ablation_layers"]
        rho = pd.DataFrame({
            method: {f"{lang}, layer {layer}": spearman(causality.scores(method)[i, layer],
                                                         exact[i, layer])
                     for i, lang in enumerate(causality.langs) for layer in layers}
            for method in ("attribution", "crane")})  # fmt: skip
        blocks["causality"] = (
            f"Spearman ρ between each score and the exact ΔNLL over the {causality.spec.d_mlp} "
            "neurons of the layer:\n\n" + fmt(rho, 2) + "\n"
        )
    for name, content in blocks.items():
        update_marked_block(DOCS, name, "\n" + content + "\n")
    logging.info("wrote %s", DOCS)


MAIN_METHODS = ["crane", "lape", "attribution", "grad_act", "kojima", "plnd"]


def write_figures(args: Any, stats: cl.NeuronStats, neurons: dict[str, Any],
                  matrices: dict[str, AblationMatrix], transfer: dict[str, Any],
                  benchmarks: dict[str, Any], causality: cl.NeuronStats | None,
                  stability: Any) -> None:  # fmt: skip
    """Draw the page's figures into docs/figures/ and put them at the top of their blocks
    (the ``<block>-figures`` marker right after each block)."""
    from crane_lens import plots

    by_block: dict[str, list[NamedFigure]] = {}

    def add(block: str, name: str, caption: str, figure: Any) -> None:
        named = NamedFigure(f"{args.model}-{name}", caption, figure)
        by_block.setdefault(block, []).append(named)

    if matrices:
        add("crane-matrix", "ablation-matrices", "ΔNLL matrices of CRANE, LAPE and random sets",
            plots.ablation_matrices({m: matrices[m] for m in ("crane", "lape")}))  # fmt: skip
        add("method-comparison", "selectivity", "Selectivity index per language and method",
            plots.selectivity_chart({m: matrices[m] for m in MAIN_METHODS}))  # fmt: skip
    add("exclusive-shared", "counts-lape", "LAPE's neurons per layer and language",
        plots.neuron_counts(neurons["lape"]))  # fmt: skip
    add("exclusive-shared", "crane-specificity", "CRANE specificity per layer, set marked",
        plots.neuron_heatmap(stats, "crane", specificity=True, neurons=neurons["crane"]))  # fmt: skip
    add("exclusive-shared", "method-overlap", "Jaccard overlap between the methods' sets",
        plots.method_overlap({m: neurons[m] for m in MAIN_METHODS}))  # fmt: skip
    add("exclusive-shared", "lape-language-overlap", "Jaccard overlap between LAPE's languages",
        plots.language_overlap(neurons["lape"]))  # fmt: skip
    if transfer:
        conditions = ("base sets on base", "base sets on chat", "chat sets on chat")
        add("transfer", "transfer", "Base → chat transfer of the CRANE sets",
            plots.transfer_chart({c: transfer[c] for c in conditions}, transfer["jaccard"]))  # fmt: skip
    if benchmarks:
        add("benchmarks", "multiple-choice", "Multiple-choice accuracy under masking",
            plots.accuracy_chart(benchmarks, key="mc"))  # fmt: skip
        add("benchmarks", "generation", "Language of greedy continuations under masking",
            plots.accuracy_chart(benchmarks, key="generation"))  # fmt: skip
    add("stability", "stability", "How stable the sets are across samples of the training text",
        plots.stability_figure(stability))  # fmt: skip
    if causality is not None:
        add("causality", "estimate-vs-exact", "Estimates vs exact single-neuron ablation",
            plots.estimate_vs_exact_from_stats(causality))  # fmt: skip
    figures = [f for named in by_block.values() for f in named]
    export_figures(figures, FIGURES, ["png"])
    for block, named in by_block.items():
        links = "\n\n".join(f"![{f.caption}](figures/{f.name}.png)" for f in named)
        update_marked_block(DOCS, f"{block}-figures", "\n" + links + "\n")
    logging.info("wrote %d figures into %s", len(figures), FIGURES)


if __name__ == "__main__":
    raise SystemExit(main())
