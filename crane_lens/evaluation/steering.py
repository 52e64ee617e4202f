"""Are the neurons a language needs also enough to switch the model into it? Steering, measured.

:func:`steering_matrix` continues held-out prompts of each *source* language S greedily while
the model is steered towards each *target* language T with T's set
(:func:`~crane_lens.intervention.steering`), and records for every continuation:

* **success** — identified as T by the project's language identifier
  (:mod:`crane_lens.evaluation.language_id`); **stay** — identified as S;
* **fluency** — ``nll``: the continuation's NLL per token under the *unsteered* model, scored
  on its own (``[BOS] + continuation``): a fluent Vietnamese continuation of an English prompt
  is judged as Vietnamese text, not as an unlikely turn of the English one (``nll_in_context``,
  scored after the prompt, is kept too); ``distinct_2`` (distinct token bigrams / bigrams,
  1 for fewer than two) and ``repetition`` (the share of token trigrams that already occurred
  earlier in the continuation).

Conditions: ``none`` (unsteered), ``selected`` (T's set of the method) and ``random-<seed>``
(random sets of the same per-layer sizes, steered the same way: the control). Intervals
(:meth:`SteeringMatrix.summary`) are a bootstrap over prompts, stratified by source language and
paired across conditions, strengths and targets (the same prompts in every cell).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crane_lens.errors import CraneLensError
from crane_lens.evaluation.generation import (
    _bos,
    _continuation_text,
    default_prompts,
    greedy_generate,
)
from crane_lens.evaluation.intervals import DEFAULT_LEVEL, block_bootstrap
from crane_lens.evaluation.language_id import LanguageIdentifier, identifier_for
from crane_lens.intervention.hooks import intervene
from crane_lens.intervention.steering import (
    STEER_MODES,
    Statistic,
    SteerMode,
    steering,
    steering_values,
)
from crane_lens.model.runner import gold_scores, length_batches, pad_rows
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.utils.io import write_json
from crane_lens.utils.progress import tqdm

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

STEERING_FILE = "steering.json"
FORMAT_VERSION = 1
METRICS = ("success", "stay", "nll", "distinct_2", "repetition")
DIFFERENCE = "selected − random"  # summary rows: the set against random sets of its sizes


# -- one continuation's fluency ---------------------------------------------------------------
def distinct_n(tokens: Sequence[int], n: int = 2) -> float:
    """Distinct ``n``-grams / ``n``-grams of a token sequence (1 when it has none).

    Example:
        >>> distinct_n([1, 2, 1, 2, 1, 2]), distinct_n([1, 2, 3, 4]), distinct_n([7])
        (0.4, 1.0, 1.0)
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repetition(tokens: Sequence[int], n: int = 3) -> float:
    """The share of ``n``-grams that already occurred earlier in the sequence (0 for none).

    Example:
        >>> repetition([1, 2, 3, 1, 2, 3, 1, 2, 3]), repetition([1, 2, 3, 4])
        (0.5714285714285714, 0.0)
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    seen: set[tuple[int, ...]] = set()
    repeated = 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(grams) if grams else 0.0


@torch.no_grad()
def continuation_nll(
    model: Any,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    in_context: bool = False,
    max_tokens_per_batch: int = 4096,
) -> list[float]:
    """NLL per token of each continuation under ``model`` as it is (run it unsteered).

    Args:
        model: A TransformerBridge.
        prompts: ``[BOS] + tokens`` of each prompt.
        continuations: The new token ids of each (a final EOS is scored as a token).
        in_context: Score after the prompt; else after BOS alone (the continuation as a text
            of its own).
        max_tokens_per_batch: Upper bound on tokens per forward pass.

    Returns:
        Nats per continuation token; NaN for an empty continuation.
    """
    bos = prompts[0][0] if prompts else 0
    heads = [list(p) if in_context else [bos] for p in prompts]
    rows = [[*h, *c] for h, c in zip(heads, continuations, strict=True)]
    out = [float("nan")] * len(rows)
    scorable = [i for i, c in enumerate(continuations) if len(c)]
    for members in length_batches(rows, max_tokens_per_batch, scorable):
        tokens, lengths = pad_rows([rows[i] for i in members])
        logp = gold_scores(model, tokens).cpu()  # position t-1 scores tokens[:, t]
        for row, i in enumerate(members):
            start, stop = len(heads[i]) - 1, int(lengths[row]) - 1
            out[i] = float(-logp[row, start:stop].mean())
    return out


# -- the result -------------------------------------------------------------------------------
@dataclass
class SteeringMatrix:
    """Every steered continuation of one method's sets, and what they say.

    Attributes:
        records: One row per (condition, strength, target, source, prompt): ``condition``
            (``none`` / ``selected`` / ``random-<seed>``), ``strength``, ``target``,
            ``source``, ``prompt`` (index within the source), ``text`` (the continuation),
            ``identified`` (its language, ``None`` if unidentifiable), :data:`METRICS`
            (``success`` and ``stay`` as 0/1), ``n_tokens``, ``nll_in_context`` and
            ``no_tokens`` (1: nothing but special tokens or EOS, its NLL set to the worst
            measured). ``none`` rows (strength 0) repeat the unsteered
            continuation once per target, so its success is the base rate of writing in T.
        config: How it was measured (method, mode, statistic, strengths, prompts...).
    """

    records: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    _summaries: dict[tuple[float, int, int], pd.DataFrame] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def method(self) -> str:
        return str(self.config.get("method", ""))

    @property
    def targets(self) -> list[str]:
        return list(self.config.get("targets", []))

    @property
    def sources(self) -> list[str]:
        return list(self.config.get("sources", []))

    @property
    def strengths(self) -> list[float]:
        return [float(s) for s in self.config.get("strengths", [])]

    def to_dataframe(self) -> pd.DataFrame:
        """The records (a copy)."""
        return self.records.copy()

    def rates(self, metric: str = "success", *, strength: float | None = None,
              condition: str = "selected") -> pd.DataFrame:  # fmt: skip
        """``metric`` averaged over prompts: rows = source, columns = target.

        Args:
            metric: One of :data:`METRICS`.
            strength: Which strength (default: the largest).
            condition: ``"selected"``, ``"none"`` or ``"random"`` (all random seeds pooled).
        """
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r}: choose from {METRICS}.")
        rows = self._rows(condition, strength)
        table = rows.pivot_table(index="source", columns="target", values=metric, aggfunc="mean")
        return table.reindex(index=self.sources, columns=self.targets)

    def _rows(self, condition: str, strength: float | None) -> pd.DataFrame:
        r = self.records
        if condition == "none":
            return r[r.condition == "none"]
        strength = max(self.strengths) if strength is None else float(strength)
        if strength not in self.strengths:
            raise ValueError(f"strength={strength}: measured at {self.strengths}.")
        chosen = r.condition.str.startswith("random-") if condition == "random" else (
            r.condition == condition)  # fmt: skip
        return r[chosen & (r.strength == strength)]

    def summary(
        self, *, level: float = DEFAULT_LEVEL, n_resamples: int = 9999, seed: int = 0
    ) -> pd.DataFrame:
        """Means over every (source ≠ target) pair with their bootstrap intervals.

        One row per (condition, strength, target) and per (condition, strength) over all
        targets (``target = "all"``); ``condition`` is ``none``, ``selected``, ``random``
        (the random seeds pooled) or ``"selected − random"`` (the paired difference: what the
        set does beyond random sets of its sizes; its interval excluding 0 is the test).
        Columns: each of :data:`METRICS`, its ``_low`` and ``_high``; ``n`` continuations.
        The bootstrap resamples prompts within each source language, the same draw for every
        row (a prompt's difficulty is shared by all cells). With a single prompt in any
        source language no interval is given (NaN bounds).
        """
        key = (level, n_resamples, seed)
        if key not in self._summaries:
            self._summaries[key] = self._summary(level, n_resamples, seed)
        return self._summaries[key].copy()

    def _summary(self, level: float, n_resamples: int, seed: int) -> pd.DataFrame:
        import pandas as pd

        r = self.records[self.records.source != self.records.target]
        group = r.condition.where(~r.condition.str.startswith("random-"), "random")
        r = r.assign(group=group)
        cells = list(r.groupby(["condition", "strength", "target"], sort=False).groups)
        quantities = list(dict.fromkeys(zip(r.group, r.strength, r.target, strict=True)))
        quantities += list(dict.fromkeys((g, s, "all") for g, s, _ in quantities))
        sources = [s for s in self.sources if s in set(r.source)]
        samples, sizes = [], []  # per source: [cell × metric, prompt]
        weights = np.zeros((len(sources), len(quantities), len(cells)))
        for si, source in enumerate(sources):
            mine = r[r.source == source]
            n_prompts = int(mine.prompt.max()) + 1
            block = np.zeros((len(cells), len(METRICS), n_prompts))
            for ci, cell in enumerate(cells):
                rows = mine[(mine.condition == cell[0]) & (mine.strength == cell[1])
                            & (mine.target == cell[2])].sort_values("prompt")  # fmt: skip
                if rows.empty:
                    continue
                if len(rows) != n_prompts:
                    raise CraneLensError(f"{source}: {len(rows)} of {n_prompts} prompts in {cell}.")
                block[ci] = rows[list(METRICS)].to_numpy(dtype=float).T
                for qi, (g, strength, target) in enumerate(quantities):
                    matches = cell[0] == g or (g == "random" and cell[0].startswith("random-"))
                    if matches and cell[1] == strength and target in ("all", cell[2]):
                        weights[si, qi, ci] = 1.0
            samples.append(block.reshape(len(cells) * len(METRICS), n_prompts))
            sizes.append(n_prompts)
        counts = np.einsum("sqc,s->q", weights, np.asarray(sizes, dtype=float))
        # each quantity: the mean over its (source, cell) pairs of the per-prompt means
        weights /= np.maximum(weights.sum(axis=(0, 2), keepdims=True), 1)
        # selected − random, paired (the same prompts): what the set does beyond its size
        index = {q: i for i, q in enumerate(quantities)}
        for g, strength, target in list(quantities):
            if g == "selected" and ("random", strength, target) in index:
                quantities.append((DIFFERENCE, strength, target))
                weights = np.concatenate([weights, (
                    weights[:, index[(g, strength, target)]]
                    - weights[:, index[("random", strength, target)]])[:, None]], axis=1)  # fmt: skip
                counts = np.append(counts, counts[index[(g, strength, target)]])

        def statistic(*parts: np.ndarray, axis: int = -1) -> np.ndarray:
            total: Any = 0.0
            for si, part in enumerate(parts):
                means = part.mean(axis=axis)  # [cell × metric, *resamples]
                means = means.reshape(len(cells), len(METRICS), *means.shape[1:])
                total = total + np.tensordot(weights[si], means, axes=(1, 0))
            return np.asarray(total).reshape(len(quantities) * len(METRICS), *total.shape[2:])

        if all(n >= 2 for n in sizes):
            estimate, low, high = block_bootstrap(samples, statistic, level=level,
                                                  n_resamples=n_resamples, seed=seed)  # fmt: skip
        else:
            estimate = statistic(*samples)
            low = high = np.full_like(estimate, np.nan)
        shape = (len(quantities), len(METRICS))
        estimate, low, high = (x.reshape(shape) for x in (estimate, low, high))
        rows = []
        for qi, (g, strength, target) in enumerate(quantities):
            row: dict[str, Any] = {"condition": g, "strength": strength, "target": target,
                                   "n": int(counts[qi])}  # fmt: skip
            for mi, metric in enumerate(METRICS):
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = (
                    estimate[qi, mi], low[qi, mi], high[qi, mi])  # fmt: skip
            rows.append(row)
        order = {"none": 0, "selected": 1, "random": 2, DIFFERENCE: 3}
        frame = pd.DataFrame(rows)
        frame["_o"] = frame.condition.map(order)
        frame["_t"] = frame.target.map({t: i for i, t in enumerate([*self.targets, "all"])})
        return frame.sort_values(["_o", "strength", "_t"]).drop(columns=["_o", "_t"]).reset_index(
            drop=True)  # fmt: skip

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "config": self.config,
                "records": self.records.to_dict(orient="list")}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SteeringMatrix:
        import pandas as pd

        if data.get("format_version") != FORMAT_VERSION:
            raise CraneLensError(
                f"Steering result format {data.get('format_version')} is not supported (this "
                f"crane_lens reads {FORMAT_VERSION}); measure it again with steering_matrix()."
            )
        return cls(pd.DataFrame(data["records"]), data["config"])

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``steering.json`` into ``directory`` atomically; :meth:`load` reads it."""
        return write_json(Path(directory) / STEERING_FILE, self.to_dict(), indent=None)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SteeringMatrix:
        path = Path(directory)
        path = path / STEERING_FILE if path.is_dir() else path
        if not path.is_file():
            raise CraneLensError(f"No steering result at {directory}; measure one with "
                                 "steering_matrix(..., output_dir=...).")  # fmt: skip
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        return (f"SteeringMatrix(method={self.method!r}, mode={self.config.get('mode')!r}, "
                f"targets={self.targets}, sources={self.sources}, strengths={self.strengths}, "
                f"{len(self.records)} continuations)")  # fmt: skip


# -- generation under steering ----------------------------------------------------------------
def steered_continuations(
    model: Any,
    prompts: Sequence[str],
    neurons: LanguageNeurons,
    target: str,
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    **steer_kwargs: Any,
) -> list[str]:
    """Greedy continuations of ``prompts`` with the model steered towards ``target``.

    Takes :func:`~crane_lens.intervention.steering`'s arguments (``stats``, ``source``,
    ``mode``, ``strength``...); the model is unsteered again afterwards.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> stats = cl.compute_stats(model, cl.load_corpus("builtin", langs=["en", "vi"]),
        ...                          "crane", max_tokens_per_lang=256, progress=False)
        >>> neurons = cl.select_language_neurons(stats, k=20)
        >>> texts = steered_continuations(model, ["The file is"], neurons, "vi", stats=stats,
        ...                               strength=0.0, max_new_tokens=6)
        >>> texts == cl.greedy_continuations(model, ["The file is"], max_new_tokens=6)
        True
    """
    from crane_lens.evaluation.generation import greedy_continuations

    with intervene(model, steering(neurons, target, **steer_kwargs), neurons):
        return greedy_continuations(model, prompts, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size)  # fmt: skip


def _prompt_ids(
    model: Any, prompts: dict[str, list[str]] | None, sources: list[str], n_prompts: int,
    prompt_tokens: int,
) -> dict[str, list[list[int]]]:  # fmt: skip
    if prompts is None:
        chosen = default_prompts(model, sources, n_prompts=n_prompts, prompt_tokens=prompt_tokens)
        return {lang: rows for lang, (rows, _) in chosen.items()}
    missing = [x for x in sources if not prompts.get(x)]
    if missing:
        raise ValueError(f"No prompts for {', '.join(missing)}; add some or drop the source.")
    bos = _bos(model)
    return {lang: [[bos, *row] for row in model.tokenizer(
        list(prompts[lang]), add_special_tokens=False)["input_ids"]] for lang in sources}  # fmt: skip


def steering_matrix(
    model: Any,
    neurons: LanguageNeurons,
    stats: Any,
    *,
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    mode: SteerMode = "replace",
    strengths: Sequence[float] = (0.5, 1.0, 2.0),
    statistic: Statistic = "mean",
    deactivation: float | None = None,
    random_seeds: int = 0,
    prompts: dict[str, list[str]] | None = None,
    n_prompts: int = 16,
    prompt_tokens: int = 12,
    max_new_tokens: int = 24,
    identifier: LanguageIdentifier | None = None,
    batch_size: int = 16,
    output_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> SteeringMatrix:
    """Steer prompts of every source language towards every target language; measure it.

    Args:
        model: A TransformerBridge.
        neurons: One method's language sets (``neurons.method`` labels the result).
        stats: The statistics the steering values come from (the run that selected them).
        targets: Languages to steer towards (default: every set's language).
        sources: Prompt languages (default: ``targets``); pairs with ``source == target``
            are skipped.
        mode: ``"replace"``, ``"add"`` or ``"swap"`` (:func:`~crane_lens.intervention.steering`).
        strengths: Strengths to sweep (each > 0; the unsteered model is measured once).
        statistic: ``"mean"`` or Kojima's ``"median"`` for ``replace`` / ``swap``.
        deactivation: ``swap``'s deactivation strength (default: each strength).
        random_seeds: Random sets of the same per-layer sizes per target (and, for ``swap``,
            per source), steered the same way: the control.
        prompts: ``lang -> prompt texts``; default: held-out prompts of the embedded eval split,
            the same segments in every language (:func:`~crane_lens.evaluation.default_prompts`).
        n_prompts: Default prompts per source language.
        prompt_tokens: Length of the default prompts, BOS excluded.
        max_new_tokens: Tokens generated per continuation at most (stops at EOS).
        identifier: Language identifier (default: the languages involved and the built-in 17).
        batch_size: Prompts per forward pass.
        output_dir: Folder for ``steering.json``; finished conditions are checkpointed there
            and a re-run with the same settings resumes (other settings are refused).
        progress: Show a progress bar.

    Returns:
        A :class:`SteeringMatrix`.

    Raises:
        ValueError: Unknown mode or statistic, a strength ≤ 0, a language without a set or
            without statistics, or prompts missing.
        CraneLensError: ``output_dir`` holds a steering result of other settings.
    """
    from crane_lens.model.loader import get_spec
    from crane_lens.selection.select import random_neurons

    targets = list(dict.fromkeys(targets or neurons.langs))
    sources = list(dict.fromkeys(sources or targets))
    if mode not in STEER_MODES:
        raise ValueError(f"Unknown steering mode {mode!r}; choose from {STEER_MODES}.")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic={statistic!r}: choose 'mean' or 'median'.")
    if not strengths or any(not (float(s) > 0) for s in strengths):
        raise ValueError(f"strengths must be > 0 (the unsteered model is measured anyway), not "
                         f"{list(strengths)}.")  # fmt: skip
    if deactivation is not None and (mode != "swap" or not math.isfinite(deactivation)):
        raise ValueError(f"deactivation={deactivation!r}: a finite number, for mode='swap' only.")
    need_sets = targets + (sources if mode == "swap" else [])
    missing = sorted({x for x in need_sets if x not in neurons.langs})
    if missing:
        raise ValueError(f"No neuron set for {missing}; the sets cover {neurons.langs}.")
    need_stats = targets + (sources if mode == "add" else [])
    missing = sorted({x for x in need_stats if x not in stats.langs})
    if missing:
        raise ValueError(f"No statistics for {missing}; they cover {stats.langs}.")
    if not any(s != t for s in sources for t in targets):
        raise ValueError(f"No prompt language differs from the targets ({', '.join(targets)}); "
                         "add a source language.")  # fmt: skip
    if statistic == "median" and mode != "add":
        steering_values(stats, targets[0], "median")  # raises where Kojima's were not computed
    if random_seeds < 0:
        raise ValueError(f"random_seeds must be ≥ 0, not {random_seeds}.")
    neurons.check_fits(model)
    spec = get_spec(model)
    identifier = identifier or identifier_for(sorted({*targets, *sources}))
    strengths = sorted({float(s) for s in strengths})
    config = {
        "method": neurons.method, "model": spec.name, "dtype": str(spec.dtype),
        "sets_model": neurons.model, "mode": mode, "statistic": statistic,
        "strengths": strengths, "deactivation": deactivation, "targets": targets,
        "sources": sources, "random_seeds": random_seeds, "n_prompts": n_prompts,
        "prompt_tokens": prompt_tokens if prompts is None else None,
        "max_new_tokens": max_new_tokens, "prompts": prompts, "identifier": repr(identifier),
        "stats_tokens": {x: int(stats.n_tokens[x]) for x in stats.langs},
        "sets": {x: neurons.ranked[x].tolist() for x in sorted(set(need_sets))},
    }  # fmt: skip
    folder = Path(output_dir) if output_dir is not None else None
    checkpoint = folder / ".steering_checkpoint.json" if folder is not None else None
    done: dict[str, list[dict[str, Any]]] = {}
    if folder is not None and (folder / STEERING_FILE).is_file():
        found = SteeringMatrix.load(folder)
        if found.config == json.loads(json.dumps(config)):
            return found
        differ = sorted(
            k for k in config if found.config.get(k) != json.loads(json.dumps(config[k]))
        )
        raise CraneLensError(f"{folder} holds a steering result of other settings ({', '.join(differ)} "
                             "differ); choose another output_dir or delete it.")  # fmt: skip
    if checkpoint is not None and checkpoint.is_file():
        saved = json.loads(checkpoint.read_text(encoding="utf-8"))
        if saved.get("config") == json.loads(json.dumps(config)):
            done = saved["done"]
            log.info("steering: resuming, %d conditions done", len(done))
        else:
            log.warning("steering: %s was written with other settings; starting over", checkpoint)
    ids = _prompt_ids(model, prompts, sources, n_prompts, prompt_tokens)
    controls = [random_neurons(neurons, seed) for seed in range(random_seeds)]
    # One job per (condition, strength, target) and the source prompts it steers; "replace"
    # edits do not depend on the source, so all sources share one generation call.
    jobs: list[tuple[str, float, str, list[str]]] = [("none", 0.0, "", sources)]
    for strength in strengths:
        for target in targets:
            others = [s for s in sources if s != target]
            for condition in ["selected", *[f"random-{i}" for i in range(random_seeds)]]:
                if mode == "replace":
                    jobs.append((condition, strength, target, others))
                else:
                    jobs += [(condition, strength, target, [s]) for s in others]
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    for condition, strength, target, langs in tqdm(jobs, desc="steering", disable=not progress):
        key = f"{condition}|{strength!r}|{target}|{','.join(langs)}"
        if key in done or not langs:
            continue
        sets = neurons if condition in ("none", "selected") else controls[
            int(condition.split("-")[1])]  # fmt: skip
        flat = [(lang, i, p) for lang in langs for i, p in enumerate(ids[lang])]
        if condition == "none":
            new = greedy_generate(model, [p for _, _, p in flat], max_new_tokens=max_new_tokens,
                                  batch_size=batch_size)  # fmt: skip
        else:
            source = langs[0] if mode != "replace" else None
            # A random control steers its own neurons with their own statistics, exactly as
            # the method's set is steered (swap: the random S set deactivated, the random T
            # set activated).
            edit = steering(sets, target, stats=stats, source=source, mode=mode,
                            strength=strength, deactivation=deactivation, statistic=statistic,
                            source_neurons=sets if mode == "swap" else None)  # fmt: skip
            with intervene(model, edit, sets):
                new = greedy_generate(model, [p for _, _, p in flat],
                                      max_new_tokens=max_new_tokens, batch_size=batch_size)  # fmt: skip
        # The text and the fluency measures see the same tokens: special tokens (EOS...) are
        # not text (_continuation_text leaves them out too).
        own = [[t for t in n if t not in special] for n in new]
        nll = continuation_nll(model, [p for _, _, p in flat], own)
        nll_context = continuation_nll(model, [p for _, _, p in flat], own, in_context=True)
        rows = []
        for (lang, i, prompt), tokens, tok, a, b in zip(flat, new, own, nll, nll_context,
                                                        strict=True):  # fmt: skip
            text = _continuation_text(model, prompt, tokens)
            rows.append({"source": lang, "prompt": i, "text": text,
                         "identified": identifier.predict(text), "n_tokens": len(tok),
                         "no_tokens": float(not tok), "nll": a, "nll_in_context": b,
                         "distinct_2": distinct_n(tok, 2), "repetition": repetition(tok, 3)})  # fmt: skip
        done[key] = rows
        if checkpoint is not None:
            write_json(checkpoint, {"config": config, "done": done}, indent=None)
    import pandas as pd

    frame = pd.DataFrame(_records(done, targets))
    # An empty continuation has no NLL: it counts as unfluent as the worst one measured
    # (flagged in the "no_tokens" column).
    worst = float(np.nanmax(frame.nll)) if frame.nll.notna().any() else 0.0
    frame["nll"] = frame.nll.fillna(worst)
    frame["nll_in_context"] = frame.nll_in_context.fillna(worst)
    result = SteeringMatrix(frame, json.loads(json.dumps(config)))
    if folder is not None:
        result.save(folder)
        checkpoint.unlink(missing_ok=True)  # type: ignore[union-attr]
    return result


def _records(done: dict[str, list[dict[str, Any]]], targets: list[str]) -> list[dict[str, Any]]:
    """One record per (condition, strength, target, source, prompt) from the finished jobs;
    the unsteered continuations once per target, judged against that target."""
    records = []
    for key, rows in done.items():
        condition, strength_text, target, _ = key.split("|")
        for row in rows:
            for t in targets if condition == "none" else [target]:
                if t == row["source"]:
                    continue
                records.append({"condition": condition, "strength": float(strength_text),
                                "target": t, **row, "success": float(row["identified"] == t),
                                "stay": float(row["identified"] == row["source"])})  # fmt: skip
    return records


__all__ = [
    "METRICS",
    "SteeringMatrix",
    "continuation_nll",
    "distinct_n",
    "repetition",
    "steered_continuations",
    "steering_matrix",
]
