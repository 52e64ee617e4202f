"""Ablation matrices as heatmaps: masked language (rows) × evaluated language (columns).

Also the sizing helpers the other figures share: every figure sets its own width and height
from its content, so that it is readable at the size it is exported at.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from crane_lens.evaluation.intervals import DEFAULT_LEVEL

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from crane_lens.evaluation.ablation import AblationMatrix

TEMPLATE = "plotly_white"
DIVERGING = "RdBu_r"  # red: masking raises the NLL (or a positive score), blue: lowers it
Value = Literal["delta", "relative", "random"]
_LABELS = {"delta": ("ΔNLL", "nats/token"), "relative": ("ΔNLL / NLL", "% of unmasked NLL"),
           "random": ("ΔNLL, random sets", "nats/token")}  # fmt: skip
# px: the widest a figure gets: the content column of the HTML report (crane_lens.report.html),
# so that every figure fits a 1400-px browser window there. Wider grids use smaller cells or wrap
# into more rows, and longer titles wrap onto more lines.
PAGE_WIDTH = 1100
MIN_CELL = 24  # px: the smallest ablation cell, still room for "−0.02" at 9 px


def text_px(text: str, size: float) -> float:
    """Estimated rendered width of ``text`` in pixels at font ``size`` (CJK glyphs are square).

    Plotly never wraps or shrinks titles, so a figure must be at least this wide.

    Example:
        >>> text_px("abcd", 10), text_px("中文", 10)
        (24.0, 20.0)
    """
    return float(sum(size if ord(c) > 0x2E80 else 0.6 * size for c in text))


def wrap(text: str, width: float, size: float = 12) -> str:
    """``text`` broken into ``<br>``-separated lines of at most ``width`` pixels (at spaces).

    Example:
        >>> wrap("one two three", text_px("one two", 10), 10)
        'one two<br>three'
    """
    lines: list[str] = []
    for word in text.split(" "):
        if lines and text_px(f"{lines[-1]} {word}", size) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "<br>".join(lines)


def colorbar_px(title: str, unit: str) -> float:
    """Right margin that a :func:`colorbar` with this title needs (bar, ticks and title)."""
    lines = [title, *f"({unit})".split("<br>")]
    return max(130.0, 50 + max(text_px(line, 12) for line in lines))


def colorbar(title: str, unit: str, **extra: Any) -> dict[str, Any]:
    """A colour bar with a two-line title (name, then unit) and few enough ticks not to overlap."""
    return {"title": {"text": f"{title}<br>({unit})", "side": "top", "font": {"size": 12}},
            "thickness": 14, "nticks": 6, "outlinewidth": 0, **extra}  # fmt: skip


def page_layout(
    fig: go.Figure,
    title: str,
    subtitle: str,
    plot: tuple[float, float],
    margin: tuple[float, float, float, float],
    **layout: Any,
) -> go.Figure:
    """Template, title and subtitle, and a size that fits the plot area, the margins and every
    title line (plotly cuts what does not fit rather than wrapping it).

    The figure is as wide as its plot area and margins, and as its longest title line up to
    :data:`PAGE_WIDTH`; longer lines wrap, and the top margin grows by the lines added.

    Args:
        fig: The figure to finish.
        title: Title (17 px).
        subtitle: Second line(s), 12 px; ``<br>`` separates lines.
        plot: Width and height of the plot area in pixels.
        margin: Left, right, top and bottom margins in pixels.
        layout: Further layout settings.
    """
    left, right, top, bottom = margin
    room = max(PAGE_WIDTH, left + plot[0] + right) - 40  # px of text a line may take
    lines = [wrap(line, room, 12) for line in subtitle.split("<br>")]
    wrapped_title = wrap(title, room, 17)
    top += 16 * (sum(line.count("<br>") for line in lines)) + 22 * wrapped_title.count("<br>")
    title, subtitle = wrapped_title, "<br>".join(lines)
    width = max(left + plot[0] + right, 40 + max(text_px(x, 17) for x in title.split("<br>")),
                *(40 + text_px(x, 12) for x in subtitle.split("<br>")))  # fmt: skip
    return fig.update_layout(
        template=TEMPLATE, width=math.ceil(width), height=math.ceil(top + plot[1] + bottom),
        margin={"l": left, "r": right, "t": top, "b": bottom},
        title={"text": title, "subtitle": {"text": subtitle, "font": {"size": 12}},
               "font": {"size": 17}, "x": 0, "xref": "container", "xanchor": "left",
               "pad": {"l": 16}},
        **layout,
    )  # fmt: skip


# The legend of the marked cells (the subtitle's last clause).
_UNCERTAIN = f"a value in brackets: its {round(100 * DEFAULT_LEVEL):g} % interval includes 0"


def _frame(matrix: AblationMatrix, value: Value) -> pd.DataFrame:
    if value == "delta":
        return matrix.delta()
    if value == "relative":
        return matrix.relative()
    if value == "random":
        return matrix.random_delta()
    raise ValueError(f"value must be 'delta', 'relative' or 'random', not {value!r}.")


def _random_relative(matrix: AblationMatrix) -> pd.DataFrame:
    import pandas as pd

    return matrix.random_delta() / pd.Series(matrix.baseline)[matrix.evaluated]


def cell_text(values: Sequence[Sequence[float]], value: str, n: int) -> list[list[str]]:
    """The numbers printed in the cells: as many decimals as the cell width allows.

    Example:
        >>> cell_text([[0.2104, -0.0004], [12.25, 3.0]], "delta", 17)
        [['0.2', '0.0'], ['12.2', '3.0']]
        >>> cell_text([[0.2104, -0.0004]], "delta", 3)
        [['0.210', '0.000']]
    """
    finite = [abs(v) for row in values for v in row if math.isfinite(v)]
    top = max(finite, default=0.0)  # decimals: as many as the largest number leaves room for
    if value == "relative":
        fmt = "{:.0%}" if n > 10 else "{:.1%}"
    elif n <= 6:
        fmt = "{:.3f}" if top < 1 else "{:.2f}"
    else:
        fmt = "{:.2f}" if top < 10 else "{:.1f}"

    def one(v: float) -> str:
        if not math.isfinite(v):
            return ""
        text = fmt.format(v)
        # "-0.00": a rounded tiny negative number reads as a sign that means nothing.
        return (
            text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text
        )

    return [[one(v).replace("-", "−") for v in row] for row in values]


def _cell_px(n: int) -> int:
    return max(30, min(84, 480 // max(n, 1)))


def _font_px(n: int) -> int:
    return 14 if n <= 6 else 12 if n <= 10 else 9


def uncertain_cells(matrix: AblationMatrix, value: str) -> pd.DataFrame | None:
    """Which cells' bootstrap interval includes 0 (``None`` without intervals, or for the
    random sets' panel): ΔNLL and relative ΔNLL share the sign, so one test serves both."""
    if value not in ("delta", "relative") or matrix.intervals_unavailable() is not None:
        return None
    found = matrix.intervals()
    cells = found[found["quantity"] == "delta"].set_index(["masked", "evaluated"])
    crosses = (cells["low"] <= 0) & (cells["high"] >= 0)
    return crosses.unstack().reindex(index=matrix.masked, columns=matrix.evaluated)


