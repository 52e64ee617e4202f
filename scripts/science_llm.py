#!/usr/bin/env python
"""The paper's findings measured on a real LLM — resumable, one command, CPU-sized.

    python scripts/science_llm.py --model gemma-3-270m --dtype bf16 \\
        --write-docs docs/results-gemma-3-270m.md          # hours on 2 CPU cores; resumable

Every stage saves its result under --out (default ``$CRANE_LENS_HOME/science/<model>``, outside
the work tree, so a later session on the same machine continues) as soon as it is done, and
re-running skips finished work; the statistics and the ablation matrices also checkpoint inside.
``--stages`` runs a subset. ``--write-docs PAGE`` fills the page's generated blocks (between
``<!-- name: ... -->`` markers; hand-written text around them stays) from the finished stages, and
draws the budget-sweep figure into ``figures/`` beside the page when kaleido and a Chromium are
installed (``pip install kaleido``; Debian: ``apt install chromium``). Stages, cheapest and most
informative first:

1. statistics on the train split of all 17 languages: crane (AttnLRP), attribution, grad_act,
   lape, kojima, plnd in one pass; CRANE again with CP-LRP's attention rule only
   (``attention="cp-attention"``, in the folder ``stats_cp``: what ``"cp"`` meant when these
   results were made; lxt's full CP-LRP, ``"cp"``, also detaches the MLP gate);
2. the 17 × 17 ablation matrices at the main budget (--budget) for every method, each with random
   control sets of its own per-layer sizes (--seeds);
3. the budget sweep (--sweep, --sweep-methods): each method's matrix at each budget, i.e. own vs
   others ΔNLL as the sets grow (method by method, so a cut-short run leaves whole curves; a
   budget written BUDGET=m1+m2 is measured for those methods only);
4. zero- vs mean-ablation (CRANE and LAPE, main budget), the attention-only CP-LRP sets, and
   how much of a layer's MLP output survives zero-ablation (what a post-MLP norm rescales);
5. causality: exact single-neuron ablation of --causal-neurons sampled neurons in each of
   --causal-layers, against every method's score for that neuron (Spearman, per language);
6. benchmarks under masking (en, zh, vi): multiple-choice accuracy and the language of greedy
   continuations, with the CRANE and LAPE sets at the main budget.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import crane_lens as cl
from crane_lens import plots
from crane_lens.evaluation import AblationMatrix
from crane_lens.evaluation.ablation import EVAL_BATCH_ROWS, conditions_nll, eval_blocks
from crane_lens.intervention import intervention_values
from crane_lens.intervention.hooks import Intervention, intervention
from crane_lens.model.installable import crane_lens_home
from crane_lens.plots import NamedFigure, budget_sweep, sweep_table
from crane_lens.report.export import check_exporter, export_figures
from crane_lens.stats.lrp import upgrade_config
from crane_lens.stats.model_parts import down_projection_rows
from crane_lens.utils.io import write_json, write_text
from crane_lens.utils.markdown import update_marked_block
from crane_lens.utils.ranking import spearman

log = logging.getLogger("science_llm")
PAPER = ["en", "zh", "vi"]
METHODS = ["crane", "lape", "attribution", "grad_act", "kojima", "plnd"]
# Statistics key (folder stats_<key>, neurons <key>_*, matrix crane_<key>_*) -> CRANE's LRP rules.
# "cp" holds the attention-only variant: a full CP-LRP run would need a key of its own.
ATTENTION = {"main": "attnlrp", "cp": "cp-attention"}
CP_LABEL = 'CP-LRP, attention only: attention="cp-attention"'
SEQ_LEN, EVAL_SEQ_LEN = 128, 256


class Science:
    """The stages, sharing one model, corpus and output folder."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # A checkpoint folder's own name, not its path: the output never lands inside it.
        self.name = Path(args.model).name
        self.out = Path(args.out or crane_lens_home() / "science" / self.name).expanduser()
        self.model = cl.load_model(args.model, dtype=args.dtype)
        self.train = cl.load_corpus("builtin", split="train")
        self.held_out = cl.load_corpus("builtin", split="eval")
        self.langs = self.held_out.langs
        self.rows = EVAL_BATCH_ROWS
        self._stats: dict[str, Any] = {}

    def stats(self, key: str = "main") -> Any:
        if key not in self._stats:
            methods = METHODS if key == "main" else ["crane"]
            folder = self.out / f"stats_{key}"
            if (folder / "stats.json").is_file():
                # Finished: read back as is. Statistics of an earlier crane_lens lack provenance
                # keys compute_stats now records, and would be refused there; the settings this
                # script chooses must still match.
                done = cl.NeuronStats.load(folder)
                mine = {"methods": methods, "seq_len": SEQ_LEN, "batch_size": self.args.batch_size,
                        "max_tokens_per_lang": self.args.max_tokens,
                        "attention": ATTENTION[key]}  # fmt: skip
                # An old "cp" (no gated_mlp_rule recorded) reads as the "cp-attention" it was.
                saved = upgrade_config(done.config)
                differ = [k for k, v in mine.items() if saved.get(k) != v]
                if differ:
                    raise SystemExit(f"{folder} holds statistics with other {differ}.")
                self._stats[key] = done
                return done
            self._stats[key] = cl.compute_stats(
                self.model, self.train, methods, seq_len=SEQ_LEN, batch_size=self.args.batch_size,
                max_tokens_per_lang=self.args.max_tokens, output_dir=self.out / f"stats_{key}",
                checkpoint_every=2, attention=ATTENTION[key],  # type: ignore[arg-type]
            )  # fmt: skip
        return self._stats[key]

    def neurons(self, method: str, budget: float, key: str = "main") -> cl.LanguageNeurons:
        path = self.out / "neurons" / f"{key}_{method}_{budget:g}.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            cl.select_language_neurons(self.stats(key), method, budget=budget).save(path)
        return cl.LanguageNeurons.load(path)

    def matrix(self, name: str, sets: cl.LanguageNeurons, *, seeds: int, mode: str = "zero",
               values: Any = None) -> AblationMatrix:  # fmt: skip
        folder = self.out / "ablation" / name
        if (folder / "matrix.json").is_file():
            return AblationMatrix.load(folder)
        start = time.perf_counter()
        result = cl.ablation_matrix(
            self.model, self.held_out, sets, mode=mode, values=values,  # type: ignore[arg-type]
            random_seeds=seeds, seq_len=EVAL_SEQ_LEN, max_tokens_per_lang=self.args.eval_tokens,
            max_batch_rows=self.rows, checkpoint_dir=folder,
        )  # fmt: skip
        result.config["seconds"] = round(time.perf_counter() - start, 1)
        result.save(folder)
        (folder / "ablation_checkpoint.json").unlink(missing_ok=True)
        log.info("matrix %s done in %.0f s", name, result.config["seconds"])
        return AblationMatrix.load(folder)

    # -- stages ---------------------------------------------------------------------------
    def main_matrices(self) -> dict[str, AblationMatrix]:
        b = self.args.budget
        return {m: self.matrix(f"{m}_{b:g}", self.neurons(m, b), seeds=self.args.seeds)
                for m in METHODS}  # fmt: skip

    def sweep(self) -> dict[float, dict[str, AblationMatrix]]:
        out: dict[float, dict[str, AblationMatrix]] = {}
        # Method by method, so that a cut-short run has whole curves; random controls only at
        # the main budget (stage 2).
        for m in self.args.sweep_methods:
            for b, only in self.args.sweep:
                if only and m not in only:
                    continue
                seeds = self.args.seeds if b == self.args.budget else 0
                out.setdefault(b, {})[m] = self.matrix(
                    f"{m}_{b:g}", self.neurons(m, b), seeds=seeds
                )
        return dict(sorted(out.items()))

    def variants(self) -> dict[str, AblationMatrix]:
        b = self.args.budget
        mean = intervention_values(self.stats(), "mean")
        zero = {m: self.matrix(f"{m}_{b:g}", self.neurons(m, b), seeds=self.args.seeds)
                for m in ("crane", "lape")}  # fmt: skip
        return {
            "crane (zero-ablation)": zero["crane"],
            "lape (zero-ablation)": zero["lape"],
            "crane (mean-ablation)": self.matrix(f"crane_{b:g}_mean", self.neurons("crane", b),
                                                 seeds=0, mode="mean", values=mean),
            "lape (mean-ablation)": self.matrix(f"lape_{b:g}_mean", self.neurons("lape", b),
                                                seeds=0, mode="mean", values=mean),
            f"crane ({CP_LABEL})": self.matrix(f"crane_cp_{b:g}", self.neurons("crane", b, "cp"),
                                               seeds=0),
        }  # fmt: skip

    @torch.no_grad()
    def rescaling(self) -> dict[str, dict[str, float]]:
        """What a post-MLP normalisation does to the neurons that survive a zero-ablation.

        Layer-local and on clean activations: for each language's held-out block, the MLP
        output y = act @ W_down of every layer with and without the set's neurons of that
        layer; the median over tokens of rms(y without them) / rms(y). A model that normalises
        the MLP output before adding it (Gemma's post-feedforward RMSNorm) scales what survives
        by the inverse of this ratio, so zeroing neurons also amplifies the others.
        """
        path = self.out / "rescaling.json"
        if path.is_file():
            return dict(json.loads(path.read_text(encoding="utf-8")))
        spec, b = cl.get_spec(self.model), self.args.budget
        sets = {f"{m} {x * 100:g} %": self.neurons(m, x) for m in ("crane", "lape")
                for x in (b, 10 * b)}  # fmt: skip
        blocks = eval_blocks(self.model, self.held_out, self.langs, seq_len=EVAL_SEQ_LEN,
                             max_tokens_per_lang=self.args.eval_tokens)  # fmt: skip
        names = [spec.neuron_hook.format(layer=layer) for layer in range(spec.n_layers)]
        rows = [down_projection_rows(self.model, layer) for layer in range(spec.n_layers)]
        ratios: dict[str, dict[int, list[float]]] = {name: {} for name in sets}
        for lang in self.langs:
            tokens = blocks[lang].tokens[:1]
            _, cache = self.model.run_with_cache(tokens, names_filter=lambda n: n in names)
            for layer, (name, w_down) in enumerate(zip(names, rows, strict=True)):
                act = cache[name][0].float()  # [pos, d_mlp]
                full = act @ w_down
                for set_name, neurons in sets.items():
                    idx = neurons.per_layer(lang)[layer]
                    if len(idx) == 0:
                        continue
                    kept = full - act[:, idx] @ w_down[idx]
                    ratio = kept.pow(2).mean(-1).sqrt() / full.pow(2).mean(-1).sqrt()
                    ratios[set_name].setdefault(layer, []).append(float(ratio.median()))
        table = {name: {str(layer): sum(v) / len(v) for layer, v in sorted(by_layer.items())}
                 for name, by_layer in ratios.items()}  # fmt: skip
        write_json(path, table)
        return table

    def causality(self) -> dict[str, Any]:
        """Exact single-neuron zero-ablation ΔNLL of sampled neurons vs each method's score.

        The ablations run in --causal-dtype (float32 by default): one neuron moves the NLL by
        far less than bf16's rounding of logits of size 10-30, so in bf16 the ranks would be
        mostly rounding noise.
        """
        dtype = self.args.causal_dtype
        path = self.out / f"causality_{dtype}.json"
        done: dict[str, Any] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )
        model = (
            self.model if dtype == self.args.dtype else cl.load_model(self.args.model, dtype=dtype)
        )
        spec = cl.get_spec(model)
        generator = torch.Generator().manual_seed(0)
        sample = {layer: torch.randperm(spec.d_mlp, generator=generator)[: self.args.causal_neurons]
                  for layer in self.args.causal_layers}  # fmt: skip
        blocks = eval_blocks(model, self.held_out, PAPER, seq_len=EVAL_SEQ_LEN,
                             max_tokens_per_lang=self.args.eval_tokens)  # fmt: skip
        empty = [torch.zeros(0, dtype=torch.long)] * spec.n_layers
        keys = [f"{lang}|{layer}" for lang in PAPER for layer in sample]
        for lang in PAPER:
            for layer, picked in sample.items():
                key = f"{lang}|{layer}"
                if key in done and done[key]["neurons"] == picked.tolist():
                    continue
                conditions = [Intervention({}, {}, "baseline")]
                for n in picked.tolist():
                    idx = list(empty)
                    idx[layer] = torch.tensor([n])
                    conditions.append(intervention(idx, mode="zero", d_mlp=spec.d_mlp))
                nats = conditions_nll(model, blocks[lang], conditions,
                                      max_batch_rows=self.rows).sum(dim=1).tolist()  # fmt: skip
                done[key] = {"neurons": picked.tolist(),
                             "delta_nats": [n - nats[0] for n in nats[1:]],
                             "tokens": blocks[lang].n_tokens}  # fmt: skip
                write_json(path, done)
                log.info("causality %s: %d neurons", key, len(picked))
        stats, i_lang = self.stats(), {x: i for i, x in enumerate(self.stats().langs)}
        table: dict[str, dict[str, float]] = {}
        # crane_abs: the size of a neuron's relevance, whichever its sign; necessity is about size.
        for method in [*METHODS, "crane_abs"]:
            for key in keys:
                row = done[key]
                lang, layer = key.split("|")
                scores = stats.scores(method)[i_lang[lang], int(layer), row["neurons"]]
                rho = spearman(scores.double(), torch.tensor(row["delta_nats"]).double())
                table.setdefault(method, {})[f"{lang}, layer {layer}"] = float(rho)
        return {"table": table, "raw": {k: done[k] for k in keys}}

    def benchmarks(self) -> dict[str, Any]:
        from crane_lens.evaluation.generation import generation_check
        from crane_lens.evaluation.multiple_choice import builtin_multiple_choice, mc_accuracy

        path = self.out / "benchmarks.json"
        rows: dict[str, Any] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )
        b = self.args.budget
        mc = builtin_multiple_choice(PAPER, max_items_per_lang=self.args.mc_items)
        rows.setdefault("mc_items", {x: len(mc.items[x]) for x in PAPER})
        sets = {"crane": self.neurons("crane", b), "lape": self.neurons("lape", b)}
        conditions: list[tuple[str, Any, str | None]] = [("none", None, None)]
        conditions += [(f"{name}:{x}", s, x) for name, s in sets.items() for x in PAPER]
        for label, neurons, lang in conditions:
            if label in rows.get("mc", {}):
                continue
            log.info("benchmarks under %s", label)
            with (
                cl.ablate(self.model, neurons, lang)
                if neurons is not None
                else contextlib.nullcontext()
            ):
                report = mc_accuracy(self.model, mc, max_tokens_per_batch=1024)
                generated = generation_check(self.model, langs=PAPER, n_prompts=8,
                                             batch_size=4)  # fmt: skip
            rows.setdefault("mc", {})[label] = {x: report.accuracy(x) for x in PAPER}
            rows.setdefault("generation", {})[label] = {
                x: generated.fraction_in_language(x) for x in PAPER}  # fmt: skip
            rows.setdefault("n_neurons", {})[label] = neurons.count(lang) if neurons else 0
            write_json(path, rows)
        return rows


