"""Every figure of a study, by the page section it illustrates (the page and notebook 05 both
draw them from here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from crane_lens.study.stages import MAIN_METHODS

if TYPE_CHECKING:
    from crane_lens.plots import NamedFigure
    from crane_lens.study.run import StudyResult


def study_figures(result: StudyResult) -> dict[str, list[NamedFigure]]:
    """The figures of every finished stage of ``result``, by section of the results page.

    Names are ``<model>-<figure>`` (``crane-lens study --write-docs`` exports them as PNGs).

    Example:
        >>> import crane_lens as cl, tempfile
        >>> config = cl.StudyConfig(model="crane-tiny", langs=["en", "vi"],
        ...                         max_tokens_per_lang=256, stages=["stats"])
        >>> figures = study_figures(cl.study(config, tempfile.mkdtemp(), progress=False))
        >>> [f.name for f in figures["layers"]]
        ['crane-tiny-counts-lape', 'crane-tiny-crane-specificity', 'crane-tiny-method-overlap']
    """
    from crane_lens import plots
    from crane_lens.plots import NamedFigure

    model = Path(result.config.model).name
    out: dict[str, list[NamedFigure]] = {}

    def add(section: str, name: str, caption: str, figure: object) -> None:
        out.setdefault(section, []).append(NamedFigure(f"{model}-{name}", caption, figure))

    matrices, parts = result.matrices, result.parts
    if "crane" in matrices and "lape" in matrices:
        add("crane-matrix", "ablation-matrices", "ΔNLL matrices of CRANE, LAPE and random sets",
            plots.ablation_matrices({m: matrices[m] for m in ("crane", "lape")}))  # fmt: skip
    compared = {m: matrices[m] for m in MAIN_METHODS if m in matrices}
    if compared:
        add("comparison", "selectivity", "Selectivity index per language and method",
            plots.selectivity_chart(compared))  # fmt: skip
    if "stats" in parts:
        neurons = {m: result.neurons(m) for m in MAIN_METHODS}
        add("layers", "counts-lape", "LAPE's neurons per layer and language",
            plots.neuron_counts(neurons["lape"]))  # fmt: skip
        add("layers", "crane-specificity", "CRANE specificity per layer, set marked",
            plots.neuron_heatmap(result.stats(), "crane", specificity=True,
                                 neurons=neurons["crane"]))  # fmt: skip
        add("layers", "method-overlap", "Jaccard overlap between the methods' sets",
            plots.method_overlap(neurons))  # fmt: skip
    if "stability" in parts:
        add("stability", "stability", "How stable the sets are across samples of the training "
            "text", plots.stability_figure(parts["stability"]))  # fmt: skip
    if len(parts.get("sweep", {})) > 1:
        add("sweep", "budget-sweep", "Budget sweep: own vs others as the sets grow",
            plots.budget_sweep(parts["sweep"]))  # fmt: skip
    if "causality" in parts:
        add("causality", "estimate-vs-exact", "Estimates vs exact single-neuron ablation",
            plots.estimate_vs_exact_from_causality(parts["causality"], result.stats()))  # fmt: skip
    if "benchmarks" in parts:
        bench = parts["benchmarks"]
        add("benchmarks", "multiple-choice", "Multiple-choice accuracy under masking",
            plots.accuracy_chart(bench, key="mc"))  # fmt: skip
        add("benchmarks", "generation", "Language of greedy continuations under masking",
            plots.accuracy_chart(bench, key="generation"))  # fmt: skip
    if parts.get("steering"):
        steered = parts["steering"]
        add("steering", "steering-success", "Steering: share of continuations in the target "
            "language", plots.steering_success(steered))  # fmt: skip
        add("steering", "steering-strength", "Steering strength: success against fluency",
            plots.steering_strength(steered))  # fmt: skip
    if parts.get("transfer"):
        transfer = parts["transfer"]
        conditions = ("base sets on base", "base sets on chat", "chat sets on chat")
        add("transfer", "transfer", "Base → chat transfer of the CRANE sets",
            plots.transfer_chart({c: transfer[c] for c in conditions}, transfer["jaccard"]))  # fmt: skip
    return out
