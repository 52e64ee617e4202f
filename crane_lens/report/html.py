"""The HTML report of a finished run: one self-contained file that works offline.

``report.html`` holds the run's settings, its summary tables with what each number means, a
conclusion per method computed from those numbers, the caveats to read first, and every figure
of :func:`crane_lens.plots.run_figures`. plotly.js is embedded once (in ``<head>``); nothing is
fetched from the network: no CDN, no MathJax, no web fonts (the system's fonts are used).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crane_lens.evaluation.findings import (
    MIN_EFFECT,
    SIGNIFICANCE,
    beats_random,
    clear_effect,
    method_conclusion,
    random_rule,
    ranking,
    run_warnings,
)
from crane_lens.evaluation.intervals import DEFAULT_LEVEL
from crane_lens.report.run_folder import check_run_folder
from crane_lens.runs import CONFIG_FILE, RunConfig, RunResult, lape_budget
from crane_lens.runs.layout import NEURON_PAGES_DIR
from crane_lens.utils.io import write_text

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.plots.run import NamedFigure

REPORT_FILE = "report.html"

# What each column of the summary tables means, one sentence each (shown above the tables).
DEFINITIONS = {
    "own": "ΔNLL on the masked set's own language, in nats per token.",
    "others": "mean ΔNLL on the other languages when the same set is masked.",
    "ratio": "own ÷ others: how many times more the own language suffers (n/a when the "
             "others' ΔNLL is ≤ 0, where a ratio means nothing — read the index).",
    "index": "(own⁺ − others⁺) ÷ (own⁺ + others⁺) with x⁺ = max(x, 0), from −1 to 1: 1 = only "
             "its own language degrades, 0 = no preference (or nothing degrades); grey where the "
             f"own effect is small (a ratio of tiny ΔNLLs: own below {MIN_EFFECT:g} nats/token, "
             "its interval reaching 0, or not above random sets).",
    "random own": "the own ΔNLL of random sets with the same per-layer sizes, mean ± "
                  "standard deviation over the random seeds.",
    "vs_random": "own − random own, in nats per token: the ΔNLL beyond what masking as many "
                 "arbitrary neurons (same per-layer sizes) causes; above 0 = worse than chance.",
    "p": "(1 + random sets with own ΔNLL ≥ the set's) ÷ (1 + random sets): how often a random "
         "set of the same per-layer sizes hurts the language as much; with n random sets it "
         "cannot go below 1 ÷ (n + 1). Highlighted: the set is above all its random sets "
         f"(fewer than {math.ceil(1 / SIGNIFICANCE) - 1}, whose smallest p is 1 ÷ (n + 1)) or "
         f"p ≤ {SIGNIFICANCE:g} (that many or more).",
    "[low, high]": f"under a number: its {round(100 * DEFAULT_LEVEL):g} % bootstrap interval, "
                   "resampling held-out blocks (the same blocks masked and unmasked; blocks, "
                   "not tokens, since tokens of one text are correlated).",
}  # fmt: skip


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _percent(fraction: float) -> str:
    """``0.01`` → ``"1 %"``, ``0.005`` → ``"0.5 %"``.

    Example:
        >>> _percent(0.01), _percent(0.005), _percent(0.125)
        ('1 %', '0.5 %', '12.5 %')
    """
    return f"{round(100 * fraction, 6):g} %"


def _figure_title(figure: NamedFigure, model: str) -> str:
    """The figure's plotly title as plain text, without the model's name the report's header
    already gives (its file name when it has no title)."""
    title = figure.figure.layout.title.text or ""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", title)).strip()
    return text.removesuffix(f" — {model}").removesuffix(f" - {model}") or figure.name


def _lang(code: str) -> str:
    from crane_lens.data.languages import language_name

    name = language_name(code)  # a code crane_lens does not know still gets its row
    return code if name == code else f"{code} · {name}"


@dataclass(frozen=True)
class Cell:
    """One table cell: plain text (escaped when rendered), right-aligned when numeric."""

    text: str
    numeric: bool = False
    title: str | None = None
    css: str = ""
    rowspan: int = 1
    sub: str | None = None  # a second, smaller line (an interval)


def _num(value: Any, digits: int = 3, *, why_missing: str = "not defined") -> Cell:
    x = float(value) if value is not None else math.nan
    if not math.isfinite(x):
        return Cell("n/a", True, why_missing, "muted")
    return Cell(_minus(f"{x:.{digits}f}"), True)


def _minus(text: str) -> str:
    """A typographic minus sign (the hyphen reads as a dash in a column of numbers)."""
    return text.replace("-", "\u2212")


def _row(cells: Sequence[Cell]) -> str:
    out = []
    for cell in cells:
        classes = " ".join(c for c in ("num" if cell.numeric else "", cell.css) if c)
        attrs = f' class="{classes}"' if classes else ""
        attrs += f' title="{_e(cell.title)}"' if cell.title else ""
        attrs += f' rowspan="{cell.rowspan}"' if cell.rowspan > 1 else ""
        sub = f'<br><small class="ci">{_e(cell.sub)}</small>' if cell.sub else ""
        out.append(f"<td{attrs}>{_e(cell.text)}{sub}</td>")
    return f"<tr>{''.join(out)}</tr>"


def _table(headers: Sequence[tuple[str, bool]], rows: Iterable[Sequence[Cell]],
           css: str = "", head: str | None = None) -> str:  # fmt: skip
    """A table; ``head`` replaces the one header row made from ``headers`` (HTML, escaped)."""
    if head is None:
        head = "<tr>" + "".join(f'<th class="{"num" if numeric else ""}">{_e(label)}</th>'
                                for label, numeric in headers) + "</tr>"  # fmt: skip
    return (f'<div class="table-wrap"><table class="{css}"><thead>{head}</thead>'
            f"<tbody>{''.join(_row(r) for r in rows)}</tbody></table></div>")  # fmt: skip


def _by_language(
    langs: Sequence[str],
    frames: dict[str, pd.DataFrame],
    columns: Sequence[tuple[str, str, Callable[[Any], Cell]]],
) -> str:
    """One row per language, a group of columns per method: methods side by side.

    Args:
        langs: Row order.
        frames: ``method -> frame`` indexed by language.
        columns: ``(column of the frames, header, cell of a value)``.
    """
    top = '<th rowspan="2">language</th>' + "".join(
        f'<th colspan="{len(columns)}" class="method first">{_e(m)}</th>' for m in frames
    )
    sub = "".join(f'<th class="num{" first" if i == 0 else ""}">{_e(label)}</th>'
                  for _ in frames for i, (_, label, _) in enumerate(columns))  # fmt: skip
    rows = []
    for lang in langs:
        row = [Cell(_lang(lang), css="lang")]
        for frame in frames.values():
            for i, (key, _, cell) in enumerate(columns):
                value = cell(frame.loc[lang, key]) if lang in frame.index else Cell("—", True)
                row.append(replace(value, css=f"{value.css} first" if i == 0 else value.css))
        rows.append(row)
    return _table([], rows, "wide", head=f"<tr>{top}</tr><tr>{sub}</tr>")


def _grouped(frame: pd.DataFrame, cells: Any) -> list[list[Cell]]:
    """Rows of a (method, language)-indexed frame, the method cell spanning its group."""
    rows = []
    for method in dict.fromkeys(frame.index.get_level_values(0)):
        part = frame.xs(method, level=0)
        for i, (lang, row) in enumerate(part.iterrows()):
            first = [Cell(str(method), css="group", rowspan=len(part))] if i == 0 else []
            rows.append([*first, Cell(_lang(str(lang)), css="lang"), *cells(row)])
    return rows


# -- sections -------------------------------------------------------------------------------


def _definitions(keys: Sequence[str]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(DEFINITIONS[k])}</dd>" for k in keys)
    return f'<dl class="defs">{items}</dl>'


def _conclusions(result: RunResult) -> str:
    items = []
    for method, matrix in result.matrices.items():
        text = method_conclusion(matrix)
        rest = text.removeprefix(f"{method}: ")
        items.append(f"<li><strong>{_e(method)}</strong>: {_e(rest)}</li>")
    if line := ranking(result.matrices):
        items.append(f'<li class="ranking">{_e(line)}</li>')
    return f'<ul class="conclusions">{"".join(items)}</ul>'


def _caveats(warnings: list[str]) -> str:
    if not warnings:
        return (
            '<p class="ok">No caveats: enough random seeds, intervals from enough blocks, equal '
            "set sizes.</p>"
        )
    return '<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"


def _mode(config: RunConfig) -> str:
    """The intervention mode, with scale's multiplier."""
    return f"{config.mode} × {config.factor:g}" if config.mode == "scale" else config.mode