def _heatmap(
    frame: pd.DataFrame, value: str, label: str, uncertain: pd.DataFrame | None = None,
    **extra: Any,
) -> go.Heatmap:  # fmt: skip
    import plotly.graph_objects as go

    z = frame.to_numpy(dtype=float)
    text = cell_text(z.tolist(), value, max(frame.shape))
    if uncertain is not None:  # "(0.01)": the interval includes 0
        marks = uncertain.reindex(index=frame.index, columns=frame.columns).fillna(False)
        # Narrow cells: "(−.01)" rather than "(−0.01)", which would overflow into the labels.
        short = max(frame.shape) > 10
        text = [[(f"({t.replace('0.', '.', 1)})" if short else f"({t})") if t and bool(m) else t
                 for t, m in zip(row, flags, strict=True)]
                for row, flags in zip(text, marks.to_numpy().tolist(), strict=True)]  # fmt: skip
    number = "%{z:.2%}" if value == "relative" else "%{z:.4f}"
    return go.Heatmap(
        z=z.tolist(), x=list(frame.columns), y=list(frame.index), text=text,
        texttemplate="%{text}", textfont={"size": _font_px(max(frame.shape))}, xgap=1, ygap=1,
        hovertemplate=f"masked %{{y}} · evaluated %{{x}}<br>{label} = {number}<extra></extra>",
        **extra,
    )  # fmt: skip


def _own_outlines(frame: pd.DataFrame, xref: str, yref: str) -> list[dict[str, Any]]:
    """Thin frames around the cells where the masked set's own language is evaluated."""
    columns = list(frame.columns)
    return [{"type": "rect", "xref": xref, "yref": yref, "x0": columns.index(a) - 0.5,
             "x1": columns.index(a) + 0.5, "y0": i - 0.5, "y1": i + 0.5,
             "line": {"color": "#222", "width": 1.5}}
            for i, a in enumerate(frame.index) if a in columns]  # fmt: skip


def size_range(sizes: Iterable[int]) -> str:
    """Set sizes as one number or a range ("" for none).

    Example:
        >>> size_range([369, 369]), size_range([1498, 2037, 1500]), size_range([])
        ('369', '1,498–2,037', '')
    """
    ordered = sorted({int(v) for v in sizes})
    if not ordered:
        return ""
    return f"{ordered[0]:,}" if len(ordered) == 1 else f"{ordered[0]:,}–{ordered[-1]:,}"


