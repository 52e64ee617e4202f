"""Estimated vs exact effect of ablating single neurons, with Spearman's ρ per panel.

The exact effect is the ΔNLL of zero-ablating one neuron at a time: the ``ablation`` statistic of
:func:`crane_lens.compute_stats` (for its ``ablation_layers``), or the sampled neurons that
``crane-lens study`` stores in ``causality.json``
(``{"<lang>|<layer>": {"neurons": [...], "delta_nats": [...], "tokens": n}}``, ΔNLL summed over
``tokens`` scored tokens).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from crane_lens.plots.overlap import finish
from crane_lens.utils.ranking import ranks, spearman

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from crane_lens.stats.results import NeuronStats

Scale = Literal["auto", "symlog", "rank", "linear"]
EXACT = "exact ΔNLL (nats/token)"
PANEL_W, PANEL_H = 270, 250
Ticks = tuple[list[float], list[str]]
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf"]  # fmt: skip


def symlog(values: Float[Tensor, " n"], c: float) -> Float[Tensor, " n"]:
    """``sign(v)·log10(1 + |v|/c)``: linear within ±``c``, logarithmic beyond (sign kept).

    Example:
        >>> [round(v, 4) for v in symlog(torch.tensor([-9.0, 0.0, 0.5, 99.0]), 1.0).tolist()]
        [-1.0, 0.0, 0.1761, 2.0]
    """
    v = values.double()
    return torch.sign(v) * torch.log10(1 + v.abs() / c)


def _threshold(values: Tensor) -> float:
    """Linear range of a symlog axis: the power of ten below the median |value| (not 0)."""
    nonzero = values.abs()[values != 0]
    if not len(nonzero):
        return 1.0
    return 10.0 ** math.floor(math.log10(float(nonzero.median())))


def _symlog_ticks(values: Tensor, c: float, length: int, gap: int) -> Ticks:
    """Ticks at 0 and ±c, ±10c, ±100c... within the values' range, from 0 outwards, each at
    least ``gap`` px from the others on an axis ``length`` px long."""
    t = symlog(values, c)
    low, high = min(0.0, float(t.min())), max(0.0, float(t.max()))
    per_unit = length / ((high - low) * 1.1 or 1.0)  # plotly pads the range by ~5 % a side
    top = max(float(values.abs().max()), c)
    decades = [c * 10.0**k for k in range(0, 2 + math.ceil(math.log10(top / c)))]
    kept: list[float] = []
    for value in [0.0, *(v for d in decades for v in (d, -d))]:
        at = float(symlog(torch.tensor([value]), c))
        inside = low - 0.05 * (high - low) <= at <= high + 0.05 * (high - low)
        if inside and all(abs(at - k) * per_unit >= gap for k in kept):
            kept.append(at)
    kept.sort()
    labels = [_unsymlog(k, c) for k in kept]
    return kept, [f"{v:g}".replace("-", "−") for v in labels]  # plotly's own ticks use "−"


def _unsymlog(at: float, c: float) -> float:
    value = math.copysign(c * (10 ** abs(at) - 1), at)
    return float(f"{value:.1g}")  # the decade the tick was placed at, without rounding noise


def _spans_decades(values: Tensor) -> bool:
    """Whether the largest |value| exceeds 30× the median nonzero |value|."""
    nonzero = values.abs()[values != 0]
    return bool(len(nonzero)) and float(nonzero.max()) > 30 * float(nonzero.median())


def estimate_vs_exact(
    exact: Float[Tensor, " n"] | Sequence[float],
    estimates: Mapping[str, Float[Tensor, " n"] | Sequence[float]],
    *,
    colour_by: Sequence[str] | None = None,
    colour_title: str = "language",
    panel_by: Sequence[str] | None = None,
    scale: Scale = "auto",
    descriptions: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Scatter of each estimate (x) against the exact effect (y), one point per neuron.

    Panels: one row per estimate, one column per value of ``panel_by`` (e.g. the layer);
    each panel's title gives Spearman's ρ of its points
    (:func:`crane_lens.utils.ranking.spearman`), and with ≤ 5 colour groups also ρ per group.

    Args:
        exact: The exact effect per neuron (e.g. ΔNLL of zero-ablating it, nats/token).
        estimates: ``{method: score per neuron}``, aligned with ``exact``.
        colour_by: A label per point (e.g. its language) that sets its colour.
        colour_title: What ``colour_by`` is (the legend's title).
        panel_by: A label per point (e.g. ``"layer 6"``) that sets its panel column.
        scale: ``"symlog"`` (linear within ±c, c the power of ten below the median |value|,
            logarithmic beyond: for values spanning decades, either sign), ``"rank"`` (the
            points' ranks within the panel: exactly what ρ correlates), ``"linear"``, or
            ``"auto"`` (symlog on every axis when on any the largest |value| exceeds 30× the
            median, else linear).
        descriptions: ``{method: what its score is}`` for the subtitle.
        title: Figure title.

    Returns:
        A plotly figure; hover shows each point's raw values.

    Example:
        >>> exact = torch.tensor([0.1, 0.4, 0.2, 0.3])
        >>> fig = estimate_vs_exact(exact, {"attribution": torch.tensor([1.0, 4.0, 3.0, 2.0])},
        ...                         scale="linear")
        >>> fig.layout.annotations[0].text
        '<b>attribution</b>: ρ = 0.80 (n = 4)'
    """
    from plotly.subplots import make_subplots

    y = torch.as_tensor(exact, dtype=torch.float64).flatten()
    xs = {m: torch.as_tensor(v, dtype=torch.float64).flatten() for m, v in estimates.items()}
    if not xs:
        raise ValueError("estimate_vs_exact needs at least one estimate.")
    for method, x in xs.items():
        if x.shape != y.shape:
            raise ValueError(f"{method}: {len(x)} estimates for {len(y)} exact values.")
    panels = list(panel_by) if panel_by is not None else [""] * len(y)
    colours = list(colour_by) if colour_by is not None else [""] * len(y)
    in_panel = {p: torch.tensor([x == p for x in panels]) for p in dict.fromkeys(panels)}
    in_group = {g: torch.tensor([x == g for x in colours]) for g in dict.fromkeys(colours)}
    columns, groups, methods = list(in_panel), list(in_group), list(xs)
    # ρ per colour group as well, while a title line holds them (groups of ≥ 3 points).
    per_group = 1 < len(groups) <= 5
    titles = []
    for method in methods:
        for column, keep in in_panel.items():
            rho = spearman(xs[method][keep], y[keep])
            where = f" · {column}" if column else ""
            titles.append(f"<b>{method}</b>{where}: ρ = {rho:.2f} (n = {int(keep.sum())})")
            if per_group:
                parts = [f"{g} {spearman(xs[method][keep & sel], y[keep & sel]):.2f}"
                         for g, sel in in_group.items() if int((keep & sel).sum()) > 2]  # fmt: skip
                titles[-1] += "<br>" + ", ".join(parts)
    gap_v = 110 if per_group else 90
    plot_height = PANEL_H * len(methods) + gap_v * (len(methods) - 1)
    fig = make_subplots(rows=len(methods), cols=len(columns), subplot_titles=titles,
                        horizontal_spacing=min(0.2, 80 / (PANEL_W * len(columns) + 80)),
                        vertical_spacing=gap_v / plot_height if len(methods) > 1 else 0,
                        )  # fmt: skip
    used: set[str] = set()
    # One scale for every axis (symlog for all when any spans decades: an estimate that tracks
    # the exact effect then shows as a diagonal), each with its own linear range.
    if scale == "auto":
        scale = "symlog" if any(map(_spans_decades, (y, *xs.values()))) else "linear"
    kind_x = {m: (scale, _threshold(xs[m])) for m in methods}
    kind_y = (scale, _threshold(y))
    dense = len(y) / len(columns) > 500  # many points per panel: smaller and more transparent
    for r, method in enumerate(methods, start=1):
        for c, column in enumerate(columns, start=1):
            keep = in_panel[column]
            px, py = xs[method][keep], y[keep]
            sx, tx = _shown(px, *kind_x[method], PANEL_W - 60, 58)
            sy, ty = _shown(py, *kind_y, PANEL_H, 24)
            for g_index, group in enumerate(groups):
                sel = in_group[group][keep]
                if not bool(sel.any()):
                    continue
                fig.add_scatter(
                    x=sx[sel].tolist(), y=sy[sel].tolist(), mode="markers",
                    name=group or "neuron", legendgroup=group, showlegend=group not in used,
                    marker={"size": 4 if dense else 6, "opacity": 0.45 if dense else 0.75,
                            "color": COLOURS[g_index % len(COLOURS)]},
                    customdata=torch.stack([px[sel], py[sel]], dim=1).tolist(),
                    hovertemplate=f"{group} {column}<br>{method} %{{customdata[0]:.3g}}<br>"
                    "exact %{customdata[1]:.3g}<extra></extra>", row=r, col=c,
                )  # fmt: skip
                used.add(group)
            x_title = {"rank": f"rank of {method} score", "symlog": f"{method} score (symlog)",
                       "linear": f"{method} score"}[kind_x[method][0]]  # fmt: skip
            fig.update_xaxes(title_text=x_title, row=r, col=c, zeroline=True, tickangle=0,
                             zerolinecolor="#bbb", **_ticks(tx))  # fmt: skip
            y_title = {"rank": "rank of exact ΔNLL", "symlog": f"{EXACT}, symlog",
                       "linear": EXACT}[kind_y[0]]  # fmt: skip
            fig.update_yaxes(title_text=y_title if c == 1 else None, row=r, col=c,
                             zeroline=True, zerolinecolor="#bbb", **_ticks(ty))  # fmt: skip
    fig.update_annotations(font_size=12)
    fig.update_layout(legend={"title": {"text": colour_title}, "itemsizing": "constant"},
                      showlegend=len(groups) > 1)  # fmt: skip
    about = "; ".join(f"{m}: {d}" for m, d in (descriptions or {}).items() if m in xs)
    subtitle = ("One point per neuron: x its estimated importance, y the exact ΔNLL when it "
                "alone is zero-ablated" + (f" ({about})" if about else "")
                + "; ρ: Spearman rank correlation")  # fmt: skip
    right = 130 if len(groups) > 1 else 30
    return finish(fig, title=title or "Estimated vs exact effect of ablating single neurons",
                  subtitle=subtitle, width=max(90 + PANEL_W * len(columns) + right, 600),
                  plot_height=plot_height, left=90, right=right, bottom=70,
                  header=38 if per_group else 22)  # fmt: skip