def _config_rows(result: RunResult, versions: dict[str, str]) -> list[list[Cell]]:
    c, spec = result.config, result.stats.spec
    total = spec.n_layers * spec.d_mlp
    eval_tokens = sorted({n for m in result.matrices.values() for n in m.tokens.values()})
    scored = (f", {eval_tokens[0]:,}–{eval_tokens[-1]:,} scored" if len(eval_tokens) > 1 else
              f", {eval_tokens[0]:,} scored" if eval_tokens else "")  # fmt: skip
    rows = [
        ("model", f"{c.model} — {spec.n_layers} layers × {spec.d_mlp:,} MLP neurons "
                  f"= {total:,}"),
        ("languages", ", ".join(_lang(x) for x in c.langs)),
        ("methods", ", ".join(c.methods) + " (and the random control)"),
        ("budget", f"{_percent(c.budget)} of all MLP neurons per language ≈ "
                   f"{round(c.budget * total):,} neurons (methods with a rule of their own, "
                   "e.g. LAPE, choose other sizes)"),
        ("intervention (mode)", _mode(c)),
        *([("LAPE budget", lape_budget(c, result.neurons["lape"]))]
          if "lape" in result.neurons else []),
        ("corpus", c.corpus),
        ("training tokens per language", f"{c.max_tokens_per_lang:,} (statistics, "
                                          f"blocks of {c.seq_len})"),
        ("held-out tokens per language", f"{c.eval_tokens_per_lang:,} requested{scored} "
                                          f"(ablation matrices, blocks of {c.eval_seq_len})"),
        ("random control seeds", str(c.random_seeds)),
        ("seed (text order)", str(c.seed)),
        ("CRANE target", c.target),
        ("device, dtype", _device_dtype(result)),
        ("package versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown"),
        ("folder", str(result.folder)),
    ]  # fmt: skip
    return [[Cell(k, css="key"), Cell(v)] for k, v in rows]


