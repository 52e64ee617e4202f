from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import crane_lens as cl
from crane_lens.plots import (
    estimate_vs_exact,
    estimate_vs_exact_from_causality,
    estimate_vs_exact_from_stats,
)
from crane_lens.plots.causality import symlog
from crane_lens.utils.ranking import ranks, spearman
from tests.stats.test_engine import _blocks

Checkpoints = dict[str, Path]
RHO = re.compile(r"ρ = (-?\d\.\d\d) \(n = (\d+)\)")


def _rho(title: str) -> tuple[float, int]:
    match = RHO.search(title)
    assert match, title
    return float(match.group(1)), int(match.group(2))


def _data(n: int = 60) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str], list[str]]:
    """Exact effects spanning four decades, either sign; one estimate close, one noisy."""
    generator = torch.Generator().manual_seed(0)
    decades = torch.randint(-5, -1, (n,), generator=generator)
    exact = torch.randn(n, generator=generator) * 10.0**decades
    estimates = {"attribution": exact * 2 + 1e-5 * torch.randn(n, generator=generator),
                 "crane": torch.randn(n, generator=generator)}  # fmt: skip
    langs = [["en", "zh", "vi"][i % 3] for i in range(n)]
    layers = [f"layer {i % 2}" for i in range(n)]
    return exact, estimates, langs, layers


@pytest.mark.parametrize("scale", ["linear", "rank", "symlog"])
def test_each_panel_shows_its_points_and_their_spearman(scale: str) -> None:
    exact, estimates, langs, layers = _data()
    fig = estimate_vs_exact(exact, estimates, colour_by=langs, panel_by=layers,
                            scale=scale)  # type: ignore[arg-type]  # fmt: skip
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 4  # 2 methods × 2 layers, row by row
    for k, (method, layer) in enumerate([(m, f"layer {i}") for m in estimates for i in (0, 1)]):
        keep = torch.tensor([x == layer for x in layers])
        rho, n = _rho(titles[k])
        assert n == int(keep.sum()) and titles[k].startswith(f"<b>{method}</b> · {layer}")
        assert rho == round(spearman(estimates[method][keep], exact[keep]), 2)
        for lang in ("en", "zh", "vi"):  # ρ per colour group too
            sel = keep & torch.tensor([x == lang for x in langs])
            assert f"{lang} {spearman(estimates[method][sel], exact[sel]):.2f}" in titles[k]
        # The panel's points, put back together from its traces (one per language).
        traces = [t for t in fig.data if t.xaxis == f"x{k + 1 if k else ''}"]
        raw = torch.tensor([p for t in traces for p in t.customdata], dtype=torch.float64)
        order = torch.tensor([i for lang in ("en", "zh", "vi") for i in range(len(langs))
                              if keep[i] and langs[i] == lang])  # fmt: skip
        assert raw[:, 0].equal(estimates[method].double()[order])  # hover: the raw values
        assert raw[:, 1].equal(exact.double()[order])
        drawn_y = torch.tensor([v for t in traces for v in t.y], dtype=torch.float64)
        if scale == "linear":
            assert drawn_y.equal(exact.double()[order])
        elif scale == "rank":  # ranks within the panel: what ρ correlates
            where = {int(i): p for p, i in enumerate(keep.nonzero().flatten())}
            assert drawn_y.equal(ranks(exact[keep])[[where[int(i)] for i in order]])
        else:  # symlog is monotone: same order as the values, and ticks label true values
            assert torch.argsort(drawn_y).equal(torch.argsort(exact.double()[order]))
    assert fig.layout.showlegend and fig.layout.legend.title.text == "language"


def test_symlog_ticks_are_labelled_with_the_values_they_mark() -> None:
    exact, estimates, _, _ = _data()
    fig = estimate_vs_exact(exact, estimates, scale="symlog")
    axis = fig.layout.yaxis
    c = 10.0 ** torch.floor(torch.log10(exact.abs().median())).item()
    for at, label in zip(axis.tickvals, axis.ticktext, strict=True):
        value = float(label.replace("−", "-"))
        assert at == pytest.approx(float(symlog(torch.tensor([value]), c)), abs=1e-9)
    assert "0" in axis.ticktext and len(axis.tickvals) >= 3
    # Auto picks symlog for values spanning decades, linear for values that do not.
    assert estimate_vs_exact(exact, estimates).layout.yaxis.ticktext == axis.ticktext
    assert (
        estimate_vs_exact(torch.arange(1.0, 9.0), {"a": torch.arange(8.0)}).layout.yaxis.ticktext
        is None
    )
    with pytest.raises(ValueError, match="2 estimates for 3"):
        estimate_vs_exact([1.0, 2.0, 3.0], {"a": [1.0, 2.0]})


def test_from_stats_draws_exact_ablation_against_the_scores(tiny_checkpoints: Checkpoints) -> None:
    model = cl.load_model(tiny_checkpoints["llama"])
    stats = cl.compute_stats(model, _blocks(n_blocks=2), ["crane", "attribution", "ablation"],
                             ablation_layers=[1], progress=False)  # fmt: skip
    fig = estimate_vs_exact_from_stats(stats, scale="linear")
    assert len(fig.layout.annotations) == 2  # attribution and crane, layer 1 only
    for k, method in enumerate(["attribution", "crane"]):
        rho, n = _rho(fig.layout.annotations[k].text)
        assert n == 2 * stats.spec.d_mlp
        exact, estimate = stats.scores("ablation")[:, 1], stats.scores(method)[:, 1]
        assert rho == round(spearman(estimate.flatten(), exact.flatten()), 2)
        traces = [t for t in fig.data if t.xaxis == f"x{k + 1 if k else ''}"]
        for trace, lang in zip(traces, stats.langs, strict=True):
            i = stats.langs.index(lang)
            assert trace.name == lang
            assert torch.tensor(trace.x).equal(estimate[i].double())
            assert torch.tensor(trace.y).equal(exact[i].double())
    with pytest.raises(ValueError, match="no exact ablation"):
        estimate_vs_exact_from_stats(cl.compute_stats(model, _blocks(n_blocks=1), ["attribution"],
                                                      progress=False))  # fmt: skip


def test_from_causality_uses_the_sampled_neurons_per_token(tiny_checkpoints: Checkpoints) -> None:
    model = cl.load_model(tiny_checkpoints["llama"])
    stats = cl.compute_stats(model, _blocks(n_blocks=2), ["attribution"], progress=False)
    causal = {
        "en|0": {"neurons": [3, 1, 7, 20], "delta_nats": [1.0, -2.0, 4.0, 0.5], "tokens": 4},
        "vi|1": {"neurons": [5, 9, 2], "delta_nats": [0.3, 0.1, 0.2], "tokens": 2},
    }
    fig = estimate_vs_exact_from_causality({"raw": causal}, stats, ["attribution"], scale="linear")
    scores = stats.scores("attribution")
    for k, (key, run) in enumerate(causal.items()):
        lang, layer = key.split("|")
        trace = fig.data[k]
        assert trace.name == lang
        assert list(trace.y) == [d / run["tokens"] for d in run["delta_nats"]]
        expected = scores[stats.langs.index(lang), int(layer), run["neurons"]]
        assert torch.tensor(trace.x).equal(expected.double())
        # The science script's ρ per (language, layer): spearman(score, summed ΔNLL).
        rho, _ = _rho(fig.layout.annotations[k].text)
        assert rho == round(spearman(expected.double(), torch.tensor(run["delta_nats"])), 2)