def _shown(
    values: Tensor, kind: Scale, cut: float, length: int, gap: int
) -> tuple[Tensor, Ticks | None]:
    """Coordinates of ``values`` on an axis of ``kind`` (symlog: linear within ±``cut``)."""
    if kind == "rank":
        return ranks(values), None
    if kind == "symlog":
        return symlog(values, cut), _symlog_ticks(values, cut, length, gap)
    return values, None


def _ticks(ticks: Ticks | None) -> dict[str, Any]:
    return {} if ticks is None else {"tickvals": ticks[0], "ticktext": ticks[1]}


def estimate_vs_exact_from_stats(
    stats: NeuronStats, methods: Sequence[str] = ("attribution", "crane"), *,
    langs: Sequence[str] | None = None, layers: Sequence[int] | None = None,
    scale: Scale = "auto", title: str | None = None,
) -> go.Figure:  # fmt: skip
    """:func:`estimate_vs_exact` from statistics computed with the ``ablation`` method.

    Args:
        stats: Results of :func:`crane_lens.compute_stats` with ``"ablation"`` among the methods
            (and ``methods``).
        methods: Estimates to compare (method or statistic names).
        langs: Languages (default: all; coloured when there are at most 8).
        layers: Layers (default: the run's ``ablation_layers``, the only ones with exact values);
            one panel column each.
        scale: See :func:`estimate_vs_exact`.
        title: Figure title.
    """
    from crane_lens.stats.methods import METHODS, STATISTICS, primary_statistic

    if "ablation" not in stats.statistics:
        raise ValueError("These statistics have no exact ablation: compute_stats(..., "
                         "methods=[..., 'ablation'], ablation_layers=[...]).")  # fmt: skip
    langs = list(langs) if langs is not None else stats.langs
    layers = list(layers if layers is not None else stats.config.get("ablation_layers")
                  or range(stats.spec.n_layers))  # fmt: skip
    index = [stats.langs.index(x) for x in langs]

    def pick(name: str) -> Tensor:
        return stats.scores(name)[index][:, layers].flatten()  # lang, layer, neuron order

    d_mlp = stats.spec.d_mlp
    per_point_lang = [x for x in langs for _ in layers for _ in range(d_mlp)]
    per_point_layer = [f"layer {layer}" for _ in langs for layer in layers for _ in range(d_mlp)]
    names = {m: primary_statistic(m) if m in METHODS else m for m in methods}
    return estimate_vs_exact(
        pick("ablation"), {m: pick(m) for m in methods},
        colour_by=per_point_lang if 1 < len(langs) <= len(COLOURS) else None,
        panel_by=per_point_layer, scale=scale,
        descriptions={m: STATISTICS[s].description for m, s in names.items()},
        title=title or f"Estimated vs exact single-neuron ablation — {stats.spec.name}",
    )  # fmt: skip


