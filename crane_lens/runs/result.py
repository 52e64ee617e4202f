"""What a run produced, :class:`RunResult` (read back from its folder by :meth:`RunResult.load`),
and :func:`lape_budget`, the budget its LAPE selection used, in words."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crane_lens.errors import CraneLensError
from crane_lens.evaluation.ablation import AblationMatrix
from crane_lens.evaluation.relevance import relevance_selectivity
from crane_lens.evaluation.steering import STEERING_FILE, SteeringMatrix
from crane_lens.runs.config import RunConfig
from crane_lens.runs.layout import STABILITY_DIR, STEERING_DIR, read_config, saved
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.stability import STABILITY_FILE, SelectionStability
from crane_lens.stats.results import NeuronStats


@dataclass
class RunResult:
    """Everything a run produced (also what :meth:`load` reads back from its folder)."""

    folder: Path
    config: RunConfig
    stats: NeuronStats
    neurons: dict[str, LanguageNeurons]
    matrices: dict[str, AblationMatrix]
    eval_stats: NeuronStats | None = None
    resolved: dict[str, str] = field(default_factory=dict)
    """What the run computed on: ``device``, ``dtype`` and ``dtype_choice`` (the dtype, what was
    asked and why); empty for runs saved before crane_lens recorded it."""
    report: Path | None = None
    """The report.html this call of :func:`~crane_lens.pipeline.run` wrote (on rank 0); ``None``
    where writing it failed (the error was logged), on other ranks, and for a result read by
    :meth:`load`."""
    stability: SelectionStability | None = None
    """How much each method's sets depend on the training text (split halves, nested
    fractions; :func:`crane_lens.selection_stability`); ``None`` where the statistics have no
    per-part sums (a run begun by an older crane_lens)."""
    steering: dict[str, SteeringMatrix] = field(default_factory=dict)
    """``crane-lens steer``'s results, by folder name (``"crane-replace"``...; empty: none)."""

    def selectivity(self) -> Any:
        """Every method's selectivity table stacked (index: method, masked language)."""
        import pandas as pd

        return pd.concat({m: x.selectivity() for m, x in self.matrices.items()}, names=["method"])

    def relevance(self) -> Any:
        """Relevance-based selectivity per method and language (held-out CRANE relevance)."""
        import pandas as pd

        if self.eval_stats is None:
            raise CraneLensError("This run has no held-out relevance statistics.")
        return pd.concat({m: relevance_selectivity(n, self.eval_stats)
                          for m, n in self.neurons.items()}, names=["method"])  # fmt: skip

    def jaccard(self) -> Any:
        """Per language, Jaccard overlap between every pair of methods' sets."""
        import pandas as pd

        rows = []
        names = list(self.neurons)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                table = self.neurons[a].jaccard(self.neurons[b])
                rows += [{"method_a": a, "method_b": b, "lang": lang,
                          "jaccard": float(table.loc[lang, lang])}
                         for lang in self.neurons[a].langs if lang in table.columns]  # fmt: skip
        return pd.DataFrame(rows, columns=["method_a", "method_b", "lang", "jaccard"])

    def summary(self) -> str:
        """A readable report: per method and language, set size, ΔNLL and selectivity with
        intervals and p-values, the conclusions and caveats of the HTML report, the matrices."""
        from crane_lens.evaluation.findings import method_conclusion, ranking, run_warnings

        lines = [f"# crane-lens run: {self.folder.name or self.config.name}", "",
                 f"model {self.stats.spec.name} ({self.stats.spec.n_layers} layers × "
                 f"{self.stats.spec.d_mlp} neurons); languages {', '.join(self.config.langs)}; "
                 f"budget {self.config.budget:g} per language; intervention {self.config.mode}"
                 f"{'' if self.config.factor is None else f' × {self.config.factor:g}'}; "
                 f"{self.config.random_seeds} random control seeds.", "",
                 "ΔNLL = NLL with the set masked − unmasked NLL (nats/token), held-out text.", "",
                 "## Selectivity", ""]  # fmt: skip
        if "lape" in self.neurons:
            lines[4:4] = [f"LAPE budget: {lape_budget(self.config, self.neurons['lape'])}.", ""]
        table = self.selectivity().reset_index()

        def with_interval(key: str, digits: int = 3) -> list[str]:
            return [f"{v:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]"
                                         if math.isfinite(lo) and math.isfinite(hi) else "")
                    for v, lo, hi in zip(table[key], table[f"{key}_low"], table[f"{key}_high"],
                                         strict=True)]  # fmt: skip

        has_intervals = bool(table["own_low"].notna().any())
        ci = " [95 % CI]" if has_intervals else ""
        table[f"own{ci}"], table[f"index{ci}"] = with_interval("own"), with_interval("index", 2)
        columns = ["method", "masked", "n_neurons", f"own{ci}", "others", "ratio", f"index{ci}"]
        if "random_own" in table:
            table["random (mean ± std)"] = [f"{m:.3f} ± {s:.3f}" for m, s in
                                            zip(table.random_own, table.random_own_std, strict=True)]  # fmt: skip
            columns += ["random (mean ± std)", "vs_random", "p_value"]
        lines += [table[columns].to_markdown(index=False, floatfmt=".3f"), ""]
        lines += [
            "## Conclusions",
            "",
            *(f"- {method_conclusion(m)}" for m in self.matrices.values()),
        ]
        if line := ranking(self.matrices):
            lines += [f"- {line}"]
        warnings = run_warnings(self.matrices)
        lines += ["", *(["## Caveats", "", *(f"- {w}" for w in warnings), ""] if warnings else [])]
        if self.stability is not None:
            lines += ["## How stable are these sets", "",
                      *(f"- {line}" for line in self.stability.describe().splitlines()), ""]  # fmt: skip
        for method, matrix in self.matrices.items():
            lines += [f"## ΔNLL matrix, {method} (rows: masked set, columns: evaluated)", "",
                      matrix.delta().to_markdown(floatfmt=".3f"), ""]  # fmt: skip
        if self.eval_stats is not None:
            lines += ["## Relevance share (held-out CRANE relevance captured by each set)", "",
                      self.relevance().reset_index().to_markdown(index=False, floatfmt=".3f"), ""]  # fmt: skip
        counts = [n.overlap_counts().query("layer == 'all'").assign(method=m)
                  for m, n in self.neurons.items()]  # fmt: skip
        if counts:
            import pandas as pd

            frame = pd.concat(counts)[["method", "lang", "selected", "exclusive", "shared"]]
            lines += ["## Exclusive and shared neurons", "",
                      frame.to_markdown(index=False), ""]  # fmt: skip
        lines += [f"Results: {self.folder}"]
        return "\n".join(lines)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> RunResult:
        """Read a finished run folder.

        Raises:
            CraneLensError: The folder holds no complete run.
        """
        folder = Path(folder)
        meta = read_config(folder)
        if meta is None or not meta.get("complete"):
            raise CraneLensError(
                f"{folder} holds no complete crane-lens run; re-run the command that made it "
                "to finish it."
            )
        config = RunConfig.from_saved(meta["config"])
        eval_dir = folder / "eval_stats"
        return cls(
            folder, config, NeuronStats.load(folder / "stats"),
            {m: LanguageNeurons.load(folder / "neurons" / f"{m}.json") for m in config.methods},
            {m: AblationMatrix.load(folder / "ablation" / m) for m in config.methods},
            NeuronStats.load(eval_dir) if (eval_dir / "stats.json").is_file() else None,
            dict(meta.get("resolved") or {}),
            stability=SelectionStability.load(folder / STABILITY_DIR)
            if saved(folder / STABILITY_DIR / STABILITY_FILE) else None,
            steering=load_steering(folder),
        )  # fmt: skip