def _device_dtype(result: RunResult) -> str:
    """What the run computed on, as recorded (runs saved before that: the statistics' spec)."""
    spec = result.stats.spec
    device = result.resolved.get("device") or spec.device
    dtype = result.resolved.get("dtype_choice") or (
        f"{spec.dtype.removeprefix('torch.')} (requested: {result.config.dtype})"
    )
    return f"{device}, {dtype}"


def _with_interval(cell: Cell, row: pd.Series, key: str, digits: int = 3) -> Cell:
    """``cell`` with ``row``'s interval of ``key`` as its second line, when it has one."""
    low, high = row.get(f"{key}_low", math.nan), row.get(f"{key}_high", math.nan)
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return cell
    return replace(cell, sub=_minus(f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"))


def _selectivity(result: RunResult) -> str:
    table = result.selectivity()
    has_random = "random_own" in table

    def cells(row: pd.Series) -> list[Cell]:
        ratio = _num(row["ratio"] if row["others"] > 0 else math.nan, 2,
                     why_missing="the others' ΔNLL is ≤ 0: read the index")  # fmt: skip
        index = _with_interval(_num(row["index"], 2), row, "index", 2)
        if index.text != "n/a" and not clear_effect(row):
            index = replace(index, title=f"a small own effect (own ΔNLL below {MIN_EFFECT:g} "
                            "nats/token, its interval reaching 0, or not above random sets): "
                            "read own beside it", css="muted")  # fmt: skip
        out = [Cell(f"{int(row['n_neurons']):,}", True),
               _with_interval(_num(row["own"]), row, "own"),
               _with_interval(_num(row["others"]), row, "others"), ratio, index]  # fmt: skip
        if has_random:
            mean, std = float(row["random_own"]), float(row["random_own_std"])
            spread = _minus(
                f"{mean:.3f} ± {std:.3f}" if math.isfinite(std) else f"{mean:.3f} ± n/a"
            )
            p = _num(row["p_value"], 2, why_missing="no random sets for this language")
            n_random = int(row["n_random"]) if math.isfinite(float(row["n_random"])) else 0
            if p.text != "n/a" and beats_random(float(row["p_value"]), n_random):
                p = replace(p, title=random_rule(n_random), css="good")
            vs_random = _num(row["vs_random"], why_missing="no random sets for this language")
            out += [Cell(spread, True), _with_interval(vs_random, row, "vs_random"), p]
        return out

    headers = [("method", False), ("masked set", False), ("neurons", True), ("own", True),
               ("others", True), ("ratio", True), ("index", True)]  # fmt: skip
    keys = ["own", "others", "ratio", "index"]
    if has_random:
        headers += [("random own", True), ("vs_random", True), ("p", True)]
        keys += ["random own", "vs_random", "p"]
    if "own_low" in table and table["own_low"].notna().any():
        keys.append("[low, high]")
    return _definitions(keys) + _table(headers, _grouped(table, cells), "grouped")


def _stability(result: RunResult) -> str:
    """One sentence per method on how much its sets depend on the training text, and the
    table behind them (split-half Jaccard median, lowest language, chance)."""
    stability = result.stability
    if stability is None:
        return ('<p class="muted">No stability: this run\'s statistics have no per-part sums '
                "(they were computed by an older crane_lens); a new run (another --out or "
                "--name) measures it at no extra cost.</p>")  # fmt: skip
    intro = ("<p>Each method selected again on two disjoint halves of the training text "
             "(interleaved blocks) and on its first 1/16, 1/8, 1/4 and 1/2, from the same pass "
             "over the text; the Jaccard index (shared neurons ÷ neurons in either set) says "
             "how much of a language's set a different sample of text would keep. Chance: "
             "the expected Jaccard of random sets of the same sizes. Figure: <em>how stable are "
             "these sets</em>.</p>")  # fmt: skip
    items = "".join(f"<li>{_e(line)}</li>" for line in stability.describe().splitlines())
    summary = stability.summary()

    def cells(method: str, row: pd.Series) -> list[Cell]:
        lowest = (f"{float(row['min']):.2f} ({_lang(str(row['min_lang']))})"
                  if row["min_lang"] else "n/a")  # fmt: skip
        tokens = f"{int(row['tokens']):,}" if math.isfinite(float(row["tokens"])) else "n/a"
        return [Cell(method), _num(row["median"], 2), Cell(lowest, True), _num(row["chance"], 3),
                Cell(tokens, True)]  # fmt: skip

    table = _table(
        [("method", False), ("split-half Jaccard, median", True), ("lowest (language)", True),
         ("chance", True), ("tokens per half", True)],
        [cells(str(m), r) for m, r in summary.iterrows()],
    )  # fmt: skip
    return intro + f'<ul class="conclusions">{items}</ul>' + table


def _relevance(result: RunResult) -> str:
    if result.eval_stats is None:
        return '<p class="muted">This run has no held-out relevance statistics.</p>'
    table = result.relevance()
    frames = {m: table.xs(m, level=0) for m in dict.fromkeys(table.index.get_level_values(0))}

    def share(x: Any) -> Cell:
        return Cell(f"{100 * float(x):.1f} %", True)

    intro = ("<p>The share of a language's positive CRANE relevance on held-out text that a set "
             "captures: <em>own</em> for the set's own language, <em>others</em> the mean over "
             "the other languages, <em>ratio</em> = own ÷ others (higher = more specific). "
             "Held-out text keeps the metric from restating the selection.</p>")  # fmt: skip
    columns = [("own_share", "own", share), ("others_share", "others", share),
               ("ratio", "ratio", lambda x: _num(x, 2))]  # fmt: skip
    return intro + _by_language(result.config.langs, frames, columns)


def _overlap(result: RunResult) -> str:
    frames = {m: n.overlap_counts().query("layer == 'all'").set_index("lang")
              for m, n in result.neurons.items()}  # fmt: skip

    def count(x: Any) -> Cell:
        return Cell(f"{int(x):,}", True)

    intro = (
        "<p><em>Exclusive</em> neurons are in this language's set only; <em>shared</em> "
        "ones are also selected for at least one other language by the same method.</p>"
    )
    columns = [(k, k, count) for k in ("selected", "exclusive", "shared")]
    return intro + _by_language(result.config.langs, frames, columns)


def _jaccard(result: RunResult) -> str:
    table = result.jaccard()
    if table.empty:
        return '<p class="muted">One method only: no two sets to compare.</p>'
    table["pair"] = table["method_a"] + " vs " + table["method_b"]
    wide = table.pivot(index="lang", columns="pair", values="jaccard")
    wide = wide.loc[[x for x in result.config.langs if x in wide.index]]
    pairs = list(dict.fromkeys(table["pair"]))
    intro = (
        "<p>Jaccard index |A ∩ B| ÷ |A ∪ B| of two methods' sets for the same language: "
        "1 = the same neurons, 0 = none in common.</p>"
    )
    rows = [[Cell(_lang(str(lang)), css="lang"), *(_num(wide.loc[lang, p], 2) for p in pairs)]
            for lang in wide.index]  # fmt: skip
    return intro + _table([("language", False), *((p, True) for p in pairs)], rows)


def _matrices(result: RunResult) -> str:
    parts = []
    for method, matrix in result.matrices.items():
        delta = matrix.delta()
        rows = [[Cell(_lang(str(a)), css="lang"),
                 *(Cell(_minus(f"{float(delta.loc[a, b]):.3f}"), True, css="diag" if a == b else "")
                   for b in delta.columns)] for a in delta.index]  # fmt: skip
        rows.append([Cell("unmasked NLL", css="key"),
                     *(_num(matrix.baseline.get(str(b)), 3) for b in delta.columns)])  # fmt: skip
        headers = [("masked ↓ · evaluated →", False), *((str(b), True) for b in delta.columns)]
        parts.append(f"<h3>{_e(method)} ({_e(matrix.mode)} ablation)</h3>"
                     + _table(headers, rows, "matrix"))  # fmt: skip
    return ("<details><summary>Show the ΔNLL matrices (the numbers behind the ablation "
            "heatmaps; the diagonal is each set's own language)</summary>"
            + "".join(parts) + "</details>")  # fmt: skip


def _neuron_pages() -> str:
    """A link to ``crane-lens neurons``' pages (relative: the folder moves as a whole)."""
    return (f'<p><a href="{NEURON_PAGES_DIR}/index.html">Open the neuron pages</a>: the '
            "highest-scored neurons of every set, each with its statistics per language and the "
            "contexts that drive it (written by <code>crane-lens neurons</code>).</p>")  # fmt: skip


def _steering(result: RunResult) -> str:
    """Per steering result: success, staying in the prompt's language and fluency, means over
    every (prompt language, target) pair with 95 % intervals, unsteered and at each strength."""
    intro = (
        "<p>Greedy continuations of held-out prompts in each language while the model is "
        "steered towards another language with that language's set (<code>crane-lens "
        "steer</code>). <em>success</em>: the continuation is identified as the target "
        "language; <em>stay</em>: as the prompt's; <em>NLL</em>: nats per token of the "
        "continuation as a text of its own under the unsteered model (lower = more fluent); "
        "<em>distinct-2</em>: distinct token bigrams ÷ bigrams. <em>random</em>: random sets "
        "of the same per-layer sizes steered the same way; <em>selected − random</em>: the "
        "paired difference, what the set does beyond its size (an interval excluding 0 is the "
        "test). Means over every (prompt language, target) pair; 95 % intervals: bootstrap over "
        "prompts.</p>"
    )  # fmt: skip
    parts = [intro]
    for label, m in result.steering.items():
        summary = m.summary()
        summary = summary[summary.target == "all"]

        def interval(row: pd.Series, key: str) -> Cell:
            low, high = float(row[f"{key}_low"]), float(row[f"{key}_high"])
            text = f"{float(row[key]):.2f}"
            if math.isfinite(low) and math.isfinite(high):
                text += f" [{low:.2f}, {high:.2f}]"
            return Cell(text, True)

        rows = [[Cell(str(r["condition"])), Cell("–" if r["condition"] == "none" else
                 f"{float(r['strength']):g}", True), interval(r, "success"), interval(r, "stay"),
                 interval(r, "nll"), _num(r["distinct_2"], 2), Cell(f"{int(r['n']):,}", True)]
                for _, r in summary.iterrows()]  # fmt: skip
        c = m.config
        parts.append(
            f"<h3>{_e(label)}</h3><p>{_e(c.get('mode'))} steering with the {_e(m.method)} "
            f"sets ({_e(c.get('statistic'))} statistic), targets {_e(', '.join(m.targets))}, "
            f"prompts in {_e(', '.join(m.sources))}; {c.get('random_seeds', 0)} random "
            "set(s) per target.</p>"
            + _table([("condition", False), ("strength", True), ("success [95 % CI]", True),
                      ("stay [95 % CI]", True), ("NLL [95 % CI]", True), ("distinct-2", True),
                      ("n", True)], rows)
        )  # fmt: skip
    return "".join(parts)


def _figure_html(figure: NamedFigure, number: int, div_id: str) -> str:
    import plotly.io as pio

    plot = pio.to_html(figure.figure, full_html=False, include_plotlyjs=False,
                       include_mathjax=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})  # fmt: skip
    return (
        f'<figure id="{_e(div_id)}-figure"><div class="plot">{plot}</div>'
        f"<figcaption><strong>Figure {number}.</strong> {_e(figure.caption)}</figcaption>"
        "</figure>"
    )


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # The bundle contains no "</script"; escaping it keeps that true for any future bundle.
    return get_plotlyjs().replace("</script", "<\\/script")


STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0b5cad;
  --good: #1a7f37; --warn: #fff8e1; --warn-line: #d4a72c; }
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.55 system-ui, -apple-system,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Noto Sans CJK SC",
  "WenQuanYi Zen Hei", sans-serif; }
