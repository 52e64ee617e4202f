"""A study's results page: generated blocks between ``<!-- name: ... -->`` markers, hand-written
text around them kept; figures exported beside the page."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_lens.study.stages import MAIN_METHODS, VARIANTS
from crane_lens.utils.io import write_text
from crane_lens.utils.markdown import update_marked_block

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.evaluation.ablation import AblationMatrix
    from crane_lens.study.run import StudyResult

log = logging.getLogger(__name__)

SECTIONS = {
    "command": "How this page was made",
    "comparison": "Selectivity of every method",
    "crane-matrix": "CRANE's ablation matrix, language by language",
    "layers": "Where the sets sit, exclusive or shared",
    "stability": "How stable the sets are",
    "sweep": "Budget sweep: own vs others as the sets grow",
    "pool": "Selected against three languages or against all",
    "variants": "Zero- vs mean-ablation, LRP rules and targets",
    "causality": "Causality: scores vs exact single-neuron ablation",
    "benchmarks": "Benchmarks under masking",
    "steering": "Steering: are the sets enough to switch the language?",
    "transfer": "Base → chat transfer",
}


def fmt(frame: pd.DataFrame | pd.Series, digits: int = 3) -> str:
    """A markdown table; NaN (not measured) as a dash; set sizes as :func:`set_size` wrote them."""
    shown = frame.astype(object).where(frame.notna(), None)
    columns = list(getattr(frame, "columns", []))
    # tabulate would parse "37" back into a float and print 37.000 (column 0 is the index)
    as_text = [1 + columns.index(c) for c in columns if c == "neurons/lang"]
    return shown.to_markdown(
        floatfmt=f".{digits}f", missingval="–", disable_numparse=as_text or False
    )


def with_interval(value: float, low: float, high: float, digits: int = 3) -> str:
    """``"0.512 [0.431, 0.598]"``; the value alone where no interval exists."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


SELECTIVITY_COLUMNS = {
    "own": "own ΔNLL [95 % CI]",
    "others": "others ΔNLL [95 % CI]",
    "index": "index [95 % CI]",
}


def intervals(row: Mapping[str, Any], keys: Iterable[str], digits: int = 3) -> dict[str, str]:
    """Each of ``keys`` of a summary row as :func:`with_interval` writes it, its interval from
    ``<key>_low`` and ``<key>_high`` (the value alone where the row has none).

    Example:
        >>> intervals({"own": 1.5, "own_low": 1.25, "own_high": 1.75, "index": 0.5}, ["own", "index"], 2)
        {'own': '1.50 [1.25, 1.75]', 'index': '0.50'}
    """
    nan = float("nan")
    return {k: with_interval(row[k], row.get(f"{k}_low", nan), row.get(f"{k}_high", nan), digits)
            for k in keys}  # fmt: skip


def selectivity_columns(row: Mapping[str, Any], digits: int = 3) -> dict[str, str]:
    """Own, others and index of a summary row with their intervals, under the tables' headers."""
    found = intervals(row, SELECTIVITY_COLUMNS, digits)
    return {SELECTIVITY_COLUMNS[k]: text for k, text in found.items()}


def set_size(mean: float) -> str:
    """A mean set size as people count it, whole where every set has the same size.

    Example:
        >>> set_size(37.0), set_size(36.588)
        ('37', '36.6')
    """
    return f"{mean:.0f}" if float(mean).is_integer() else f"{mean:.1f}"


def bracketed(matrix: AblationMatrix) -> pd.DataFrame:
    """ΔNLL as text, in brackets where its 95 % interval includes 0."""
    from crane_lens.plots.matrix import uncertain_cells

    delta, marks = matrix.delta(), uncertain_cells(matrix, "delta")
    text = delta.map(lambda v: f"{v:.2f}")
    return text if marks is None else text.where(~marks.astype(bool), "(" + text + ")")


