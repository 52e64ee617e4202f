from __future__ import annotations

from pathlib import Path

from crane_lens.pipeline import RunConfig, RunResult
from crane_lens.plots import run_figures
from crane_lens.plots.matrix import PAGE_WIDTH, text_px
from crane_lens.selection import select_language_neurons
from tests.plots.test_heatmap import toy_stats
from tests.plots.test_matrix import LANGS17, toy_matrix


def test_run_figures_in_report_order(tmp_path: Path) -> None:
    langs = ["en", "zh", "vi"]
    stats = toy_stats(langs, 4, 128)
    neurons = {"crane": select_language_neurons(stats, "crane", k=12),
               "activation_probability": select_language_neurons(
                   stats, "activation_probability", k=12)}  # fmt: skip
    matrices = {"crane": toy_matrix("crane", langs, seeds=2), "activation_probability":
                toy_matrix("activation_probability", langs)}  # fmt: skip
    result = RunResult(tmp_path, RunConfig(langs=langs), stats, neurons, matrices)
    figures = run_figures(result)
    # a language-overlap figure only for a method whose languages share neurons (not CRANE's)
    overlapping = [f"language-overlap-{m}" for m, n in neurons.items()
                   if (n.membership() > 1).any()]  # fmt: skip
    assert "language-overlap-crane" not in overlapping
    assert [f.name for f in figures] == ["counts-crane", "counts-activation_probability",
                                         "crane-specificity", "ablation-matrices", "selectivity",
                                         *overlapping, "method-overlap"]  # fmt: skip
    assert all(f.caption and f.figure.layout.width and f.figure.layout.height for f in figures)
    counts, spec, mats, sel = figures[0], figures[2], figures[3], figures[4]
    assert counts.figure.data[0].z.T.tolist() == [neurons["crane"].layer_counts(x) for x in langs]
    marks = [t for t in spec.figure.data if t.type == "scatter" and t.mode == "text"]
    assert [sum(n for _, n in t.customdata) for t in marks] == [12, 12, 12]  # crane's set
    assert "specificity" in spec.figure.layout.coloraxis.colorbar.title.text
    assert [a.text for a in mats.figure.layout.annotations] == [
        "crane",
        "activation_probability",
        "random (mean of 2 seeds)",
    ]
    assert sel.figure.layout.yaxis.title.text == "index"
    # a run without matrices or CRANE still gets its count figures
    bare = RunResult(tmp_path, RunConfig(langs=langs), stats,
                     {"activation_probability": neurons["activation_probability"]}, {})  # fmt: skip
    assert [f.name for f in run_figures(bare)] == ["counts-activation_probability",
                                                   "crane-specificity", *overlapping[-1:]]  # fmt: skip


def test_every_figure_of_a_17_language_run_fits_the_report(tmp_path: Path) -> None:
    """The report's content column is PAGE_WIDTH wide (a 1400-px window): no figure is wider, and
    no title line runs past its figure's edge (long ones wrap)."""
    stats = toy_stats(LANGS17, 4, 1024)
    neurons = {"crane": select_language_neurons(stats, "crane", k=41),
               "lape": select_language_neurons(stats, "activation_probability", k=60)}  # fmt: skip
    matrices = {m: toy_matrix(m, LANGS17, seeds=2) for m in neurons}
    result = RunResult(tmp_path, RunConfig(langs=LANGS17), stats, neurons, matrices)
    figures = run_figures(result)
    assert {"crane-specificity", "ablation-matrices", "selectivity"} <= {f.name for f in figures}
    for figure in figures:
        layout = figure.figure.layout
        assert layout.width <= PAGE_WIDTH, (figure.name, layout.width)
        lines = [*(layout.title.text or "").split("<br>"),
                 *(layout.title.subtitle.text or "").split("<br>")]  # fmt: skip
        assert all(text_px(x, 12) + 30 <= layout.width for x in lines[1:]), figure.name
