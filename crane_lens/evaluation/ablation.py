"""The ablation matrix: mask language A's neurons, measure the NLL of language B.

Text is each language's held-out stream (:func:`crane_lens.evaluation.stream_tokens`: texts
joined with EOS + BOS, cut into BOS-prefixed blocks; separators are never scored), capped at
``max_tokens_per_lang``. Every condition — the unmasked baseline, each language's set, and random
sets of the same per-layer sizes for several seeds — runs on exactly the same tokens. Conditions
are stacked along the batch dimension (:func:`crane_lens.intervention.stacked_hooks`), so one
forward pass evaluates several maskings; with ``checkpoint_dir`` every finished
(language, condition chunk) is written at once and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Bool, Float64, Int
from torch import Tensor

from crane_lens.errors import CraneLensError, OutputExistsError
from crane_lens.evaluation.intervals import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    MIN_INTERVAL_BLOCKS,
    empirical_p_value,
    selectivity_index,
)
from crane_lens.evaluation.nll import stream_tokens
from crane_lens.intervention.hooks import Intervention, Mode, intervention, stacked_hooks
from crane_lens.model.runner import gold_scores, pad_rows
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.selection.select import random_neurons
from crane_lens.utils import distributed as dist
from crane_lens.utils.io import atomic_path, write_json
from crane_lens.utils.progress import tqdm

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.data.corpus import Corpus

log = logging.getLogger(__name__)

MATRIX_FILE, CHECKPOINT_FILE = "matrix.json", "ablation_checkpoint.json"
BASELINE = "baseline"
RandomLangs = Literal["all", "own"]


@dataclass
class EvalBlocks:
    """One language's held-out token blocks and which predicted positions are scored."""

    tokens: Int[Tensor, "block pos"]
    scored: Bool[Tensor, "block pos_minus_1"]

    @property
    def n_tokens(self) -> int:
        return int(self.scored.sum())

    @property
    def block_tokens(self) -> list[int]:
        """Scored tokens of each block."""
        return [int(n) for n in self.scored.sum(dim=1)]


EVAL_BATCH_ROWS = 8  # rows per pass: logits are never materialised, so no vocabulary term