def _mean_of_seeds(matrix: AblationMatrix) -> str:
    seeds = len(next(iter(next(iter(matrix.random_nll.values())).values())))
    own_only = matrix.config.get("random_langs") == "own"
    return f"mean of {seeds} seed{'s' if seeds != 1 else ''}" + (
        ", own language only" if own_only else ""
    )


def _on(matrix: AblationMatrix) -> str:
    model = matrix.config.get("model")
    return f" — {model}" if model else ""


def _bound(frames: Sequence[pd.DataFrame]) -> float:
    values = [abs(float(v)) for f in frames for v in f.to_numpy().flatten() if math.isfinite(v)]
    return max(values, default=0.0) or 1.0


def ablation_heatmap(
    matrix: AblationMatrix, value: Value = "delta", *, title: str | None = None
) -> go.Figure:
    """Heatmap of ``matrix.delta()`` (or ``relative()``, or the random controls' mean ΔNLL).

    A diverging scale centred on 0: red where masking raises the NLL, blue where it lowers it;
    each cell prints its value, and the masked set's own language is framed, so a
    language-specific set reads as a red, framed diagonal. Width and height follow the number
    of languages (3 to 17 languages stay readable at the default size).

    Args:
        matrix: An ablation matrix.
        value: ``"delta"`` (nats/token), ``"relative"`` (share of the unmasked NLL) or
            ``"random"`` (mean ΔNLL of the random control sets).
        title: Figure title (default: method, quantity and intervention).

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> m = AblationMatrix("toy", "zero", ["en", "zh"], ["en", "zh"], {"en": 2.0, "zh": 3.0},
        ...                    {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}})
        >>> fig = ablation_heatmap(m)
        >>> [round(v, 2) for v in fig.data[0].z[1]], fig.data[0].text[1]  # row zh: zh's set
        ([0.1, 0.9], ['0.100', '0.900'])
    """
    import plotly.graph_objects as go

    frame = _frame(matrix, value)
    name, unit = _LABELS[value]
    bound = _bound([frame])
    n_rows, n_cols = frame.shape
    cell = _cell_px(max(n_rows, n_cols))
    uncertain = uncertain_cells(matrix, value)
    fig = go.Figure(_heatmap(
        frame, value, name, uncertain, colorscale=DIVERGING, zmin=-bound, zmax=bound, zmid=0,
        colorbar=colorbar(name, unit, tickformat=".0%" if value == "relative" else None),
    ))  # fmt: skip
    fig.update_layout(shapes=_own_outlines(frame, "x", "y"))
    if value == "random":
        title = title or (f"Random sets of {matrix.method}'s layer sizes: ΔNLL when masked "
                          f"({_mean_of_seeds(matrix)}){_on(matrix)}")  # fmt: skip
    title = title or f"{matrix.method}: {name} when a language's set is masked{_on(matrix)}"
    size = size_range(matrix.n_neurons.values())
    subtitle = (f"{matrix.mode} ablation{f' of {size} neurons' if size else ''}; "
                "rows: masked set, columns: evaluated language; framed: own language"
                + (f"; {_UNCERTAIN}" if uncertain is not None else ""))  # fmt: skip
    fig.update_yaxes(title_text="masked set")
    return _finish(fig, title, subtitle, n_cols * cell, n_rows * cell, colorbar_px(name, unit))


def _finish(
    fig: go.Figure, title: str, subtitle: str, plot_w: float, plot_h: float, right: float
) -> go.Figure:
    """Axis titles, fonts and a size that fits the plot area, the colour bar and both titles."""
    fig.update_yaxes(autorange="reversed", tickfont={"size": 12}, showgrid=False)
    fig.update_xaxes(tickfont={"size": 12}, showgrid=False, tickangle=0,
                     title={"text": "evaluated language", "standoff": 6})  # fmt: skip
    return page_layout(fig, title, subtitle, (plot_w, plot_h), (90, right, 110, 64))