def summary_table(matrices: dict[str, AblationMatrix]) -> pd.DataFrame:
    """One row per set: size, own / others / index with their 95 % intervals, random sets and
    how many languages' sets hurt their language more than all their random sets."""
    import pandas as pd

    rows = {}
    for label, m in matrices.items():
        s, sel = m.summary(), m.selectivity()
        row: dict[str, Any] = {"neurons/lang": set_size(s["neurons"]), **selectivity_columns(s),
                               "random own": s.get("random_own", float("nan"))}  # fmt: skip
        if "p_value" in sel:
            smallest = 1 / (sel["n_random"].max() + 1)
            row["above all random sets"] = (
                f"{int((sel['p_value'] <= smallest + 1e-12).sum())} of {len(sel)}"
            )
        rows[label] = row
    return pd.DataFrame(rows).T


def _command(result: StudyResult, command: str) -> list[str]:
    c, stats = result.config, result.parts.get("stats", {}).get("main")
    lines = ["```bash", command, "```", ""]
    if stats is not None:
        spec = stats.spec
        lines.append(
            f"Model: {spec.n_layers} layers × {spec.d_mlp} MLP neurons ({spec.n_neurons:,} in "
            f"all), {spec.dtype}. "
        )
    n_blocks = c.eval_tokens_per_lang // c.eval_seq_len
    lines[-1 if stats is not None else len(lines) :] = [
        (lines[-1] if stats is not None else "")
        + f"Languages: {', '.join(result.langs)} ({len(result.langs)}). Statistics: "
        f"{c.max_tokens_per_lang:,} training tokens per language ({c.seq_len}-token blocks) of "
        f"the built-in corpus. ΔNLL: {c.eval_tokens_per_lang:,} held-out tokens per language in "
        f"{n_blocks} blocks of {c.eval_seq_len}, zero-ablation unless said otherwise; 95 % "
        "intervals: bootstrap over those blocks, paired across conditions. Main budget "
        f"{c.budget * 100:g} % of all MLP neurons per language; {c.random_seeds} random sets "
        "of the same per-layer sizes per language for CRANE and both LAPE budgets (evaluated "
        + ("on every language" if c.random_scope() == "all" else "on their own language only")
        + "). Index = (own⁺ − others⁺) / (own⁺ + others⁺), x⁺ = max(x, 0)."
    ]
    if result.missing:
        lines += ["", f"Not finished yet: {', '.join(result.missing)} (the command resumes)."]
    return lines