def parse_budget(text: str) -> tuple[float, list[str]]:
    """``"0.003=crane+lape"`` -> ``(0.003, ["crane", "lape"])``; no ``=``: every method."""
    budget, _, only = text.partition("=")
    return float(budget), [m for m in only.split("+") if m]


def fmt(frame: pd.DataFrame | pd.Series, digits: int = 3) -> str:
    # NaN (not measured) as a dash; tabulate's missingval applies to None only.
    shown = frame.astype(object).where(frame.notna(), None)
    return shown.to_markdown(floatfmt=f".{digits}f", missingval="–")


def summary_row(m: AblationMatrix) -> dict[str, float]:
    """:meth:`AblationMatrix.summary` with the page's column names."""
    names = {"neurons": "neurons/lang", "own": "own ΔNLL", "others": "others ΔNLL",
             "index": "index", "index_median": "index (median)", "random_own": "random own",
             "random_others": "random others"}  # fmt: skip
    return {names[k]: v for k, v in m.summary().items()}


def _blocks(science: Science, path: Path, parts: dict[str, Any]) -> dict[str, str]:
    """The generated blocks of the results page, one per finished part."""
    args, spec = science.args, cl.get_spec(science.model)
    blocks: dict[str, list[str]] = {"command": [
        "```bash",
        f"python scripts/make_results.py --model {args.model} --dtype {args.dtype} "
        f"--max-tokens {args.max_tokens} --batch-size {args.batch_size} "
        f"--eval-tokens {args.eval_tokens} --budget {args.budget:g} "
        f"--sweep {args.sweep_text} "
        f"--sweep-methods {','.join(args.sweep_methods)} --seeds {args.seeds} "
        f"--causal-layers {','.join(map(str, args.causal_layers))} "
        f"--causal-neurons {args.causal_neurons} --causal-dtype {args.causal_dtype} "
        f"--mc-items {args.mc_items} --write-docs",
        "```",
        "",
        f"Model: {spec.n_layers} layers × {spec.d_mlp} MLP neurons ({spec.n_neurons:,} in all), "
        f"{spec.dtype}. Statistics: {args.max_tokens} training tokens per language "
        f"({SEQ_LEN}-token blocks) of the built-in corpus, all 17 languages. ΔNLL: "
        f"{args.eval_tokens} held-out tokens per language ({EVAL_SEQ_LEN}-token stream block), "
        "zero-ablation unless said otherwise. Index = (own − others) / (|own| + |others|), "
        "others = mean over the 16 other languages.",
    ]}  # fmt: skip
    b = args.budget
    figures: dict[str, list[tuple[str, str, Any]]] = {}
    if "main" in parts:
        main = parts["main"]
        figures["main"] = [
            ("ablation-matrices", "ΔNLL matrices of CRANE, LAPE and random sets",
             plots.ablation_matrices({m: main[m] for m in ("crane", "lape")})),
            ("selectivity", "Selectivity index per language and method",
             plots.selectivity_chart(main)),
        ]  # fmt: skip
        figures["layers"] = [
            ("counts-crane", "CRANE's neurons per layer and language",
             plots.neuron_counts(science.neurons("crane", b))),
            ("crane-specificity", "CRANE specificity per layer, set marked",
             plots.neuron_heatmap(science.stats(), "crane", specificity=True,
                                  neurons=science.neurons("crane", b))),
            ("method-overlap", "Jaccard overlap between the methods' sets",
             plots.method_overlap({m: science.neurons(m, b) for m in METHODS})),
        ]  # fmt: skip
        table = pd.DataFrame({m: summary_row(x) for m, x in parts["main"].items()}).T
        per_lang = pd.DataFrame({m: x.selectivity()["index"] for m, x in parts["main"].items()})
        seeds = min(len(x.config.get("seeds", [])) for x in parts["main"].values())
        blocks["main"] = [
            f"Means over the 17 languages at {b * 100:g} % of all neurons per language "
            f"({round(b * spec.n_neurons)} neurons); random own / others = the same for random sets of "
            f"the same per-layer sizes ({seeds} seed{'s' if seeds != 1 else ''}):", "", fmt(table), "",
            "Selectivity index per language:", "", fmt(per_lang, 2), "",
            "CRANE's ΔNLL matrix (nats/token; rows masked, columns evaluated):", "",
            fmt(parts["main"]["crane"].delta(), 2),
        ]  # fmt: skip
        layers = pd.DataFrame({
            m: science.neurons(m, b).overlap_counts().query("layer != 'all'")
            .groupby("layer")["selected"].sum() for m in METHODS})  # fmt: skip
        blocks["layers"] = [f"Neurons per layer, summed over the 17 sets of {b * 100:g} %:", "",
                            fmt(layers, 0)]  # fmt: skip
    if "sweep" in parts:
        table = sweep_table(parts["sweep"])
        order = {m: i for i, m in enumerate(METHODS)}
        table = table.sort_values(
            ["method", "budget"], key=lambda c: c.map(order) if c.name == "method" else c
        )
        table["budget"] = [f"{x * 100:g} %" for x in table["budget"]]
        blocks["sweep"] = [
            "Means over the 17 languages (neurons = mean set size per language):", "",
            fmt(table.set_index("method")),
        ]  # fmt: skip
        figures["sweep"] = [("budget-sweep", "Budget sweep", budget_sweep(parts["sweep"]))]
    if "variants" in parts:
        variants = {k: summary_row(x) for k, x in parts["variants"].items()}
        jac = science.neurons("crane", b).jaccard(science.neurons("crane", b, "cp"))
        blocks["variants"] = [
            fmt(pd.DataFrame(variants).T), "",
            "Jaccard overlap per language of the CRANE sets by AttnLRP and by CP-LRP's "
            'attention rule only (attention="cp-attention"): '
            + ", ".join(f"{x} {jac.loc[x, x]:.2f}" for x in jac.index),
        ]  # fmt: skip
    if "rescaling" in parts:
        frame = pd.DataFrame(parts["rescaling"])
        frame = frame.set_axis(frame.index.astype(int)).sort_index()
        frame.index.name = "layer"
        blocks["rescaling"] = [
            "rms of a layer's MLP output without the set's neurons of that layer ÷ with them "
            "(clean activations, median over the tokens of each language's own held-out block, "
            "mean over the languages whose set has neurons in the layer; –: no such "
            "language). A post-MLP RMSNorm multiplies what survives by the inverse:", "",
            fmt(frame, 2),
        ]  # fmt: skip
    if "causality" in parts:
        blocks["causality"] = [
            f"Spearman ρ between each method's score and the exact ΔNLL of zero-ablating that "
            f"single neuron ({args.causal_dtype}), over {args.causal_neurons} randomly sampled "
            "neurons per layer (the language's own held-out block):", "",
            fmt(pd.DataFrame(parts["causality"]["table"]), 2),
        ]  # fmt: skip
    if "causality" in parts:
        figures["causality"] = [("estimate-vs-exact", "Estimates vs exact single-neuron ablation",
                                 plots.estimate_vs_exact_from_causality(parts["causality"],
                                                                        science.stats()))]  # fmt: skip
    if "benchmarks" in parts:
        bench = parts["benchmarks"]
        figures["benchmarks"] = [
            ("multiple-choice", "Multiple-choice accuracy under masking",
             plots.accuracy_chart(bench, key="mc")),
            ("generation", "Language of greedy continuations under masking",
             plots.accuracy_chart(bench, key="generation")),
        ]  # fmt: skip
        blocks["benchmarks"] = [
            f"Multiple-choice accuracy ({', '.join(f'{k} {v}' for k, v in bench['mc_items'].items())} items; chance 0.25), rows = masked "
            "set (method:language):", "", fmt(pd.DataFrame(bench["mc"]).T), "",
            "Share of greedy continuations identified as the prompt's language:", "",
            fmt(pd.DataFrame(bench["generation"]).T),
        ]  # fmt: skip
    drawn = [NamedFigure(f"{science.name}-{name}", caption, figure)
             for named in figures.values() for name, caption, figure in named]  # fmt: skip
    export_figures(drawn, path.parent / "figures", ["png"])
    for block, named in figures.items():
        links = [f"![{caption}](figures/{science.name}-{name}.png)" for name, caption, _ in named]
        blocks[block] = [*"\n\n".join(links).split("\n"), "", *blocks[block]]
    return {name: "\n".join(lines) + "\n" for name, lines in blocks.items()}