def ablation_matrices(
    matrices: Mapping[str, AblationMatrix], value: Literal["delta", "relative"] = "delta", *,
    random: bool = True, title: str | None = None,
) -> go.Figure:  # fmt: skip
    """Several methods' ablation matrices side by side on one colour scale centred on 0.

    The panels share the colour scale (so colours compare across methods) and print their
    values; with ``random``, a last panel shows the random control: the mean over seeds of the
    first matrix that has random sets (sets of the same per-layer sizes as that method's).

    Args:
        matrices: ``{method: AblationMatrix}`` (panel titles are the keys).
        value: ``"delta"`` (nats/token) or ``"relative"`` (share of the unmasked NLL).
        random: Add the random-control panel (when a matrix has random sets).
        title: Figure title.

    Returns:
        A figure with one heatmap per panel; panels wrap into rows beyond a page's width.

    Example:
        >>> from crane_lens.evaluation import AblationMatrix
        >>> nll = {"en": {"en": 2.5, "zh": 3.0}, "zh": {"en": 2.1, "zh": 3.9}}
        >>> m = AblationMatrix("crane", "zero", ["en", "zh"], ["en", "zh"],
        ...                    {"en": 2.0, "zh": 3.0}, nll,
        ...                    random_nll={a: {b: [v, v + 0.2] for b, v in row.items()}
        ...                                for a, row in nll.items()})
        >>> fig = ablation_matrices({"crane": m, "lape": m})
        >>> [a.text for a in fig.layout.annotations][:3]
        ['crane', 'lape', 'random (mean of 2 seeds)']
        >>> [round(v, 2) for v in fig.data[2].z[0]]
        [0.6, 0.1]
    """
    from plotly.subplots import make_subplots

    if not matrices:
        raise ValueError("ablation_matrices needs at least one matrix ({method: matrix}).")
    name, unit = _LABELS[value]
    panels = [(method, _frame(m, value)) for method, m in matrices.items()]
    marks: list[pd.DataFrame | None] = [uncertain_cells(m, value) for m in matrices.values()]
    control = next(((k, m) for k, m in matrices.items() if m.random_nll), None) if random else None
    if control is not None:
        _source, m = control
        frame = m.random_delta() if value == "delta" else _random_relative(m)
        panels.append((f"random ({_mean_of_seeds(m)})", frame))
        marks.append(None)
    n = max(max(f.shape) for _, f in panels)
    width, height = max(f.shape[1] for _, f in panels), max(len(f) for _, f in panels)
    gap_w, gap_h = 40, 110  # px between panels: row labels; x labels + axis title + panel title
    room = PAGE_WIDTH - 90 - colorbar_px(name, unit) + gap_w  # the plot area, one gap more
    cell = _cell_px(n)
    n_cols = max(1, min(len(panels), int(room // (cell * width + gap_w))))
    if n_cols == 1 and len(panels) > 1:  # two panels side by side with smaller cells, if they fit
        small = int((room - 2 * gap_w) // (2 * width))
        if small >= MIN_CELL:
            cell, n_cols = small, 2
    panel_w, panel_h = cell * width, cell * height
    n_rows = math.ceil(len(panels) / n_cols)
    plot_w, plot_h = (
        n_cols * panel_w + (n_cols - 1) * gap_w,
        n_rows * panel_h + (n_rows - 1) * gap_h,
    )
    fig = make_subplots(
        rows=n_rows, cols=n_cols, subplot_titles=[p for p, _ in panels],
        horizontal_spacing=gap_w / plot_w if n_cols > 1 else 0.0,
        vertical_spacing=gap_h / plot_h if n_rows > 1 else 0.0,
    )  # fmt: skip
    bound = _bound([f for _, f in panels])
    shapes = []
    for i, (_, frame) in enumerate(panels):
        row, col = divmod(i, n_cols)
        fig.add_trace(_heatmap(frame, value, name, marks[i], coloraxis="coloraxis"),
                      row=row + 1, col=col + 1)  # fmt: skip
        suffix = "" if i == 0 else str(i + 1)
        shapes += _own_outlines(frame, f"x{suffix}", f"y{suffix}")
    fig.update_layout(
        shapes=shapes,
        coloraxis={"colorscale": DIVERGING, "cmin": -bound, "cmax": bound, "cmid": 0,
                   "colorbar": colorbar(name, unit, len=min(1.0, 420 / plot_h), y=1,
                                        yanchor="top",
                                        tickformat=".0%" if value == "relative" else None)},
    )  # fmt: skip
    fig.update_annotations(font={"size": 14})
    first = next(iter(matrices.values()))
    size = ", ".join(f"{k} {size_range(m.n_neurons.values())}" for k, m in matrices.items()
                     if m.n_neurons)  # fmt: skip
    subtitle = (f"{first.mode} ablation; neurons per set: {size}. Rows: masked set, columns: "
                "evaluated language; framed: own language."
                + (f" Random sets have {control[0]}'s per-layer sizes." if control else "")
                + (f" {_UNCERTAIN[0].upper()}{_UNCERTAIN[1:]}." if any(x is not None for x in marks)
                   else ""))  # fmt: skip
    title = title or f"{name} when each language's set is masked{_on(first)}"
    fig.update_yaxes(title_text="masked set", col=1)
    return _finish(fig, title, subtitle, plot_w, plot_h, colorbar_px(name, unit))