def estimate_vs_exact_from_causality(
    causality: Mapping[str, Any], stats: NeuronStats,
    methods: Sequence[str] = ("attribution", "crane"), *, scale: Scale = "auto",
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """:func:`estimate_vs_exact` for the sampled neurons of ``causality_<dtype>.json``.

    Args:
        causality: The parsed json (``{"<lang>|<layer>": {"neurons", "delta_nats", "tokens"}}``;
            a ``"raw"`` entry holding that mapping works too).
        stats: The statistics whose scores are compared (same model; any languages that
            include the json's).
        methods: Estimates to compare.
        scale: See :func:`estimate_vs_exact`.
        title: Figure title.

    Example:
        >>> from crane_lens.model.spec import ModelSpec
        >>> from crane_lens.stats.results import NeuronStats
        >>> spec = ModelSpec("toy", "Toy", 1, 2, 3, True, "float32", "cpu", "h{layer}", 9)
        >>> stats = NeuronStats(spec, ("attribution",), n_tokens={"en": 2},
        ...                     sums={"en": {"hg_sum": -torch.tensor([[1.0, 3.0, 2.0]])}})
        >>> causal = {"en|0": {"neurons": [0, 1, 2], "delta_nats": [1.0, 5.0, 3.0], "tokens": 2}}
        >>> fig = estimate_vs_exact_from_causality(causal, stats, ["attribution"])
        >>> fig.data[0].y, fig.layout.annotations[0].text
        ((0.5, 2.5, 1.5), '<b>attribution</b> · layer 0: ρ = 1.00 (n = 3)')
    """
    from crane_lens.stats.methods import METHODS, STATISTICS, primary_statistic

    runs = causality.get("raw", causality)
    exact: list[float] = []
    estimates: dict[str, list[float]] = {m: [] for m in methods}
    langs, layers = [], []
    for key, run in runs.items():
        lang, layer = key.split("|")
        exact += [d / run["tokens"] for d in run["delta_nats"]]  # per token, like the scores
        i = stats.langs.index(lang)
        for method in methods:
            estimates[method] += stats.scores(method)[i, int(layer), run["neurons"]].tolist()
        langs += [lang] * len(run["neurons"])
        layers += [f"layer {layer}"] * len(run["neurons"])
    names = {m: primary_statistic(m) if m in METHODS else m for m in methods}
    distinct = len(set(langs))
    return estimate_vs_exact(
        exact, estimates, colour_by=langs if 1 < distinct <= len(COLOURS) else None,
        panel_by=layers, scale=scale,
        descriptions={m: STATISTICS[s].description for m, s in names.items()},
        title=title or f"Estimated vs exact single-neuron ablation — {stats.spec.name}",
    )  # fmt: skip
