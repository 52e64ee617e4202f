"""The figures of one finished run, in the order a report shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.runs import RunResult


@dataclass(frozen=True)
class NamedFigure:
    """A figure with the file stem it is exported under and a one-sentence caption.

    Attributes:
        name: File stem (``crane-lens figures`` writes ``<name>.png``), lower-case, no spaces.
        caption: What the figure shows and how to read it, one or two sentences.
        figure: The plotly figure.
    """

    name: str
    caption: str
    figure: go.Figure


def run_figures(result: RunResult) -> list[NamedFigure]:
    """Every figure that applies to a finished run (``crane-lens report`` and ``figures``).

    In order: where each method's neurons are (per layer and language, exclusive or shared);
    CRANE's language specificity per layer with CRANE's set marked; the ablation matrices side
    by side with the random control; selectivity per language against random sets; how stable
    the sets are across samples of the training text (when the statistics allow); Jaccard
    overlap between the languages' sets of a method (where they overlap) and between methods.

    Args:
        result: A run, e.g. ``RunResult.load("results/<run-name>")``.

    Returns:
        The figures in report order.
    """
    from crane_lens.plots.counts import neuron_counts
    from crane_lens.plots.heatmap import neuron_heatmap
    from crane_lens.plots.matrix import ablation_matrices
    from crane_lens.plots.overlap import language_overlap, method_overlap
    from crane_lens.plots.selectivity import selectivity_chart

    figures = [
        NamedFigure(f"counts-{method}",
                    f"Where the {method} neurons are: set size per layer and language (numbers "
                    "in the cells); above, each language's set split into exclusive and shared "
                    "neurons; right, the same split per layer.", neuron_counts(neurons))
        for method, neurons in result.neurons.items()
    ]  # fmt: skip
    if "crane" in result.stats.statistics:
        crane = result.neurons.get("crane")
        figures.append(NamedFigure(
            "crane-specificity",
            "CRANE specificity (a neuron's share of the language's relevance minus its largest "
            "share in another language) of each layer's neurons, ranked best first"
            + ("; black lines: the ranks of CRANE's selected neurons, with their count per "
               "layer." if crane is not None else "."),
            neuron_heatmap(result.stats, "crane", neurons=crane, specificity=True),
        ))  # fmt: skip
    if result.matrices:
        figures.append(NamedFigure(
            "ablation-matrices",
            "ΔNLL when each language's set is masked (rows) on each language (columns), per "
            "method and for random sets of the same per-layer sizes; a red framed diagonal "
            "means language-specific.", ablation_matrices(result.matrices),
        ))  # fmt: skip
        figures.append(NamedFigure(
            "selectivity",
            "Selectivity index and own-language ΔNLL per language and method (filled), against "
            "random sets of the same per-layer sizes (open: mean ± std over seeds).",
            selectivity_chart(result.matrices),
        ))  # fmt: skip
    if result.stability is not None:
        from crane_lens.plots.stability import stability_figure

        figures.append(NamedFigure(
            "stability",
            "How stable are these sets: the Jaccard index between the sets selected on two "
            "disjoint halves of the training text, per language (left; dashed: chance), and "
            "between the sets selected on the first 1/16 … 1/2 of the text and on all of it "
            "(right, median over languages).", stability_figure(result.stability),
        ))  # fmt: skip
    for method, neurons in result.neurons.items():
        if bool((neurons.membership() > 1).any()):  # disjoint sets (CRANE's) overlap nowhere
            figures.append(NamedFigure(
                f"language-overlap-{method}",
                f"Jaccard overlap between the languages' {method} sets (shared neurons / "
                "neurons in either set).", language_overlap(neurons),
            ))  # fmt: skip
    if result.steering:
        from crane_lens.plots.steering import steering_strength, steering_success

        for mode in dict.fromkeys(str(m.config.get("mode")) for m in result.steering.values()):
            chosen = {label: m for label, m in result.steering.items()
                      if m.config.get("mode") == mode}  # fmt: skip
            figures.append(NamedFigure(
                f"steering-success-{mode}",
                f"Steering ({mode}): the share of greedy continuations of each prompt language "
                "(rows) identified as the language whose set steers (columns), per method and "
                "for random sets of the same sizes, at the largest strength.",
                steering_success(chosen),
            ))  # fmt: skip
            figures.append(NamedFigure(
                f"steering-strength-{mode}",
                f"Steering ({mode}) as the strength grows: success (left) and the NLL of the "
                "continuation under the unsteered model (right), means over every pair with "
                "95 % intervals; random sets dashed, the unsteered model dotted.",
                steering_strength(chosen),
            ))  # fmt: skip
    if len(result.neurons) > 1:
        figures.append(NamedFigure(
            "method-overlap",
            "Jaccard overlap between the methods' sets of the same language, mean over the "
            "languages.", method_overlap(result.neurons),
        ))  # fmt: skip
    return figures