def eval_blocks(
    model: Any, corpus: Corpus, langs: list[str], *, seq_len: int = 256,
    max_tokens_per_lang: int | None = 4096,
) -> dict[str, EvalBlocks]:  # fmt: skip
    """Each language's texts as a stream of blocks (at most ``max_tokens_per_lang`` tokens)."""
    out = {}
    for lang in langs:
        blocks, owners = stream_tokens(model, corpus[lang], seq_len)
        if max_tokens_per_lang is not None:
            keep = max(1, max_tokens_per_lang // seq_len)
            blocks, owners = blocks[:keep], owners[:keep]
        tokens, _ = pad_rows(blocks, pad=0)
        owner, _ = pad_rows(owners, pad=-1)
        out[lang] = EvalBlocks(tokens, owner[:, 1:] >= 0)
    return out


@torch.no_grad()
def conditions_nll(
    model: Any,
    blocks: EvalBlocks,
    conditions: list[Intervention],
    *,
    max_batch_rows: int = 8,
    stack: bool = True,
) -> Float64[Tensor, "condition block"]:
    """Summed NLL (nats) of every block of ``blocks`` under each condition.

    Per block, not per language, so that intervals can resample blocks
    (:meth:`AblationMatrix.intervals`); ``blocks.block_tokens`` gives each block's scored tokens
    and ``nats.sum(1) / blocks.n_tokens`` the mean NLL.

    Args:
        model: A TransformerBridge.
        blocks: Token blocks of one language.
        conditions: Interventions (``Intervention({}, {})`` is the unmasked model).
        max_batch_rows: Rows per forward pass (conditions × blocks).
        stack: Evaluate several conditions per forward pass (``False``: one forward pass per
            condition and block chunk — the same numbers, for benchmarking).

    Returns:
        ``[condition, block]`` float64 on the CPU.
    """
    n_blocks = len(blocks.tokens)
    rows = min(n_blocks, max_batch_rows)
    per_pass = max(1, max_batch_rows // rows) if stack else 1
    nats: Tensor | None = None  # per condition and block, on the device: no host sync per pass
    for start in range(0, n_blocks, rows):
        tokens = blocks.tokens[start : start + rows]
        scored = blocks.scored[start : start + rows]
        for first in range(0, len(conditions), per_pass):
            chunk = conditions[first : first + per_pass]
            logp = gold_scores(model, tokens.repeat(len(chunk), 1),
                               hooks=stacked_hooks(chunk, len(tokens)))  # fmt: skip
            nll = -(logp.reshape(len(chunk), *scored.shape) * scored.to(logp.device)).sum(dim=2)
            if nats is None:
                nats = torch.zeros(len(conditions), n_blocks, dtype=nll.dtype, device=nll.device)
            nats[first : first + len(chunk), start : start + len(tokens)] = nll
    assert nats is not None
    return nats.cpu().double()


@dataclass
class AblationMatrix:
    """Mean NLL per evaluated language under each masking, and what it is compared with.

    Attributes:
        method: The method whose sets were masked.
        mode: The intervention (``zero``, ``mean``...).
        masked: Languages whose sets were masked (rows).
        evaluated: Languages evaluated (columns).
        baseline: ``B -> nll`` of the unmasked model.
        nll: ``A -> B -> nll`` with A's set masked.
        random_nll: ``A -> B -> [nll per seed]`` with random sets of A's per-layer sizes (only
            ``A -> A`` when the random sets were evaluated on their own language alone,
            ``random_langs="own"``).
        n_neurons: ``A -> size`` of A's set.
        tokens: ``B -> scored tokens``.
        config: Settings of the run.
        per_block: What the means are made of, per held-out block: ``{"tokens": {B: [n]},
            "baseline": {B: [nats]}, "selected": {A: {B: [nats]}}, "random": {A: {B: [[nats]
            per seed]}}}`` (summed NLL of each block); ``None`` in matrices saved before
            crane_lens kept it — they load, without intervals.
    """

    method: str
    mode: str
    masked: list[str]
    evaluated: list[str]
    baseline: dict[str, float]
    nll: dict[str, dict[str, float]]
    random_nll: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    n_neurons: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    per_block: dict[str, Any] | None = None
    _intervals: dict[tuple[float, int, int], pd.DataFrame | str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _frame(self, table: dict[str, dict[str, float]]) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(table).T.loc[self.masked, self.evaluated]
        frame.index.name, frame.columns.name = "masked", "evaluated"
        return frame

    def delta(self) -> pd.DataFrame:
        """ΔNLL (nats/token) = masked − baseline; rows masked, columns evaluated."""
        return self._frame({a: {b: self.nll[a][b] - self.baseline[b] for b in self.evaluated}
                            for a in self.masked})  # fmt: skip

    def relative(self) -> pd.DataFrame:
        """ΔNLL / baseline NLL."""
        return self.delta() / self._frame({a: self.baseline for a in self.masked})

    def random_delta(self, reduce: str = "mean") -> pd.DataFrame:
        """ΔNLL of the random control sets: ``reduce`` over seeds (``"mean"`` or ``"std"``)."""
        if not self.random_nll:
            raise CraneLensError("This matrix was computed without random control sets.")
        out: dict[str, dict[str, float]] = {}
        for a in self.masked:
            out[a] = {}
            for b in self.evaluated:
                if b not in self.random_nll[a]:  # random_langs="own": not evaluated there
                    out[a][b] = math.nan
                    continue
                values = torch.tensor(self.random_nll[a][b], dtype=torch.float64)
                values = values - self.baseline[b]
                if reduce == "mean":
                    out[a][b] = float(values.mean())
                else:  # undefined for one seed: NaN, without torch's warning
                    out[a][b] = float(values.std(correction=1)) if len(values) > 1 else math.nan
        return self._frame(out)

    # -- uncertainty -----------------------------------------------------------------------
    def intervals_unavailable(self) -> str | None:
        """Why :meth:`intervals` cannot be computed (``None`` when it can)."""
        if self.per_block is None:
            return ("this matrix was saved before crane_lens kept per-block results; recompute "
                    "it (crane-lens run --overwrite, or ablation_matrix) for intervals")  # fmt: skip
        few = {
            b: len(n) for b, n in self.per_block["tokens"].items() if len(n) < MIN_INTERVAL_BLOCKS
        }
        if few:
            return (f"intervals resample held-out blocks and mean little from fewer than "
                    f"{MIN_INTERVAL_BLOCKS} per language; {', '.join(f'{b} has {n}' for b, n in few.items())}"
                    " (give more held-out text per language, or shorter blocks: --eval-tokens, "
                    "--eval-seq-len; max_tokens_per_lang, seq_len)")  # fmt: skip
        return None

    def intervals(
        self, level: float = DEFAULT_LEVEL, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
    ) -> pd.DataFrame:
        """Bootstrap intervals of every ΔNLL cell and of each set's own, others, index and
        vs_random (and their means over the sets), resampling held-out blocks — paired across
        conditions, stratified by language (:mod:`crane_lens.evaluation.intervals`).

        Args:
            level: Confidence level.
            n_resamples: Bootstrap resamples.
            seed: Seed of the resampling: the same seed gives the same intervals.

        Returns:
            One row per quantity: ``quantity`` (``delta``, ``own``, ``others``, ``index``,
            ``vs_random``, ``mean_own``, ``mean_others``, ``mean_index``, ``mean_vs_random``),
            ``masked``, ``evaluated`` (empty where not applicable), ``estimate``, ``low``,
            ``high``.

        Raises:
            CraneLensError: No per-block results, or a language with fewer than
                :data:`~crane_lens.evaluation.intervals.MIN_INTERVAL_BLOCKS` blocks
                (:meth:`intervals_unavailable` says which).

        Example:
            >>> m = AblationMatrix("toy", "zero", ["en"], ["en", "vi"], {}, {},
            ...     per_block={"tokens": {"en": [10] * 5, "vi": [10] * 5},
            ...                "baseline": {"en": [20.0, 22.0, 21.0, 20.0, 23.0],
            ...                             "vi": [30.0, 31.0, 29.0, 30.0, 28.0]},
            ...                "selected": {"en": {"en": [25.0, 28.0, 26.0, 24.0, 29.0],
            ...                                    "vi": [30.0, 31.5, 29.0, 30.0, 28.5]}},
            ...                "random": {}})
            >>> m = AblationMatrix.from_blocks(m)  # means from the blocks
            >>> row = m.intervals(n_resamples=500).set_index("quantity").loc["own"]
            >>> round(float(row["estimate"]), 3), bool(row["low"] <= row["estimate"] <= row["high"])
            (0.52, True)
        """
        from crane_lens.evaluation.intervals import matrix_intervals

        key = (float(level), int(n_resamples), int(seed))
        if key not in self._intervals:
            reason = self.intervals_unavailable()
            self._intervals[key] = reason if reason is not None else matrix_intervals(
                self, level=level, n_resamples=n_resamples, seed=seed)  # fmt: skip
        cached = self._intervals[key]
        if isinstance(cached, str):
            raise CraneLensError(f"No intervals: {cached}.")
        return cached.copy()

    @classmethod
    def from_blocks(cls, matrix: AblationMatrix) -> AblationMatrix:
        """``matrix`` with its means (baseline, nll, random_nll, tokens) recomputed from
        ``per_block``: each mean is the block sums' total ÷ the tokens'."""
        blocks = matrix.per_block
        if blocks is None:
            raise CraneLensError("This matrix has no per-block results to compute means from.")
        tokens = {b: sum(n) for b, n in blocks["tokens"].items()}

        def mean(nats: list[float], b: str) -> float:
            return math.fsum(nats) / tokens[b]

        return cls(
            matrix.method, matrix.mode, matrix.masked, matrix.evaluated,
            baseline={b: mean(blocks["baseline"][b], b) for b in matrix.evaluated},
            nll={a: {b: mean(blocks["selected"][a][b], b) for b in matrix.evaluated}
                 for a in matrix.masked},
            random_nll={a: {b: [mean(seed, b) for seed in per_seed] for b, per_seed in row.items()}
                        for a, row in blocks["random"].items()},
            n_neurons=matrix.n_neurons, tokens=tokens, config=matrix.config, per_block=blocks,
        )  # fmt: skip

    def p_values(self) -> dict[str, float]:
        """Per masked language: the empirical p-value of its own ΔNLL against its random sets,
        ``(1 + #{random own ≥ own}) / (1 + n_random)`` (NaN without random sets); it cannot go
        below ``1 / (n_random + 1)``."""
        out = {}
        for a in self.masked:
            runs = self.random_nll.get(a, {}).get(a, [])
            if a not in self.evaluated or not runs:
                out[a] = math.nan
                continue
            own = self.nll[a][a] - self.baseline[a]
            out[a] = empirical_p_value(own, [r - self.baseline[a] for r in runs])
        return out

    def selectivity(
        self, level: float = DEFAULT_LEVEL, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
    ) -> pd.DataFrame:
        """Per masked language: its own ΔNLL against the others' and against random sets, with
        bootstrap intervals.

        Columns: ``own`` (ΔNLL on its own language), ``others`` (mean ΔNLL on the other
        evaluated languages), ``ratio`` (own / others), ``index``
        (:func:`~crane_lens.evaluation.intervals.selectivity_index`: (own⁺ − others⁺) / (own⁺ +
        others⁺) with x⁺ = max(x, 0), in [−1, 1]: 1 = only its own language degrades, 0 = no
        preference or no degradation at all), ``random_own`` / ``random_own_std`` (random sets
        of the same per-layer sizes, mean and std over seeds), ``vs_random`` (own −
        random_own, nats/token: the ΔNLL on the own language beyond what random sets of the same
        per-layer sizes cause; defined whenever random sets exist, also when they lower the
        NLL), ``z`` ((own − random_own) / std; NaN for one seed or a zero std; descriptive
        only — with few seeds it is no test), ``p_value`` (:meth:`p_values`) and ``n_random``
        (random sets behind it). With per-block
        results, ``own_low``/``own_high``, ``others_low``/``others_high``,
        ``index_low``/``index_high`` and ``vs_random_low``/``vs_random_high`` bound the
        ``level`` bootstrap interval (:meth:`intervals`; NaN where unavailable).

        Example:
            >>> m = AblationMatrix("crane", "zero", ["en", "vi"], ["en", "vi"],
            ...     baseline={"en": 2.0, "vi": 3.0},
            ...     nll={"en": {"en": 2.5, "vi": 3.0}, "vi": {"en": 2.0, "vi": 4.0}},
            ...     random_nll={"en": {"en": [1.9, 1.9], "vi": [3.0, 3.0]},
            ...                 "vi": {"en": [2.0, 2.0], "vi": [3.1, 3.3]}})
            >>> sel = m.selectivity().round(2)  # en's random sets lower its NLL: still defined
            >>> sel[["own", "random_own", "vs_random", "p_value"]].to_dict("list")
            {'own': [0.5, 1.0], 'random_own': [-0.1, 0.2], 'vs_random': [0.6, 0.8], 'p_value': [0.33, 0.33]}
        """
        import pandas as pd

        delta = self.delta()
        rand = self.random_delta() if self.random_nll else None
        spread = self.random_delta("std") if self.random_nll else None
        p_values = self.p_values()
        rows = []
        for a in self.masked:
            own = float(delta.loc[a, a]) if a in self.evaluated else float("nan")
            rest = [float(delta.loc[a, b]) for b in self.evaluated if b != a]
            others = sum(rest) / len(rest) if rest else float("nan")
            index = float(selectivity_index(own, others)) if math.isfinite(own) else math.nan
            row = {"masked": a, "n_neurons": self.n_neurons.get(a), "own": own, "others": others,
                   "ratio": own / others if others else float("nan"), "index": index}  # fmt: skip
            if rand is not None and spread is not None and a in self.evaluated:
                r, s = float(rand.loc[a, a]), float(spread.loc[a, a])
                # A difference, not a ratio: defined when random sets lower the NLL (r ≤ 0).
                row |= {"random_own": r, "random_own_std": s, "vs_random": own - r,
                        "z": (own - r) / s if s else float("nan"), "p_value": p_values[a],
                        "n_random": len(self.random_nll[a][a])}  # fmt: skip
            rows.append(row)
        table = pd.DataFrame(rows).set_index("masked")
        bounds = ["own", "others", "index"] + (["vs_random"] if "vs_random" in table else [])
        for name in bounds:
            table[f"{name}_low"] = table[f"{name}_high"] = math.nan
        if self.intervals_unavailable() is None:
            found = self.intervals(level, n_resamples, seed)
            for name in bounds:
                part = found[found["quantity"] == name].set_index("masked")
                table[f"{name}_low"] = part["low"].reindex(table.index)
                table[f"{name}_high"] = part["high"].reindex(table.index)
        return table

    def summary(
        self, level: float = DEFAULT_LEVEL, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
    ) -> dict[str, float]:
        """:meth:`selectivity` in one row: means over the masked languages (and the median index,
        which one language cannot swing); with random sets also their mean ΔNLL on the masked
        set's own language and on the others; with per-block results the bootstrap interval of
        each mean (``own_low``, ``own_high``, ``others_low``, ...).

        Keys: ``neurons``, ``own``, ``others``, ``index``, ``index_median`` (+ ``random_own``,
        ``random_others``, ``vs_random``; + ``*_low`` / ``*_high``).
        """
        sel = self.selectivity(level, n_resamples, seed)
        row = {"neurons": float(sel["n_neurons"].mean()), "own": float(sel["own"].mean()),
               "others": float(sel["others"].mean()), "index": float(sel["index"].mean()),
               "index_median": float(sel["index"].median())}  # fmt: skip
        if self.random_nll:
            rand = self.random_delta()
            off = [float(rand.loc[a, b]) for a in rand.index for b in rand.columns
                   if b != a and math.isfinite(float(rand.loc[a, b]))]  # fmt: skip
            # NaN when the random sets ran on their own language alone (random_langs="own").
            row |= {"random_own": float(sel["random_own"].mean()),
                    "random_others": sum(off) / len(off) if off else math.nan,
                    "vs_random": float(sel["vs_random"].mean())}  # fmt: skip
        if self.intervals_unavailable() is None:
            found = self.intervals(level, n_resamples, seed).set_index("quantity")
            for name in ("own", "others", "index", "vs_random"):
                if f"mean_{name}" in found.index:
                    row |= {f"{name}_low": float(found.loc[f"mean_{name}", "low"]),
                            f"{name}_high": float(found.loc[f"mean_{name}", "high"])}  # fmt: skip
        return row

    def to_dataframe(self) -> pd.DataFrame:
        """Long format: one row per (condition, seed, masked, evaluated)."""
        import pandas as pd

        rows = [{"condition": "selected", "seed": None, "masked": a, "evaluated": b,
                 "nll": self.nll[a][b]} for a in self.masked for b in self.evaluated]  # fmt: skip
        rows += [{"condition": "random", "seed": s, "masked": a, "evaluated": b, "nll": v}
                 for a in self.random_nll for b in self.evaluated
                 for s, v in enumerate(self.random_nll[a].get(b, []))]  # fmt: skip
        frame = pd.DataFrame(rows)
        frame["baseline"] = frame["evaluated"].map(self.baseline)
        frame["delta"] = frame["nll"] - frame["baseline"]
        frame["relative"] = frame["delta"] / frame["baseline"]
        frame.insert(0, "method", self.method)
        return frame

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "mode", "masked", "evaluated", "baseline",
                "nll", "random_nll", "n_neurons", "tokens", "config", "per_block")}  # fmt: skip

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``matrix.json`` (everything) plus CSV tables: delta, relative, random delta, selectivity."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        tables = {"delta.csv": self.delta(), "relative.csv": self.relative(),
                  "selectivity.csv": self.selectivity()}  # fmt: skip
        if self.random_nll:
            tables |= {"random_delta_mean.csv": self.random_delta(),
                       "random_delta_std.csv": self.random_delta("std")}  # fmt: skip
        if self.intervals_unavailable() is None:
            tables["intervals.csv"] = self.intervals().set_index("quantity")
        for name, table in tables.items():
            with atomic_path(folder / name) as tmp:
                table.to_csv(tmp)
        write_json(folder / MATRIX_FILE, self.to_dict())  # last: marks a complete result
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AblationMatrix:
        path = Path(directory) / MATRIX_FILE
        if not path.is_file():
            raise CraneLensError(f"{directory} holds no ablation matrix ({MATRIX_FILE}).")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _fingerprint(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _checkpointed(checkpoint: Path | None, fingerprint: str) -> dict[str, list[float]]:
    """The per-block results an earlier run of the same settings saved (``{}``: none)."""
    if checkpoint is None or not checkpoint.is_file():
        return {}
    saved = json.loads(checkpoint.read_text(encoding="utf-8"))
    if saved["fingerprint"] != fingerprint:
        raise OutputExistsError(
            f"{checkpoint} belongs to an ablation run with other settings or neuron sets; "
            "use another folder or delete it to start over."
        )
    if "per_block" not in saved:  # its language totals cannot give intervals
        log.info("%s holds language totals only (an older crane_lens): recomputing", checkpoint)
        return {}
    log.info("resuming the ablation matrix: %d results already computed", len(saved["per_block"]))
    return dict(saved["per_block"])


def ablation_matrix(
    model: Any,
    corpus: Corpus,
    neurons: LanguageNeurons,
    *,
    mode: Mode = "zero",
    values: dict[str, Tensor] | Tensor | None = None,
    factor: float = 0.0,
    langs: list[str] | None = None,
    random_seeds: int | list[int] = 5,
    random_langs: RandomLangs = "all",
    seq_len: int = 256,
    max_tokens_per_lang: int | None = 4096,
    max_batch_rows: int = 8,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> AblationMatrix:
    """ΔNLL[masked language, evaluated language] with random control sets.

    Args:
        model: A TransformerBridge.
        corpus: Held-out text (e.g. ``load_corpus("builtin", split="eval")``).
        neurons: Each language's set (rows of the matrix).
        mode: Intervention (see :mod:`crane_lens.intervention`).
        values: For ``mean``/``fixed``: one ``[layer, neuron]`` tensor for every set, or one per
            masked language (e.g. Kojima's medians of that language).
        factor: For ``scale``.
        langs: Languages to evaluate (default: those of ``neurons`` that ``corpus`` has).
        random_seeds: Number of random control seeds (or the seeds); 0 for none.
        random_langs: Where the random sets are evaluated: ``"all"`` (every evaluated
            language: the random column of the matrix, ``random_others``) or ``"own"`` (only the
            language whose set sizes they copy: all that :meth:`AblationMatrix.p_values`,
            ``vs_random`` and their intervals need, at a fraction of the cost — with 17
            languages and 5 seeds, 23 conditions per language instead of 103).
        seq_len: Block length of the token stream.
        max_tokens_per_lang: Cap on evaluated tokens per language (``None``: all).
        max_batch_rows: Rows per forward pass (conditions are stacked up to it).
        checkpoint_dir: Folder for a checkpoint that lets an interrupted run resume.
        progress: Show a progress bar.

    Returns:
        :class:`AblationMatrix`.

    Raises:
        NeuronSetMismatchError: ``neurons`` do not fit ``model``.
        OutputExistsError: ``checkpoint_dir`` holds a checkpoint of different settings.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> stats = cl.compute_stats(model, cl.load_corpus("builtin", langs=["en", "zh"]),
        ...                          "crane", max_tokens_per_lang=512, progress=False)
        >>> neurons = cl.select_language_neurons(stats, "crane", k=40)
        >>> held_out = cl.load_corpus("builtin", langs=["en", "zh"], split="eval")
        >>> matrix = cl.ablation_matrix(model, held_out, neurons, random_seeds=2,
        ...                             max_tokens_per_lang=512, progress=False)
        >>> matrix.delta().shape
        (2, 2)
    """
    from crane_lens.model.loader import get_spec

    spec = get_spec(model)
    neurons.check_fits(spec)
    langs = langs or [lang for lang in neurons.langs if lang in corpus]
    if not langs:
        raise CraneLensError(
            f"The corpus ({corpus.langs}) has none of the neuron sets' languages "
            f"({neurons.langs}); pass langs= to evaluate others."
        )
    seeds = list(range(random_seeds)) if isinstance(random_seeds, int) else list(random_seeds)
    if random_langs not in ("all", "own"):
        raise ValueError(f"random_langs={random_langs!r}: choose 'all' or 'own'.")

    def values_for(lang: str) -> Tensor | None:
        return values.get(lang) if isinstance(values, dict) else values

    controls = {seed: random_neurons(neurons, seed) for seed in seeds}
    conditions: dict[str, Intervention] = {BASELINE: Intervention({}, {}, BASELINE)}
    for a in neurons.langs:
        kwargs = {"mode": mode, "values": values_for(a), "factor": factor}
        conditions[f"selected|{a}"] = intervention(neurons, a, **kwargs)  # type: ignore[arg-type]
        for seed, control in controls.items():
            conditions[f"random{seed}|{a}"] = intervention(control, a, **kwargs)  # type: ignore[arg-type]
    blocks = eval_blocks(model, corpus, langs, seq_len=seq_len,
                         max_tokens_per_lang=max_tokens_per_lang)  # fmt: skip
    config = {"mode": mode, "factor": factor, "seeds": seeds, "seq_len": seq_len,
              "max_tokens_per_lang": max_tokens_per_lang, "model": spec.name}  # fmt: skip
    if random_langs == "own":  # only then: older checkpoints keep their fingerprint
        config["random_langs"] = "own"
    fingerprint = _fingerprint({
        "config": config, "neurons": neurons.to_dict(),
        "values": {a: None if values_for(a) is None else float(values_for(a).cpu().double().sum())  # type: ignore[union-attr]
                   for a in neurons.langs},
        "tokens": {b: hashlib.sha256(blk.tokens.numpy().tobytes()).hexdigest() for b, blk in blocks.items()},
    })  # fmt: skip

    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    # "condition|@language" -> summed NLL of each block; rank 0 reads it, every rank follows.
    done: dict[str, list[float]] = dist.decided_by_main(
        lambda: _checkpointed(checkpoint, fingerprint)
    )
    names = list(conditions)
    chunk = max(1, max_batch_rows)

    def needed(name: str, b: str) -> bool:
        # "random{seed}|{a}" on language b: only b == a when random_langs="own"
        return random_langs == "all" or not name.startswith("random") or name.endswith(f"|{b}")

    work = [(b, [n for n in todo[i : i + chunk] if f"{n}|@{b}" not in done])
            for b in langs for todo in [[n for n in names if needed(n, b)]]
            for i in range(0, len(todo), chunk)]  # fmt: skip
    work = [(b, members) for b, members in work if members]
    # Under torch.distributed each rank takes every world_size-th item; after each round the
    # ranks exchange their results, so all hold the same table and rank 0 writes it.
    world, rank = dist.world_size(), dist.rank()
    bar = tqdm(total=len(work), desc=f"ablation ({neurons.method})",
               disable=not progress or not dist.is_main())  # fmt: skip
    for step in range(dist.n_rounds(len(work))):
        mine: dict[str, list[float]] = {}
        if step * world + rank < len(work):
            b, todo = work[step * world + rank]
            nats = conditions_nll(model, blocks[b], [conditions[n] for n in todo],
                                  max_batch_rows=max_batch_rows)  # fmt: skip
            mine = {f"{n}|@{b}": row.tolist() for n, row in zip(todo, nats, strict=True)}
        for part in dist.all_gather_objects(mine):
            done |= part
        bar.update(min(world, len(work) - step * world))
        if checkpoint is not None and dist.is_main():
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            write_json(checkpoint, {"fingerprint": fingerprint, "per_block": done})
    bar.close()
    dist.barrier()

    per_block = {
        "tokens": {b: blocks[b].block_tokens for b in langs},
        "baseline": {b: done[f"{BASELINE}|@{b}"] for b in langs},
        "selected": {a: {b: done[f"selected|{a}|@{b}"] for b in langs} for a in neurons.langs},
        "random": {a: {b: [done[f"random{s}|{a}|@{b}"] for s in seeds] for b in langs
                       if needed(f"random|{a}", b)}
                   for a in neurons.langs} if seeds else {},
    }  # fmt: skip
    return AblationMatrix.from_blocks(AblationMatrix(
        method=neurons.method, mode=mode, masked=neurons.langs, evaluated=langs, baseline={},
        nll={}, n_neurons={a: neurons.count(a) for a in neurons.langs},
        config=config | {"fingerprint": fingerprint}, per_block=per_block,
    ))  # fmt: skip