def blocks(result: StudyResult, command: str) -> dict[str, str]:
    """The generated text of every section that has results."""
    import pandas as pd

    out: dict[str, list[str]] = {"command": _command(result, command)}
    matrices, parts, c = result.matrices, result.parts, result.config
    if matrices:
        index = pd.DataFrame({k: m.selectivity()["index"] for k, m in matrices.items()})
        own = pd.DataFrame({k: m.selectivity()["own"] for k, m in matrices.items()})
        compared = index[[m for m in MAIN_METHODS if m in index]]
        won = (compared.max(axis=1).to_numpy()[:, None] == compared.to_numpy()).sum(axis=0)
        out["comparison"] = [
            "Means over the languages, each with its 95 % interval; 'above all random sets': "
            "languages whose set raised their own NLL more than every one of its random sets "
            f"(p = 1/{c.random_seeds + 1}, the smallest p-value {c.random_seeds} random sets "
            "allow). LAPE's sets are matched to the others' mean size (the smallest total whose "
            "sets average k per language); 'top_rate 0.01' is LAPE's published budget.", "",
            fmt(summary_table(matrices)), "",
            "Languages won (highest index among the methods' main sets; a tie counts for each): "
            + ", ".join(f"{m} {n}" for m, n in zip(compared.columns, won, strict=True)) + ".", "",
            "Selectivity index per language:", "", fmt(index, 2), "",
            "Own-language ΔNLL per language:", "", fmt(own, 2),
        ]  # fmt: skip
    if "crane" in matrices:
        crane = matrices["crane"]
        sel = crane.selectivity()
        columns = [x for x in ("n_neurons", "own", "own_low", "own_high", "others", "index",
                               "index_low", "index_high", "random_own", "vs_random",
                               "p_value") if x in sel]  # fmt: skip
        out["crane-matrix"] = [
            "ΔNLL (nats/token); rows: the language whose CRANE set is zero-ablated; columns: the "
            "evaluated language; in brackets: its 95 % interval includes 0.", "",
            fmt(bracketed(crane), 2), "",
            "Per language: own ΔNLL and the index with their 95 % intervals, the others' mean, random sets of "
            "the same per-layer sizes (mean), vs_random = own − random own, and the empirical "
            f"p-value (1 + #{{random ≥ own}}) / (1 + {c.random_seeds}):", "",
            fmt(sel[columns]),
        ]  # fmt: skip
    if "stats" in parts:
        neurons = {m: result.neurons(m) for m in [*MAIN_METHODS, "crane (top, no specificity)",
                                                  "lape (top_rate 0.01)"]}  # fmt: skip
        overlap = []
        for label, sets in neurons.items():
            counts = sets.overlap_counts().query("layer == 'all'")
            overlap.append({"set": label, "selected": counts.selected.sum(),
                            "exclusive": counts.exclusive.sum(), "shared": counts.shared.sum(),
                            "shared %": 100 * counts.shared.sum() / max(1, counts.selected.sum())})  # fmt: skip
        per_layer = pd.DataFrame({
            m: neurons[m].overlap_counts().query("layer != 'all'").groupby("layer")["selected"].sum()
            for m in MAIN_METHODS})  # fmt: skip
        jaccard = pd.Series({label: float(pd.Series(
            {x: neurons["crane"].jaccard(s).loc[x, x] for x in neurons["crane"].langs}).mean())
            for label, s in neurons.items() if label != "crane"}, name="Jaccard with CRANE")  # fmt: skip
        out["layers"] = [
            "Selected, exclusive (one language only) and shared neurons, summed over the "
            "languages' sets:", "", fmt(pd.DataFrame(overlap).set_index("set"), 1), "",
            "Neurons per layer, summed over the languages' sets:", "", fmt(per_layer, 0), "",
            "Jaccard overlap of CRANE's set with each other set (mean over languages):", "",
            fmt(jaccard.to_frame(), 2),
        ]  # fmt: skip
    if "stability" in parts:
        stability = parts["stability"]
        table = stability.summary().rename(columns={
                "median": "split-half median", "min": "lowest", "min_lang": "lowest language",
                "tokens": "tokens per half", "converged": "at 1/4 vs all"})  # fmt: skip
        out["stability"] = [
                "Each method selected again, at the same budget, on two disjoint halves of the "
                "training text (interleaved blocks) and on its first 1/16 … 1/2, from the per-part "
                "sums of the one statistics pass; Jaccard index of the sets (chance: random sets of "
                "the same sizes):", "", *[f"* {line}" for line in stability.describe().splitlines()],
                "", fmt(table, 3), "", "Split-half Jaccard per language:", "",
                fmt(stability.split_half(), 2),
            ]  # fmt: skip
    if len(parts.get("sweep", {})) > 1:
        rows = []
        for budget, by_label in sorted(parts["sweep"].items()):
            for label, m in by_label.items():
                s = m.summary()
                rows.append({"set": label, "budget": f"{budget * 100:g} %",
                             "neurons/lang": set_size(s["neurons"]), **selectivity_columns(s)})  # fmt: skip
        out["sweep"] = ["Means over the languages:", "",
                        fmt(pd.DataFrame(rows).sort_values("set", kind="stable").set_index("set"))]  # fmt: skip
    if parts.get("pool"):
        pooled = sorted(parts["pool"].items())
        langs = pooled[0][1]["all"].masked
        rows = []
        for budget, found in pooled:
            for against, key in ((f"all {len(result.langs)}", "all"), ("these only", "paper")):
                sel = found[key].selectivity()
                for x in langs:
                    r = sel.loc[x]
                    rows.append({"budget": f"{budget * 100:g} %", "selected against": against,
                                 "set": x, "neurons": int(r["n_neurons"]),
                                 **selectivity_columns(r, 2),
                                 "Jaccard": f"{found['jaccard'].loc[x, x]:.2f}"})  # fmt: skip
        out["pool"] = [
            f"CRANE's sets of {', '.join(langs)} selected against all the study's languages "
            f"(as everywhere else on this page) and against these {len(langs)} only (a run of "
            "the paper's languages, from the same statistics), each masked on the held-out text "
            f"of the {len(langs)}: own ΔNLL, mean ΔNLL on the other {len(langs) - 1} and the "
            "index among them (no random sets); Jaccard: overlap of the two selections of a "
            "language.", "", pd.DataFrame(rows).set_index("budget").to_markdown(),
        ]  # fmt: skip
    variants = {f"{k} (zero-ablation)": matrices[k] for k in ("crane", "lape") if k in matrices}
    variants |= {f"{k} (mean-ablation)": m for k, m in parts.get("mean", {}).items()}
    variants |= {k: matrices[k] for k in ("crane (CP-LRP)", "crane (logprob target)")
                 if k in matrices}  # fmt: skip
    if len(variants) > 2:
        lines = [fmt(summary_table(variants)), ""]
        if "stats" in parts:
            crane = result.neurons("crane")
            for label in ("crane (CP-LRP)", "crane (logprob target)"):
                with_stats = VARIANTS[label].stats
                if with_stats in parts["stats"]:
                    jac = crane.jaccard(result.neurons(label))
                    lines.append(f"Jaccard overlap per language of CRANE's sets (AttnLRP, gold "
                                 f"logit) with {label}: "
                                 + ", ".join(f"{x} {jac.loc[x, x]:.2f}" for x in jac.index) + ".")  # fmt: skip
                    lines.append("")
        out["variants"] = [
            "Mean-ablation replaces each masked neuron by its mean activation over the training "
            "tokens of all languages. CRANE (CP-LRP) uses lxt's full CP-LRP rules "
            "(attention=\"cp\": attention weights and the MLP gate detached) instead of AttnLRP; "
            "CRANE (logprob target) explains the gold token's log-probability instead of its "
            "logit.", "", *lines,
        ]  # fmt: skip
    if "causality" in parts:
        found = parts["causality"]
        n = len(next(iter(found["raw"].values()))["neurons"])
        out["causality"] = [
            f"Spearman ρ between each method's score and the exact ΔNLL of zero-ablating that "
            f"single neuron, over {n} randomly sampled neurons per layer (layers "
            f"{', '.join(map(str, found['layers']))}) on the language's first held-out tokens "
            "(up to 512); crane_abs = |CRANE relevance|:", "", fmt(pd.DataFrame(found["table"]), 2),
        ]  # fmt: skip
    if "benchmarks" in parts:
        bench = parts["benchmarks"]
        items = ", ".join(f"{k} {v}" for k, v in bench["mc_items"].items())
        worst = 1 / math.sqrt(min(bench["mc_items"].values()))
        out["benchmarks"] = [
            f"Multiple-choice accuracy ({items} items; chance 0.25; standard error up to "
            f"{worst / 2:.2f}), rows = masked set (method:language):", "",
            fmt(pd.DataFrame(bench["mc"]).T), "",
            "Share of greedy continuations identified as the prompt's language (8 prompts per "
            "language):", "", fmt(pd.DataFrame(bench["generation"]).T),
        ]  # fmt: skip
    if parts.get("steering"):
        rows = []
        for label, m in parts["steering"].items():
            summary = m.summary()
            for _, r in summary[summary.target == "all"].iterrows():
                if r["condition"] == "none" and rows:
                    continue  # the unsteered model: once
                iv = intervals(r, ("success", "stay", "nll"), 2)
                names = {"none": "unsteered", "selected": label,
                         "random": f"random ({label}'s sizes)",
                         "selected − random": f"{label} − random"}  # fmt: skip
                rows.append({"set": names[r["condition"]],
                             "strength": "–" if r["condition"] == "none" else f"{r['strength']:g}",
                             "success [95 % CI]": iv["success"], "stay [95 % CI]": iv["stay"],
                             "NLL [95 % CI]": iv["nll"], "distinct-2": f"{r['distinct_2']:.2f}",
                             "n": int(r["n"])})  # fmt: skip
        first = next(iter(parts["steering"].values()))
        out["steering"] = [
            f"Greedy continuations ({first.config['max_new_tokens']} tokens at most) of "
            f"{first.config['n_prompts']} held-out prompts per language in "
            f"{', '.join(first.sources)}, steered towards each other one of them with the "
            "target's set (`replace` mode: h' = (1 − s)·h + s·v, v the target's mean "
            "activation — Kojima's median for Kojima's sets; s = 1 fixes the neurons to v, "
            "larger s pushes past it). success: the continuation is identified as the target "
            "language; stay: as "
            "the prompt's; NLL: nats per token of the continuation as a text of its own under "
            "the unsteered model (fluency); distinct-2: distinct token bigrams ÷ bigrams. Random "
            f"sets: {first.config['random_seeds']} per target, of the same per-layer sizes, steered the same "
            "way. Means over every (prompt language, target) pair; 95 % intervals: bootstrap "
            "over prompts.", "", fmt(pd.DataFrame(rows).set_index("set")),
        ]  # fmt: skip
    if parts.get("transfer"):
        transfer = parts["transfer"]
        conditions = ("base sets on base", "base sets on chat", "chat sets on chat")
        lines = ["Means over the languages (rows: which model's CRANE sets are masked in which "
                 "model):", "", fmt(summary_table({c: transfer[c] for c in conditions})), ""]  # fmt: skip
        lines += ["Jaccard overlap of the base model's and the chat model's CRANE sets (rows: "
                  "base, columns: chat):", "", fmt(transfer["jaccard"], 2)]  # fmt: skip
        out["transfer"] = lines
    return {name: "\n".join(text) for name, text in out.items()}