def load_steering(folder: str | os.PathLike[str]) -> dict[str, SteeringMatrix]:
    """Every steering result in a run folder, by its folder name (``crane-replace``...)."""
    root = Path(folder) / STEERING_DIR
    found = sorted(root.glob(f"*/{STEERING_FILE}")) if root.is_dir() else []
    return {path.parent.name: SteeringMatrix.load(path.parent) for path in found}


def lape_budget(config: RunConfig, neurons: LanguageNeurons) -> str:
    """Which budget a run's LAPE selection used, in words (logged, and in the summary).

    Example:
        >>> import torch
        >>> sets = LanguageNeurons(4, 1024, {"en": torch.zeros(0, 2)}, method="lape", config={
        ...     "budget_semantics": "matched mean set size per language", "k": 41,
        ...     "top_rate": 69 / 4096, "n_kept_total": 69, "mean_set_size": 41.33})
        >>> lape_budget(RunConfig(), sets)  # doctest: +NORMALIZE_WHITESPACE
        'mean set size 41.3 per language, matched to k = 41 (1 % per language): the smallest
        total whose assignment reaches it, 69 of the 4096 MLP neurons (top_rate 0.0168); the
        published recipe keeps 1 % in total: --lape-top-rate 0.01'
    """
    recorded = neurons.config
    n_neurons = neurons.n_layers * neurons.d_mlp
    rate = float(recorded.get("top_rate", config.lape_top_rate or float("nan")))
    n_kept = recorded.get("n_kept_total", round(rate * n_neurons))
    kept = f"{n_kept} of the {n_neurons} MLP neurons"
    mean = recorded.get("mean_set_size")
    if recorded.get("budget_semantics") == "matched mean set size per language":
        k = recorded["k"]
        how = ("the smallest total whose assignment reaches it" if mean >= k else
               "short of k even with every neuron LAPE deems eligible")  # fmt: skip
        return (
            f"mean set size {mean:.1f} per language, matched to k = {k} "
            f"({config.budget * 100:g} % per language): {how}, {kept} (top_rate {rate:.3g}); "
            "the published recipe keeps 1 % in total: --lape-top-rate 0.01"
        )
    if config.lape_top_rate is None:  # selected by an older crane_lens: k × languages in total
        return (
            f"top_rate {rate:.3g} = {config.budget * 100:g} % per language × "
            f"{len(config.langs)} languages ({kept} in total, an older crane_lens's reading: "
            "the sets average more than k where neurons are shared; the published recipe keeps "
            "1 % in total: --lape-top-rate 0.01)"
        )
    published = "the published recipe's budget" if rate == 0.01 else "the published recipe: 0.01"
    mean_text = "" if mean is None else f"; mean set size {mean:.1f} per language"
    return (
        f"top_rate {rate:g} in total, LAPE's own budget ({published}; {kept} in total, each "
        f"assigned to every language whose activation probability passes the bar{mean_text})"
    )