main { max-width: __MAIN_WIDTH__px; margin: 0 auto; padding: 36px 40px 72px; }
header h1 { font-size: 30px; line-height: 1.2; margin: 0 0 6px; letter-spacing: -0.01em; }
header .run { font-size: 17px; color: var(--muted); margin: 0 0 4px; word-break: break-all; }
header .facts { margin: 10px 0 0; color: var(--fg); max-width: none; }
h2 { font-size: 22px; margin: 48px 0 14px; padding-bottom: 6px; border-bottom: 1px solid var(--line);
  scroll-margin-top: 16px; }
h3 { font-size: 16px; margin: 22px 0 8px; }
p { max-width: 88ch; margin: 8px 0 12px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 0.92em ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  background: var(--soft); padding: 1px 5px; border-radius: 4px; }
nav.toc { margin: 26px 0 8px; padding: 14px 20px; background: var(--soft);
  border: 1px solid var(--line); border-radius: 8px; }
nav.toc h2 { font-size: 13px; text-transform: uppercase; letter-spacing: 0.06em;
  color: var(--muted); margin: 0 0 6px; padding: 0; border: 0; }
nav.toc ol { margin: 0; padding-left: 20px; columns: 2; column-gap: 40px; }
nav.toc li { break-inside: avoid; margin: 1px 0; }
nav.toc ol ol { columns: 1; font-size: 14px; }
ul.conclusions { padding-left: 20px; }
ul.conclusions li { margin: 6px 0; max-width: 100ch; }
ul.conclusions li.ranking { list-style: none; margin-left: -20px; margin-top: 12px; }
ul.warnings { list-style: none; padding: 0; }
ul.warnings li { background: var(--warn); border-left: 4px solid var(--warn-line);
  padding: 9px 14px; margin: 8px 0; border-radius: 0 6px 6px 0; max-width: 110ch; }