def write_page(result: StudyResult, path: str | Path, command: str) -> Path:
    """Fill ``path``'s generated blocks from ``result`` and export its figures into
    ``figures/`` beside it (PNG; needs kaleido and a Chromium). A missing page is created with
    one heading and block per section; a section missing from an existing page is appended."""
    from crane_lens.report.export import export_figures
    from crane_lens.study.figures import study_figures

    path = Path(path)
    if not path.is_file():
        write_text(path, f"# Results: {result.config.model}\n")
    text = {name: body for name, body in blocks(result, command).items()}
    figures = study_figures(result)
    export_figures([f for named in figures.values() for f in named], path.parent / "figures")
    for name, named in figures.items():
        links = "\n\n".join(f"![{f.caption}](figures/{f.name}.png)" for f in named)
        text[name] = links + ("\n\n" + text[name] if name in text else "")
    for name in SECTIONS:
        if name not in text:
            continue
        if f"<!-- {name}:" not in path.read_text(encoding="utf-8"):
            write_text(path, path.read_text(encoding="utf-8").rstrip("\n") + f"\n\n## "
                       f"{SECTIONS[name]}\n\n<!-- {name}: generated by crane-lens study "
                       f"--write-docs -->\n<!-- /{name} -->\n")  # fmt: skip
        update_marked_block(path, name, "\n" + text[name] + "\n")
    log.info("wrote %s", path)
    return path
