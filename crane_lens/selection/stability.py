"""How stable the selected sets are: split-half agreement and convergence with more text.

With little text per language, the neurons a method selects depend on which text it saw. From
statistics with per-part sums (``compute_stats(..., parts=True)``, the default), without
another pass over the model, :func:`selection_stability` selects every language's set again on

* two disjoint halves of each language's blocks (the even and the odd blocks) and reports the
  Jaccard index ``|A ∩ B| / |A ∪ B|`` of the two sets of each language (split-half
  agreement), and
* nested prefixes of the blocks (the first 1/16, 1/8, 1/4, 1/2 and all of them), each compared
  with the set selected on all of the text (convergence),

beside the chance level: the Jaccard index two random sets of the same sizes would have.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from crane_lens.data.languages import language_name
from crane_lens.errors import CraneLensError
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.select import DEFAULT_BUDGET, DEFAULT_RULE, select_language_neurons
from crane_lens.stats.results import FRACTIONS, NO_PARTS, NeuronStats, parts_of
from crane_lens.utils.io import write_json

if TYPE_CHECKING:
    import pandas as pd

STABILITY_FILE = "stability.json"
FORMAT = "crane_lens.selection_stability"
# describe() calls a median "near chance" when it is within this much of the chance level.
NEAR_CHANCE = 0.05
# The prefix describe() quotes.
QUOTED_FRACTION = 1 / 4
_DISPLAY = {"crane": "CRANE", "lape": "LAPE", "plnd": "PLND", "kojima": "Kojima",
            "grad_act": "grad×act"}  # fmt: skip
_COLUMNS = ["kind", "method", "lang", "fraction", "tokens_a", "tokens_b", "size_a", "size_b",
            "jaccard", "chance"]  # fmt: skip


def chance_jaccard(size_a: int, size_b: int, n: int) -> float:
    """The expected Jaccard index of two independent, uniformly random sets of ``size_a`` and
    ``size_b`` neurons out of ``n`` (the whole layer × neuron grid).

    Exact, not drawn: the intersection ``X`` of two such sets is hypergeometric,
    ``P(X = x) = C(a, x) C(n − a, b − x) / C(n, b)``, and the expectation of
    ``x / (a + b − x)`` is summed over every possible ``x`` (in float64).

    Args:
        size_a: Neurons in the first set.
        size_b: Neurons in the second set.
        n: Neurons to draw from.

    Returns:
        The expected Jaccard index; NaN when both sets are empty.

    Example:
        >>> round(chance_jaccard(41, 41, 4096), 5)  # 1 % of crane-tiny's neurons, twice
        0.00509
        >>> chance_jaccard(5, 5, 5), chance_jaccard(0, 3, 10)
        (1.0, 0.0)
    """
    a, b = int(size_a), int(size_b)
    if not 0 <= a <= n or not 0 <= b <= n:
        raise ValueError(f"Set sizes {a} and {b} must lie between 0 and {n}.")
    if a == 0 and b == 0:
        return math.nan
    x = torch.arange(max(0, a + b - n), min(a, b) + 1, dtype=torch.float64)
    # P(x + 1) / P(x) = (a − x)(b − x) / ((x + 1)(n − a − b + x + 1)): the pmf up to a factor,
    # from its log-ratios, then normalised — no large binomials, no cancellation.
    step = x[:-1]
    log_ratio = ((a - step) * (b - step)).log() - ((step + 1) * (n - a - b + step + 1)).log()
    log_p = torch.cat([torch.zeros(1, dtype=torch.float64), log_ratio.cumsum(0)])
    p = (log_p - log_p.max()).exp()
    return float((p * x / (a + b - x)).sum() / p.sum())


def _same_language_jaccard(a: LanguageNeurons, b: LanguageNeurons) -> dict[str, float]:
    """Per language, the Jaccard index of ``a``'s and ``b``'s sets (the diagonal of one table)."""
    table = a.jaccard(b)
    return {lang: float(table.loc[lang, lang]) for lang in a.langs}


def _label(fraction: float) -> str:
    return "all" if fraction == 1 else f"1/{round(1 / fraction)}"


def method_label(method: str) -> str:
    """How reports name a method: ``"CRANE"``, ``"LAPE"``, ``"PLND"``... (others as given)."""
    return _DISPLAY.get(method, method)


def _percent(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:.1f} %" if value < 0.095 else f"{100 * value:.0f} %"


@dataclass
class SelectionStability:
    """Split-half agreement and convergence of every method's selected sets.

    Attributes:
        model: Name of the model the statistics come from.
        methods: The methods compared, in order.
        langs: The languages, in order.
        rows: One record per comparison (what :meth:`to_dataframe` shows): ``kind``
            (``"split_half"``: half 0 against half 1; ``"convergence"``: a prefix against all
            of the text), ``method``, ``lang``, ``fraction`` (of each language's blocks in set
            A: 0.5 for a half, the prefix's for convergence), ``tokens_a`` / ``tokens_b``
            (predicted tokens behind set A and set B), ``size_a`` / ``size_b`` (neurons in the
            sets), ``jaccard`` and ``chance`` (:func:`chance_jaccard` of those sizes).
        n_neurons: Neurons in the model (the grid random sets are drawn from).
        config: How the sets were selected (``budget``, ``k``, the other selection settings)
            and what the statistics were (``stats``: seq_len, seed, tokens...).
    """

    model: str
    methods: list[str]
    langs: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    n_neurons: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    # -- tables -----------------------------------------------------------------------------
    def to_dataframe(self) -> pd.DataFrame:
        """Every comparison, one row each (see :attr:`rows`)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=_COLUMNS)

    def split_half(self) -> pd.DataFrame:
        """Split-half Jaccard index: rows languages, columns methods."""
        frame = self.to_dataframe()
        frame = frame[frame["kind"] == "split_half"]
        table = frame.pivot(index="lang", columns="method", values="jaccard")
        return table.reindex(index=self.langs, columns=self.methods).rename_axis(
            index="lang", columns=None
        )

    def convergence(self) -> pd.DataFrame:
        """Jaccard index of the set selected on each prefix with the set from all of the text.

        Returns:
            Long format: ``method``, ``lang``, ``fraction``, ``tokens`` (predicted tokens of
            the language in the prefix), ``jaccard``, ``chance``.
        """
        frame = self.to_dataframe()
        frame = frame[frame["kind"] == "convergence"]
        frame = frame.rename(columns={"tokens_a": "tokens"})
        columns = ["method", "lang", "fraction", "tokens", "jaccard", "chance"]
        return frame[columns].reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """Per method: ``median``, ``min`` and ``min_lang`` of the split-half Jaccard index over
        languages, ``chance`` (median chance level of the same set sizes), ``tokens`` (median
        predicted tokens per language in a half) and ``converged`` (median Jaccard index with
        the full-data sets at :data:`QUOTED_FRACTION` of the text)."""
        import pandas as pd

        frame = self.to_dataframe()
        rows = {}
        for method in self.methods:
            half = frame[(frame["kind"] == "split_half") & (frame["method"] == method)]
            known = half.dropna(subset=["jaccard"])
            worst = known.loc[known["jaccard"].idxmin()] if len(known) else None
            quoted = frame[(frame["kind"] == "convergence") & (frame["method"] == method)
                           & frame["fraction"].map(lambda f: math.isclose(f, QUOTED_FRACTION))]  # fmt: skip
            rows[method] = {
                "median": float(known["jaccard"].median()) if len(known) else math.nan,
                "min": float(worst["jaccard"]) if worst is not None else math.nan,
                "min_lang": str(worst["lang"]) if worst is not None else None,
                "chance": float(half["chance"].median()) if len(half) else math.nan,
                "tokens": float(half[["tokens_a", "tokens_b"]].min(axis=1).median())
                if len(half) else math.nan,
                "converged": float(quoted["jaccard"].median()) if len(quoted) else math.nan,
            }  # fmt: skip
        columns = ["median", "min", "min_lang", "chance", "tokens", "converged"]
        return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("method")

    def describe(self) -> str:
        """One sentence per method, one line each, e.g. "CRANE: two disjoint halves of the text
        (1,016 tokens per language each) give sets that share a median 53 % (Jaccard index) of
        each language's neurons (lowest: Portuguese, 30 %; chance 0.5 %); at 1/4 of the text
        the sets share 70 % with the full-data sets." A median within :data:`NEAR_CHANCE` of
        the chance level is called near chance."""
        summary = self.summary()
        lines = []
        for method, row in summary.iterrows():
            name = method_label(str(method))
            if math.isnan(row["median"]):
                lines.append(f"{name}: no split-half comparison (too few blocks per language).")
                continue
            near = row["median"] - row["chance"] <= NEAR_CHANCE
            lowest = (f"lowest: {language_name(row['min_lang'])}, {_percent(row['min'])}; "
                      if len(self.langs) > 1 else "")  # fmt: skip
            text = (
                f"{name}: two disjoint halves of the text ({row['tokens']:,.0f} tokens per "
                f"language each) give sets that share a median {_percent(row['median'])} "
                f"(Jaccard index) of each language's neurons ({lowest}chance "
                f"{_percent(row['chance'])}{', so near chance' if near else ''})"
            )
            if not math.isnan(row["converged"]):
                text += (f"; at {_label(QUOTED_FRACTION)} of the text the sets share "
                         f"{_percent(row['converged'])} with the full-data sets")  # fmt: skip
            lines.append(text + ".")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:  # NaN is not JSON: null
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "format": FORMAT, "format_version": 1, "model": self.model,
            "methods": self.methods, "langs": self.langs, "n_neurons": self.n_neurons,
            "config": self.config,
            "rows": [{k: clean(v) for k, v in row.items()} for row in self.rows],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectionStability:
        if data.get("format") != FORMAT:
            raise CraneLensError(f"Not a selection-stability file (no 'format': {FORMAT!r}).")
        rows = [{k: math.nan if v is None and k in ("jaccard", "chance") else v
                 for k, v in row.items()} for row in data["rows"]]  # fmt: skip
        return cls(data["model"], list(data["methods"]), list(data["langs"]), rows,
                   int(data.get("n_neurons", 0)), dict(data.get("config", {})))  # fmt: skip

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``stability.json`` into ``directory`` (atomically); returns its path."""
        return write_json(Path(directory) / STABILITY_FILE, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SelectionStability:
        """Read what :meth:`save` wrote (the folder or the file itself)."""
        path = Path(path)
        file = path / STABILITY_FILE if path.is_dir() else path
        if not file.is_file():
            raise CraneLensError(f"No {STABILITY_FILE} at {path}.")
        return cls.from_dict(json.loads(file.read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        medians = ", ".join(f"{m}: {v:.2f}" for m, v in self.summary()["median"].items())
        return f"SelectionStability({self.model}, split-half median Jaccard {{{medians}}})"


def selection_stability(
    stats: NeuronStats,
    methods: str | list[str] | None = None,
    *,
    budget: float | None = DEFAULT_BUDGET,
    k: int | None = None,
    **select_kwargs: Any,
) -> SelectionStability:
    """How much each method's selected sets depend on the text the statistics saw.

    For every method, with the same settings each time (:func:`select_language_neurons`):

    * **split-half**: the sets selected on two disjoint halves of every language's blocks (the
      even and the odd blocks, :meth:`NeuronStats.part`), compared language by language by
      their Jaccard index ``|A ∩ B| / |A ∪ B|``;
    * **convergence**: the set selected on the first 1/16, 1/8, 1/4, 1/2 and all of the
      blocks, each compared with the set selected on all of them;
    * **chance**: the exact expected Jaccard index of two uniformly random sets of the same
      sizes drawn from the whole layer × neuron grid (:func:`chance_jaccard`) — what the
      agreement would be if the sets were noise.

    No pass over the model: the halves and prefixes come from the per-part sums
    ``compute_stats`` accumulates (``parts=True``, the default). Each half holds half of the
    tokens, so the split-half agreement measures sets selected on half the text; sets selected
    on all of it would typically agree better (the convergence curve shows how fast).

    Args:
        stats: Statistics with per-part sums (:attr:`NeuronStats.has_parts`).
        methods: Methods to compare (default: every method of ``stats``).
        budget: Neurons per language as a fraction of all MLP neurons, as in
            :func:`select_language_neurons` (LAPE: its rule, with the same budget).
        k: Neurons per language as a count (overrides ``budget``).
        select_kwargs: Further settings of :func:`select_language_neurons` (``rule``,
            ``statistic``, ``langs``, ``lape_ratio``, ``top_rate``); ``top_rate`` goes to LAPE
            only, where it replaces ``budget`` and ``k`` (as in a pipeline run).

    Returns:
        :class:`SelectionStability`.

    Raises:
        CraneLensError: ``stats`` has no per-part sums (recompute with ``parts=True``) or a
            language with fewer than two blocks (no second half).

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> corpus = cl.load_corpus("builtin", langs=["en", "vi", "zh"])
        >>> stats = cl.compute_stats(model, corpus, "crane", max_tokens_per_lang=512,
        ...                          progress=False)
        >>> stability = cl.selection_stability(stats)
        >>> list(stability.split_half().columns), stability.convergence()["fraction"].unique()
        (['crane'], array([0.0625, 0.125 , 0.25  , 0.5   , 1.    ]))
    """
    if not stats.has_parts:
        raise CraneLensError(
            f"selection_stability needs statistics with per-part sums, which these lack: "
            f"{NO_PARTS}."
        )
    chosen = list(stats.methods) if methods is None else (
        [methods] if isinstance(methods, str) else list(methods)
    )  # fmt: skip
    if not chosen:
        raise ValueError("selection_stability needs at least one method.")
    langs = list(select_kwargs.get("langs") or stats.langs)
    few = {lang: stats.n_blocks(lang) for lang in stats.langs if sum(
        stats.part_tokens[lang][p] for p in parts_of("half", 1)) == 0}  # fmt: skip
    if few:
        raise CraneLensError(
            f"Split halves need two blocks per language at least; {few} (blocks) have fewer. "
            "Compute the statistics on more text."
        )

    def select(on: NeuronStats) -> dict[str, LanguageNeurons]:
        out = {}
        for method in chosen:
            kwargs = dict(select_kwargs)
            rule = kwargs.get("rule") or DEFAULT_RULE.get(method)
            count = k
            if rule != "lape":
                kwargs.pop("top_rate", None)  # LAPE's total budget; the others take budget/k
            elif kwargs.get("top_rate") is not None:
                count = None  # LAPE's own total budget replaces the per-language one
            out[method] = select_language_neurons(on, method, budget=budget, k=count, **kwargs)
        return out

    def tokens(on: NeuronStats) -> dict[str, int]:
        return {lang: on.n_tokens[lang] for lang in langs}

    # One subset at a time: each holds a copy of the sums, freed before the next.
    full, full_tokens = select(stats), tokens(stats)
    halves = []
    for which in (0, 1):
        half = stats.part("half", which)
        halves.append((select(half), tokens(half)))
        del half
    prefixes = {}
    for fraction in FRACTIONS:
        if fraction == 1:
            prefixes[fraction] = (full, full_tokens)
            continue
        prefix = stats.part("fraction", fraction)
        prefixes[fraction] = (select(prefix), tokens(prefix))
        del prefix

    n = stats.spec.n_neurons
    rows: list[dict[str, Any]] = []

    def compare(kind: str, fraction: float, a: Any, b: Any, method: str) -> None:
        (sets_a, tokens_a), (sets_b, tokens_b) = a, b
        jaccard = _same_language_jaccard(sets_a[method], sets_b[method])
        for lang in langs:
            size_a, size_b = sets_a[method].count(lang), sets_b[method].count(lang)
            rows.append({"kind": kind, "method": method, "lang": lang, "fraction": fraction,
                         "tokens_a": tokens_a[lang], "tokens_b": tokens_b[lang],
                         "size_a": size_a, "size_b": size_b, "jaccard": jaccard[lang],
                         "chance": chance_jaccard(size_a, size_b, n)})  # fmt: skip

    for method in chosen:
        compare("split_half", 0.5, halves[0], halves[1], method)
        for fraction, selected in prefixes.items():
            compare("convergence", fraction, selected, (full, full_tokens), method)
    config = {
        "budget": None if k is not None else budget, "k": k,
        "select": dict(select_kwargs),
        "rules": {m: full[m].config.get("rule") for m in chosen},
        "stats": {key: stats.config.get(key) for key in
                  ("seq_len", "seed", "max_tokens_per_lang", "target", "attention", "objective")
                  if key in stats.config},
    }  # fmt: skip
    return SelectionStability(stats.spec.name, chosen, langs, rows, n, config)