SECTIONS = {
    "command": "How this page was made",
    "main": "Selectivity of every method, all 17 languages",
    "layers": "Where the sets sit",
    "sweep": "Budget sweep: own vs others as the sets grow",
    "variants": "Zero- vs mean-ablation, AttnLRP vs CP-LRP (attention only)",
    "rescaling": "What the post-feedforward norm does to the surviving neurons",
    "causality": "Causality: scores vs exact single-neuron ablation",
    "benchmarks": "Benchmarks under masking (en, zh, vi)",
}


def write_docs(science: Science, path: Path, parts: dict[str, Any]) -> None:
    """Fill the page's generated blocks; hand-written text around them stays.

    A missing page is created with one heading and one empty block per section.
    """
    if not path.is_file():
        skeleton = [f"# Results on a real LLM: {science.args.model}", ""]
        for name, heading in SECTIONS.items():
            skeleton += [f"## {heading}", "", f"<!-- {name}: generated by "
                         "scripts/science_llm.py --write-docs -->", f"<!-- /{name} -->", ""]  # fmt: skip
        write_text(path, "\n".join(skeleton))
    for name, content in _blocks(science, path, parts).items():
        update_marked_block(path, name, content)
    log.info("wrote %s", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--out", default=None, help="default $CRANE_LENS_HOME/science/MODEL")
    parser.add_argument("--max-tokens", type=int, default=1024, help="train tokens per language")
    parser.add_argument("--eval-tokens", type=int, default=256, help="held-out tokens per language")
    parser.add_argument("--batch-size", type=int, default=4, help="statistics blocks per pass")
    parser.add_argument("--budget", type=float, default=0.001, help="main budget per language")
    parser.add_argument(
        "--sweep", default="0.001,0.01,0.003=crane+lape",
        help="budgets of stage 3; BUDGET=m1+m2 restricts one budget to some methods",
    )  # fmt: skip
    parser.add_argument("--sweep-methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=1, help="random control sets")
    parser.add_argument("--causal-layers", default="0,6,11,17")
    parser.add_argument("--causal-neurons", type=int, default=32)
    parser.add_argument("--causal-dtype", default="float32", help="dtype of stage 5's ablations")
    parser.add_argument("--mc-items", type=int, default=60)
    parser.add_argument("--stages", default="1,2,3,4,5,6")
    parser.add_argument("--write-docs", type=Path, default=None)
    args = parser.parse_args(argv)
    args.sweep_text = args.sweep
    args.sweep = [parse_budget(x) for x in args.sweep.split(",")]
    args.sweep_methods = args.sweep_methods.split(",")
    args.causal_layers = [int(x) for x in args.causal_layers.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stages = {int(s) for s in args.stages.split(",")}
    if args.write_docs:
        check_exporter()  # the figures need kaleido and a browser: say so before hours of work
    science = Science(args)
    log.info("output folder %s; ablation rows per pass %d", science.out, science.rows)
    parts: dict[str, Any] = {}
    if 1 in stages:
        science.stats("main")
        science.stats("cp")
    if 2 in stages:
        parts["main"] = science.main_matrices()
    if 3 in stages:
        parts["sweep"] = science.sweep()
    if 4 in stages:
        parts["variants"] = science.variants()
        parts["rescaling"] = science.rescaling()
    if 5 in stages:
        parts["causality"] = science.causality()
    if 6 in stages:
        parts["benchmarks"] = science.benchmarks()
    if args.write_docs:
        write_docs(science, args.write_docs, parts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