p.ok { color: var(--good); }
.muted { color: var(--muted); }
dl.defs { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 10px 0 16px;
  font-size: 14px; max-width: 110ch; }
dl.defs dt { font-weight: 600; }
dl.defs dd { margin: 0; color: var(--muted); }
.table-wrap { overflow-x: auto; margin: 8px 0 8px; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 14px; text-align: left; border-bottom: 1px solid #e8ecf0;
  vertical-align: top; white-space: nowrap; }
thead th { background: var(--soft); border-bottom: 2px solid var(--line); font-weight: 600; }
th.num, td.num { text-align: right; }
small.ci { color: var(--muted); font-size: 0.8em; white-space: nowrap; }
thead th[rowspan] { vertical-align: bottom; }
th.method { text-align: center; border-bottom: 1px solid var(--line); }
th.first, td.first { border-left: 1px solid var(--line); }
td.group { font-weight: 600; border-right: 1px solid #e8ecf0; background: #fff; }
table.grouped tbody tr td.group ~ td, table.grouped tr:has(td.group) td { border-top: 1px solid var(--line); }
td.key { color: var(--muted); }
table.config td:last-child { white-space: normal; }
td.good { color: var(--good); font-weight: 600; }
td.diag { font-weight: 700; background: #fdf1ee; }
td.muted { color: #8c959f; }
details { margin: 10px 0; }
details summary { cursor: pointer; color: var(--accent); }
pre.json { background: var(--soft); padding: 12px 16px; border-radius: 6px; overflow-x: auto;
  font-size: 13px; }
figure { margin: 30px 0 36px; }
figure .plot { overflow-x: auto; padding-top: 28px; }
/* plotly's toolbar (modebar) gets a strip of its own above the figure, so that it never covers a
   title (a narrow figure's title runs under the top right corner, where plotly puts it). */
figure .plot .modebar-container { top: -28px !important; }
figcaption { color: var(--muted); font-size: 14px; margin-top: 6px; max-width: 100ch; }
figcaption strong { color: var(--fg); }
footer { margin-top: 56px; font-size: 13px; color: var(--muted); border-top: 1px solid var(--line);
  padding-top: 10px; }
@media print { nav.toc { display: none; } figure, table { break-inside: avoid; } }
"""  # __MAIN_WIDTH__: the figures' PAGE_WIDTH and main's padding (report_html fills it in)


def report_html(result: RunResult, figures: Sequence[NamedFigure] | None = None) -> str:
    """The report of a run as one self-contained HTML page (every text escaped).

    Args:
        result: A finished run (e.g. ``RunResult.load(folder)``, or what ``run`` returns).
        figures: The figures to show (default: :func:`crane_lens.plots.run_figures` of it).

    Returns:
        The page. It loads nothing from the network: plotly.js is inline, once.
    """
    from crane_lens import __version__
    from crane_lens.plots.matrix import PAGE_WIDTH  # the content column: every figure fits it
    from crane_lens.plots.run import run_figures

    figures = run_figures(result) if figures is None else figures
    c, spec = result.config, result.stats.spec
    meta: dict[str, Any] = {}
    if (result.folder / CONFIG_FILE).is_file():
        meta = json.loads((result.folder / CONFIG_FILE).read_text(encoding="utf-8"))
    versions = meta.get("versions") or dict(result.stats.versions)

    warnings = run_warnings(result.matrices)
    ids: list[str] = []
    for figure in figures:
        base = f"fig-{_slug(figure.name)}"
        ids.append(base if base not in ids else f"{base}-{len(ids) + 1}")
    sections = [
        ("conclusions", "Conclusions", _conclusions(result)),
        ("caveats", f"Caveats ({len(warnings)})", _caveats(warnings)),
        ("selectivity", "Selectivity: ΔNLL when a language's set is masked",
         "<p>ΔNLL = NLL with a language's set masked − unmasked NLL, in nats per token on "
         f"held-out text ({_e(c.mode)} ablation); one row per masked set.</p>"
         + _selectivity(result)),
        ("stability", "How stable are these sets", _stability(result)),
        ("relevance", "Relevance share", _relevance(result)),
        ("overlap", "Exclusive and shared neurons", _overlap(result)),
        ("jaccard", "Overlap between methods (Jaccard)", _jaccard(result)),
        ("matrices", "ΔNLL matrices", _matrices(result)),
        *([("steering", "Steering: switching prompts into a language", _steering(result))]
          if result.steering else []),
        *([("neurons", "Neuron pages", _neuron_pages())]
          if (result.folder / NEURON_PAGES_DIR / "index.html").is_file() else []),
        ("figures", "Figures", "".join(_figure_html(f, i + 1, ids[i])
                                        for i, f in enumerate(figures))
         or '<p class="muted">No figures.</p>'),
        ("configuration", "Run configuration",
         _table([("setting", False), ("value", False)], _config_rows(result, versions), "config")
         + (f"<details><summary>Show {_e(CONFIG_FILE)}</summary><pre class=\"json\">"
            f"{_e(json.dumps(meta, indent=1, ensure_ascii=False))}</pre></details>" if meta else "")),
    ]  # fmt: skip
    figure_toc = "".join(f'<li><a href="#{_e(i)}-figure">{_e(_figure_title(f, spec.name))}</a></li>'
                         for i, f in zip(ids, figures, strict=True))  # fmt: skip
    toc = "".join(
        f'<li><a href="#{key}">{_e(title)}</a>'
        + (f"<ol>{figure_toc}</ol>" if key == "figures" and figure_toc else "") + "</li>"
        for key, title, _ in sections
    )  # fmt: skip
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'
                   for key, title, content in sections)  # fmt: skip
    facts = (f"{spec.n_layers} layers × {spec.d_mlp:,} neurons · {', '.join(c.langs)} · "
             f"{', '.join(c.methods)} · {_percent(c.budget)} per language · {_mode(c)} ablation · "
             f"{c.random_seeds} random seed{'s' if c.random_seeds != 1 else ''}")  # fmt: skip
    # The folder's name: --name when the run was given one, else the settings' name.
    name = result.folder.name or c.name
    title = f"crane-lens report: {name}"
    settings = (f' <span class="muted">(settings: {_e(c.name)})</span>'
                if name != c.name else "")  # fmt: skip
    folder = shlex.quote(str(result.folder))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="crane_lens {_e(__version__)}">
<title>{_e(title)}</title>
<style>{STYLE.replace("__MAIN_WIDTH__", str(PAGE_WIDTH + 2 * 40))}</style>
<script type="text/javascript">window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script type="text/javascript">{_plotly_js()}</script>
</head>
<body>
<main>
<header>
<h1>crane-lens report</h1>
<p class="run">{_e(name)}{settings}</p>
<p class="facts"><strong>{_e(c.model)}</strong> · {_e(facts)}</p>
</header>
<nav class="toc" aria-label="Contents"><h2>Contents</h2><ol>{toc}</ol></nav>
{body}
<footer><p>Written by crane_lens {_e(__version__)} from {_e(result.folder)}. Self-contained: it
loads nothing from the network.</p>
<p>Regenerate: <code>crane-lens report {_e(folder)}</code><br>
Figure files: <code>crane-lens figures {_e(folder)} --format png,svg,pdf</code></p></footer>
</main>
</body>
</html>
"""


def write_report(
    run: RunResult | str | os.PathLike[str], path: str | os.PathLike[str] | None = None
) -> Path:
    """Write the report of a run, atomically (a reader never sees half a file).

    Args:
        run: A finished run folder, or the :class:`~crane_lens.runs.RunResult` of one.
        path: The file (default: ``<run folder>/report.html``).

    Returns:
        The file written.

    Raises:
        CraneLensError: The folder holds no finished run (checked before any work).
    """
    result = run if isinstance(run, RunResult) else RunResult.load(check_run_folder(run))
    target = Path(path) if path is not None else result.folder / REPORT_FILE
    return write_text(target, report_html(result))
