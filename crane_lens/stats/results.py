"""``NeuronStats``: per-language, per-neuron statistics — mergeable sums plus derived scores."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from crane_lens.errors import CraneLensError, UnknownLanguageError
from crane_lens.model.spec import ModelSpec
from crane_lens.stats.lrp import upgrade_config
from crane_lens.stats.methods import METHODS, STATISTICS, primary_statistic
from crane_lens.stats.top_contexts import (
    BY_MAGNITUDE,
    TOP_KINDS,
    TopKind,
    merge_top,
    shift_blocks,
)
from crane_lens.utils.io import atomic_path, write_json

if TYPE_CHECKING:
    import pandas as pd

STATS_FILE, META_FILE = "stats.safetensors", "stats.json"
# 2: ``lang/block_ids`` beside ``lang/block_means``; 3: per-part sums (``lang/part/field``,
# ``lang/part_tokens``, ``lang/block_parts``).
FORMAT_VERSION = 3
MIN_FIELDS = frozenset({"abs_mean_min"})  # merged by minimum; every other field by sum
# Parts of a language's blocks (see :func:`block_parts`): the prefix fractions, and two
# interleaved halves inside each fraction's bucket.
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
N_PARTS = 2 * len(FRACTIONS)
PartKind = Literal["half", "fraction"]
NO_PARTS = (
    "recompute them with compute_stats(..., parts=True) (the default since statistics format "
    f"{FORMAT_VERSION}) to measure how stable the selected sets are"
)
# Config keys of settings that change every score: shards must agree on them to merge (a key
# missing on one side counts only when the other has it).
MERGE_SETTINGS = ("methods", "target", "attention", "gated_mlp_rule", "objective", "seq_len",
                  "ablation_layers")  # fmt: skip
# Identities the engine records; compared only when both shards have them.
MERGE_IDENTITIES = {"model_fingerprint": "models", "tokenizer_sha256": "tokenizers"}


def block_parts(n_blocks: int) -> Int[Tensor, " block"]:
    """The part (``0 .. N_PARTS - 1``) of each of a language's ``n_blocks`` blocks, in order.

    Block ``i`` belongs to half ``i % 2`` (interleaved halves) and to bucket ``j`` of the
    nested prefixes :data:`FRACTIONS`: bucket 0 holds the first ``ceil(n / 16)`` blocks and
    bucket ``j > 0`` the blocks ``ceil(n · 2^(j-5)) <= i < ceil(n · 2^(j-4))``, so buckets
    ``0..j`` are the prefix of ``ceil(n · FRACTIONS[j])`` blocks — never empty when ``n >= 1``.
    With fewer than 16 blocks, later buckets may be empty (e.g. one block: all in bucket 0).
    Its part is ``2 · j + i % 2``.

    Example:
        >>> block_parts(16).tolist()
        [0, 3, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 8, 9, 8, 9]
        >>> block_parts(3).tolist()  # prefixes of 1, 1, 1, 2 and 3 blocks
        [0, 7, 8]
    """
    index = torch.arange(n_blocks)
    bounds = torch.tensor([-(-n_blocks // 2 ** (len(FRACTIONS) - 1 - j))
                           for j in range(len(FRACTIONS))])  # fmt: skip
    return 2 * torch.searchsorted(bounds, index, right=True) + index % 2


def parts_of(kind: PartKind, which: float) -> list[int]:
    """The parts that make up half ``which`` (0 or 1) or the prefix fraction ``which`` (one
    of :data:`FRACTIONS`: 1/16, 1/8, 1/4, 1/2 or 1) of every language's blocks.

    Example:
        >>> parts_of("half", 1), parts_of("fraction", 1 / 4)
        ([1, 3, 5, 7, 9], [0, 1, 2, 3, 4, 5])
    """
    if kind == "half":
        if which not in (0, 1):
            raise ValueError(f"A half is 0 or 1, not {which!r}.")
        return list(range(int(which), N_PARTS, 2))
    if kind == "fraction":
        for j, fraction in enumerate(FRACTIONS):
            if math.isclose(float(which), fraction):
                return list(range(2 * j + 2))
        raise ValueError(f"Fractions with parts: 1/16, 1/8, 1/4, 1/2 and 1; not {which!r}.")
    raise ValueError(f"Unknown kind of part {kind!r}: 'half' or 'fraction'.")


@dataclass
class NeuronStats:
    """Float32 accumulators per language, and the scores every method derives from them.

    The raw fields are sums over predicted tokens (and per-block means for ``kojima``), so two
    shards of a corpus merge exactly (:meth:`merge`); every score is computed by :meth:`scores`
    on first use, e.g. ``stats.scores("crane")`` → ``Float[Tensor, "lang layer neuron"]``.

    Objects returned by :func:`~crane_lens.compute_stats`, :meth:`merge` and :meth:`load` are
    treated as immutable: each statistic is computed once and cached. Do not edit their fields
    in place; :meth:`merge` and :meth:`load` build new objects, and :meth:`add_block_means`
    (the one supported mutation) clears the cache.

    Attributes:
        spec: The model the statistics were computed on.
        methods: Methods that were run (keys of :data:`crane_lens.stats.METHODS`).
        sums: ``lang -> field -> Float[Tensor, "layer neuron"]``.
        n_tokens: Predicted tokens per language (the denominator of every mean).
        block_means: ``lang -> Float[Tensor, "block layer neuron"]``: the mean activation of
            each kept block (``kojima`` only; at most
            :data:`~crane_lens.stats.kojima.KOJIMA_MAX_BLOCKS` per language and run).
        block_ids: ``lang -> Int[Tensor, " block"]``: the global index (int64, ascending) of the
            block each row of ``block_means[lang]`` comes from; ``arange`` where absent.
        w_down_norm: ``Float[Tensor, "layer neuron"]``, ``‖W_down[i, :]‖`` (``plnd`` only).
        part_sums: ``lang -> field -> Float[Tensor, "part layer neuron"]``: every field of
            :attr:`sums` accumulated per part of the language's blocks (:func:`block_parts`:
            two interleaved halves × five nested prefixes), so that :meth:`part` and
            :meth:`subset` can restrict the statistics to some blocks without another pass.
            Empty when the run had ``parts=False`` (or came from a crane_lens before format 3).
        part_tokens: ``lang -> [tokens of each part]``.
        block_parts: ``lang -> Int[Tensor, " block"]``: the part of each row of
            ``block_means[lang]`` (``kojima`` with parts only).
        top_contexts: ``lang -> kind -> (values, index)``, both ``[layer, k, neuron]``: each neuron's
            ``k`` activations largest in magnitude (``"activation"``, signed) and highest CRANE relevances
            (``"relevance"``) and where they are (``block · seq_len + position``), best first
            (``compute_stats(..., top_contexts=k)``; see :meth:`contexts`). Empty otherwise.
        config: The settings of the run (seq_len, target, attention rule, seed...); after a
            :meth:`merge`, the settings all shards share plus ``"shards"`` (their provenance).
        versions: Package versions the run used (after a merge: those all shards share).
    """

    spec: ModelSpec
    methods: tuple[str, ...]
    sums: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    n_tokens: dict[str, int] = field(default_factory=dict)
    block_means: dict[str, Tensor] = field(default_factory=dict)
    w_down_norm: Tensor | None = None
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    block_ids: dict[str, Tensor] = field(default_factory=dict)
    part_sums: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    part_tokens: dict[str, list[int]] = field(default_factory=dict)
    block_parts: dict[str, Tensor] = field(default_factory=dict)
    top_contexts: dict[str, dict[str, tuple[Tensor, Tensor]]] = field(default_factory=dict)
    # statistic -> scores of every language; not an init field, so copies start empty.
    _cache: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- access ---------------------------------------------------------------------------
    @property
    def langs(self) -> list[str]:
        return list(self.n_tokens)

    @property
    def statistics(self) -> list[str]:
        """Names :meth:`scores` accepts for these results."""
        return [s for m in self.methods for s in METHODS[m].statistics]

    def _lang_index(self, lang: str) -> int:
        if lang not in self.n_tokens:
            raise UnknownLanguageError(
                f"No statistics for language {lang!r}; these results cover {self.langs}."
            )
        return self.langs.index(lang)

    def scores(self, statistic: str) -> Float[Tensor, "lang layer neuron"]:
        """One statistic for every language, layer and neuron (float32, CPU).

        Computed once per object and cached (the ``kojima`` AP of all languages from one sort);
        each call returns a fresh copy.

        Args:
            statistic: A method name (its primary statistic) or one of :attr:`statistics`,
                e.g. ``"crane"``, ``"crane_abs"``, ``"attribution_mean"``, ``"kojima_median"``.

        Raises:
            KeyError: The statistic is unknown or its method was not run.
        """
        name = primary_statistic(statistic) if statistic in METHODS else statistic
        if name not in STATISTICS:
            raise KeyError(f"Unknown statistic {statistic!r}; known: {sorted(STATISTICS)}")
        if name not in self.statistics:
            raise KeyError(
                f"{statistic!r} needs method {STATISTICS[name].method!r}, which this run did not "
                f"compute (methods: {list(self.methods)}). Re-run compute_stats with it."
            )
        if name not in self._cache:
            self._cache[name] = STATISTICS[name].compute(self)
        return self._cache[name].clone()  # callers may edit their copy in place

    def field(self, lang: str, name: str) -> Tensor:
        """A raw accumulator of one language (see :attr:`sums`)."""
        return self.sums[lang][name]

    def pooled_mean_activation(self) -> Float[Tensor, "layer neuron"]:
        """Mean activation over the tokens of all languages together."""
        total = sum(self.sums[lang]["act_sum"] for lang in self.langs)
        return total / sum(self.n_tokens.values())  # type: ignore[return-value]

    def top(self, k: int, lang: str, statistic: str | None = None) -> pd.DataFrame:
        """The ``k`` neurons with the highest score for ``lang`` (ties: lower layer, index).

        Args:
            k: How many neurons.
            lang: Language code.
            statistic: Defaults to the first method's primary statistic.

        Returns:
            DataFrame with columns ``layer``, ``neuron``, ``score``.
        """
        import pandas as pd

        statistic = statistic or primary_statistic(self.methods[0])
        values = self.scores(statistic)[self._lang_index(lang)].flatten()
        # A stable sort of the negated scores keeps equal scores in (layer, neuron) order.
        order = torch.sort(-values, stable=True).indices[:k]
        d_mlp = self.spec.d_mlp
        return pd.DataFrame(
            {"layer": (order // d_mlp).numpy(), "neuron": (order % d_mlp).numpy(),
             "score": values[order].numpy()}
        )  # fmt: skip

    def to_dataframe(self, statistics: list[str] | None = None) -> pd.DataFrame:
        """Long format: one row per (lang, layer, neuron), one column per statistic."""
        import pandas as pd

        names = statistics or self.statistics
        n_langs, n_layers, d_mlp = len(self.langs), self.spec.n_layers, self.spec.d_mlp
        frame = pd.DataFrame({
            "lang": np.repeat(np.array(self.langs, dtype=object), n_layers * d_mlp),
            "layer": np.tile(np.repeat(np.arange(n_layers), d_mlp), n_langs),
            "neuron": np.tile(np.arange(d_mlp), n_langs * n_layers),
        })  # fmt: skip
        for name in names:  # lang-major, then layer, then neuron: the order of .flatten()
            frame[name] = self.scores(name).flatten().numpy()
        return frame

    def contexts(
        self, layer: int, neuron: int, kind: TopKind = "activation",
        langs: Sequence[str] | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """Where neuron ``(layer, neuron)`` fired (or mattered) most in each language's text.

        Args:
            layer: Layer of the neuron.
            neuron: Index of the neuron in its layer.
            kind: ``"activation"`` (``hook_post``, ranked by magnitude, signed values) or
                ``"relevance"`` (CRANE, per token, highest first).
            langs: Languages (default: all of these statistics).

        Returns:
            DataFrame with columns ``lang``, ``rank`` (0 = first), ``value``, ``block`` and
            ``position`` (in the language's token blocks of the statistics pass; BOS is never
            a context), best first; fewer than ``k`` rows where a language had fewer tokens.

        Raises:
            CraneLensError: The statistics kept no top contexts of that kind.

        Example:
            >>> import crane_lens as cl
            >>> model = cl.load_model("crane-tiny")
            >>> corpus = cl.load_corpus("builtin", langs=["en", "vi"])
            >>> stats = cl.compute_stats(model, corpus, "lape", max_tokens_per_lang=1024,
            ...                          top_contexts=4, progress=False)
            >>> stats.contexts(3, 17).columns.tolist(), len(stats.contexts(3, 17))
            (['lang', 'rank', 'value', 'block', 'position'], 8)
        """
        import pandas as pd

        if not 0 <= layer < self.spec.n_layers or not 0 <= neuron < self.spec.d_mlp:
            raise ValueError(f"No neuron ({layer}, {neuron}) in a model of "
                             f"{self.spec.n_layers} × {self.spec.d_mlp} neurons.")  # fmt: skip
        chosen = list(langs) if langs is not None else self.langs
        missing = [lang for lang in chosen if kind not in self.top_contexts.get(lang, {})]
        if missing:
            what = "relevance (it needs the crane method)" if kind == "relevance" else kind
            raise CraneLensError(
                f"These statistics kept no top {what} contexts for {missing}: compute them with "
                "compute_stats(..., top_contexts=k) (for activations a forward pass over any "
                "text does: methods='activation_probability'), and pass those statistics to "
                "neuron_card(..., contexts=...) with their blocks."
            )
        seq_len = int(self.config["seq_len"])
        rows = []
        for lang in chosen:
            values, index = self.top_contexts[lang][kind]
            for rank, (value, at) in enumerate(zip(values[layer, :, neuron].tolist(),
                                                   index[layer, :, neuron].tolist(), strict=True)):  # fmt: skip
                if at >= 0:
                    rows.append((lang, rank, value, at // seq_len, at % seq_len))
        return pd.DataFrame(rows, columns=["lang", "rank", "value", "block", "position"])

    # -- kojima's block responses ------------------------------------------------------------
    def block_ids_of(self, lang: str) -> Int[Tensor, " block"]:
        """Global block index of each row of ``block_means[lang]`` (``arange`` if unrecorded)."""
        ids = self.block_ids.get(lang)
        return ids if ids is not None else torch.arange(len(self.block_means[lang]))

    def add_block_means(
        self,
        lang: str,
        ids: Int[Tensor, " n"],
        means: Float[Tensor, "n layer neuron"],
        parts: Int[Tensor, " n"] | None = None,
    ) -> None:
        """Add the mean activations of blocks ``ids`` of ``lang``, keeping rows ordered by id.

        The result does not depend on the order of the calls (the engine adds batch by batch,
        distributed ranks' parts arrive in any order). Clears the cached scores.

        Args:
            lang: Language code.
            ids: Global block indices (int), unique and not added before.
            means: Each block's mean activation; stored as float32 on the CPU.
            parts: The part of each block (:func:`block_parts`); kept in :attr:`block_parts`
                while every call for ``lang`` gives them, dropped otherwise.

        Raises:
            ValueError: ``means`` does not have one ``[layer, neuron]`` row per id.
            CraneLensError: A block id already present (the block would count twice).

        Example:
            >>> from crane_lens.model.spec import ModelSpec
            >>> spec = ModelSpec("toy", "LlamaForCausalLM", 1, 4, 2, True, "torch.float32",
            ...                  "cpu", "blocks.{layer}.mlp.hook_post", 10)
            >>> stats = NeuronStats(spec, ("kojima",))
            >>> stats.add_block_means("en", torch.tensor([7, 2]), torch.ones(2, 1, 2))
            >>> stats.add_block_means("en", torch.tensor([5]), torch.zeros(1, 1, 2))
            >>> stats.block_ids["en"].tolist(), stats.block_means["en"][:, 0, 0].tolist()
            ([2, 5, 7], [1.0, 0.0, 1.0])
        """
        ids = torch.as_tensor(ids).long().flatten().cpu()
        means = means.detach().to("cpu", torch.float32)
        shape = (self.spec.n_layers, self.spec.d_mlp)
        if means.shape != (len(ids), *shape):
            raise ValueError(
                f"add_block_means({lang!r}): means of shape {tuple(means.shape)} for {len(ids)} "
                f"ids; expected ({len(ids)}, {shape[0]}, {shape[1]})."
            )
        labels = None if parts is None else torch.as_tensor(parts).long().flatten().cpu()
        if labels is not None and len(labels) != len(ids):
            raise ValueError(f"add_block_means({lang!r}): {len(labels)} parts for {len(ids)} ids.")
        if lang in self.block_means:
            before = self.block_parts.get(lang)
            labels = None if before is None or labels is None else torch.cat([before, labels])
            ids = torch.cat([self.block_ids_of(lang), ids])
            means = torch.cat([self.block_means[lang], means])
        steps = ids.diff()
        if not bool((steps > 0).all()):  # out of order: sort (ids are unique, so stably)
            order = torch.argsort(ids, stable=True)
            ids, means = ids[order], means[order]
            labels = None if labels is None else labels[order]
            steps = ids.diff()
        if bool((steps == 0).any()):
            twice = ids[1:][steps == 0].unique().tolist()
            raise CraneLensError(
                f"Blocks {twice} of {lang!r} were added twice: each block's response may be "
                "recorded once (are two shards of the same blocks being combined?)."
            )
        self.block_means[lang], self.block_ids[lang] = means, ids
        if labels is None:
            self.block_parts.pop(lang, None)
        else:
            self.block_parts[lang] = labels
        self._cache.clear()

    def n_blocks(self, lang: str) -> int:
        """Blocks ``lang``'s tokens came in (from the token count and ``config["seq_len"]``)."""
        ids = self.block_ids_of(lang) if lang in self.block_means else torch.zeros(0)
        seen = int(ids.max()) + 1 if len(ids) else 0
        seq_len = self.config.get("seq_len")
        counted = self.n_tokens.get(lang, 0) // (seq_len - 1) if seq_len and seq_len > 1 else 0
        return max(seen, counted)

    # -- parts of the blocks ----------------------------------------------------------------
    @property
    def has_parts(self) -> bool:
        """Whether every language has per-part sums (:attr:`part_sums`), so that :meth:`part`
        and :meth:`subset` work."""
        return bool(self.n_tokens) and all(
            lang in self.part_sums and lang in self.part_tokens
            and (lang not in self.block_means or lang in self.block_parts)
            for lang in self.langs
        )  # fmt: skip

    def part(self, kind: PartKind, which: float) -> NeuronStats:
        """The statistics of one half or one prefix of every language's blocks.

        ``part("half", 0)`` / ``part("half", 1)``: the even / odd blocks of each language (two
        disjoint halves of its text); ``part("fraction", f)``: its first ``ceil(n · f)`` blocks,
        ``f`` one of :data:`FRACTIONS` (1/16, 1/8, 1/4, 1/2, 1). Built from :attr:`part_sums`
        without another pass over the model (:meth:`subset`).

        Raises:
            CraneLensError: No per-part sums (``compute_stats(..., parts=False)`` or an older
                crane_lens), or a language without tokens in that part.
            ValueError: An unknown kind, half or fraction.

        Example:
            >>> import crane_lens as cl
            >>> model = cl.load_model("crane-tiny")
            >>> corpus = cl.load_corpus("builtin", langs=["en", "vi"])
            >>> stats = cl.compute_stats(model, corpus, "lape", seq_len=33,
            ...                          max_tokens_per_lang=8 * 33, progress=False)
            >>> stats.n_tokens, stats.part("half", 1).n_tokens, stats.part("fraction", 0.25).n_tokens
            ({'en': 256, 'vi': 256}, {'en': 128, 'vi': 128}, {'en': 64, 'vi': 64})
        """
        return self.subset(parts_of(kind, which), label=f"{kind} {which:g}")

    def subset(self, parts: Sequence[int], *, label: str | None = None) -> NeuronStats:
        """The statistics of the blocks in ``parts`` (of :func:`block_parts`), every language.

        Sums and token counts add over the chosen parts (per-block minima take the minimum),
        Kojima's block responses keep the rows of those parts, and the result is an ordinary
        :class:`NeuronStats` (without parts of its own) that selection takes unchanged.
        Choosing every part gives these statistics' own sums, bitwise.

        Args:
            parts: Part indices in ``0 .. N_PARTS - 1`` (see :func:`parts_of`).
            label: What the subset is, recorded in ``config["subset"]``.

        Raises:
            CraneLensError: No per-part sums, or a language without tokens in ``parts``.
        """
        chosen = sorted(set(int(p) for p in parts))
        if not chosen or not all(0 <= p < N_PARTS for p in chosen):
            raise ValueError(f"parts must be a non-empty list of 0..{N_PARTS - 1}, not {parts!r}.")
        if not self.has_parts:
            raise CraneLensError(f"These statistics hold no per-part sums: {NO_PARTS}.")
        config = {**self.config, "subset": {"parts": chosen, "label": label}}
        out = NeuronStats(self.spec, self.methods, w_down_norm=self.w_down_norm, config=config,
                          versions=dict(self.versions))  # fmt: skip
        every = len(chosen) == N_PARTS
        index = torch.tensor(chosen)
        for lang in self.langs:
            tokens = sum(self.part_tokens[lang][p] for p in chosen)
            if tokens == 0:
                raise CraneLensError(
                    f"{lang!r} has no tokens in parts {chosen} ({label or 'this subset'}): it has "
                    f"{self.n_blocks(lang)} block(s), too few to split. Compute the statistics on "
                    "more text (two blocks per language at least for halves)."
                )
            out.n_tokens[lang] = self.n_tokens[lang] if every else tokens
            if every:
                out.sums[lang] = dict(self.sums[lang])
            else:
                out.sums[lang] = {
                    name: (values[index].amin(dim=0) if name in MIN_FIELDS
                           else values[index].sum(dim=0))
                    for name, values in self.part_sums[lang].items()
                }  # fmt: skip
            if lang in self.block_means:
                keep = torch.isin(self.block_parts[lang], index)
                out.block_means[lang] = self.block_means[lang][keep]
                out.block_ids[lang] = self.block_ids_of(lang)[keep]
                out.block_parts[lang] = self.block_parts[lang][keep]
        return out

    # -- merging ---------------------------------------------------------------------------
    def merge(self, other: NeuronStats) -> NeuronStats:
        """Statistics of the union of two token sets (e.g. two shards of one corpus).

        Sums and token counts add, per-block minima take the minimum, and Kojima's block
        responses are pooled: ``other``'s block ids are shifted past this result's blocks of the
        language, as if its blocks followed this result's. The merged ``config`` keeps the
        settings both share, plus ``config["shards"]``: every shard's ``config``, ``versions``
        and ``n_tokens``, in order (merging merged results extends the list).

        Per-part sums (:attr:`part_sums`) add part by part when both results have them
        (otherwise the merge has none). A half of the merge is then the union of the shards'
        halves, still disjoint from the other half; but a prefix fraction mixes shards: it is
        the union of each shard's own prefix, not a prefix of the pooled text.

        Raises:
            CraneLensError: The results differ in model (any :class:`ModelSpec` field but the
                device, or ``config["model_fingerprint"]``), tokenizer
                (``config["tokenizer_sha256"]``), methods (as sets) or a setting of
                :data:`MERGE_SETTINGS`; or a shard of each covers the same token blocks
                (``config["blocks_sha256"]``), which would count every token twice.

        Example:
            >>> from crane_lens.model.spec import ModelSpec
            >>> spec = ModelSpec("toy", "LlamaForCausalLM", 1, 4, 2, True, "torch.float32",
            ...                  "cpu", "blocks.{layer}.mlp.hook_post", 10)
            >>> a, b = NeuronStats(spec, ("mean_activation",)), NeuronStats(spec, ("lape",))
            >>> a.merge(b)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            crane_lens.errors.CraneLensError: Cannot merge statistics of different methods: ...
        """
        _check_mergeable(self, other)
        merged = NeuronStats(self.spec, self.methods, w_down_norm=self.w_down_norm,
                             config=_common(self.config, other.config),
                             versions=_common(self.versions, other.versions))  # fmt: skip
        merged.config["shards"] = _shards(self) + _shards(other)
        with_parts = self.has_parts and other.has_parts
        for lang in dict.fromkeys([*self.langs, *other.langs]):
            shards = [s for s in (self, other) if lang in s.n_tokens]
            merged.n_tokens[lang] = sum(s.n_tokens[lang] for s in shards)
            merged.sums[lang] = {}
            for name in shards[0].sums[lang]:
                values = [s.sums[lang][name] for s in shards]
                reduce = torch.minimum if name in MIN_FIELDS else torch.add
                merged.sums[lang][name] = values[0] if len(values) == 1 else reduce(*values)
            if with_parts:
                merged.part_tokens[lang] = [sum(counts) for counts in
                                            zip(*(s.part_tokens[lang] for s in shards), strict=True)]  # fmt: skip
                merged.part_sums[lang] = {}
                for name in shards[0].part_sums[lang]:
                    values = [s.part_sums[lang][name] for s in shards]
                    reduce = torch.minimum if name in MIN_FIELDS else torch.add
                    merged.part_sums[lang][name] = (
                        values[0] if len(values) == 1 else reduce(*values)
                    )
            offset = 0
            for s in shards:
                if lang in s.block_means:
                    merged.add_block_means(lang, s.block_ids_of(lang) + offset, s.block_means[lang],
                                           s.block_parts.get(lang) if with_parts else None)  # fmt: skip
                offset += s.n_blocks(lang)
            merged._merge_top(lang, shards)
        return merged

    def _merge_top(self, lang: str, shards: list[NeuronStats]) -> None:
        """Top contexts of ``lang`` over ``shards`` (kinds every shard has; the k of the
        smallest), each shard's blocks after the previous shards' ones."""
        kinds = [
            kind for kind in TOP_KINDS if all(kind in s.top_contexts.get(lang, {}) for s in shards)
        ]
        for kind in kinds:
            k = min(s.top_contexts[lang][kind][0].shape[1] for s in shards)
            merged, offset = None, 0
            for s in shards:
                values, index = s.top_contexts[lang][kind]
                pair = (values, shift_blocks(index, offset, int(s.config["seq_len"])))
                merged = pair if merged is None else merge_top(merged, pair, k, BY_MAGNITUDE[kind])
                offset += s.n_blocks(lang)
            assert merged is not None
            self.top_contexts.setdefault(lang, {})[kind] = (merged[0][:, :k], merged[1][:, :k])

    def __add__(self, other: NeuronStats) -> NeuronStats:
        return self.merge(other)

    # -- persistence -----------------------------------------------------------------------
    def tensors(self) -> dict[str, Tensor]:
        out = {
            f"{lang}/{name}": t for lang, fields in self.sums.items() for name, t in fields.items()
        }
        out |= {f"{lang}/block_means": t for lang, t in self.block_means.items()}
        out |= {f"{lang}/block_ids": t for lang, t in self.block_ids.items()}
        out |= {f"{lang}/block_parts": t for lang, t in self.block_parts.items()}
        out |= {f"{lang}/part/{name}": t
                for lang, fields in self.part_sums.items() for name, t in fields.items()}  # fmt: skip
        out |= {f"{lang}/part_tokens": torch.tensor(counts, dtype=torch.long)
                for lang, counts in self.part_tokens.items()}  # fmt: skip
        for lang, kinds in self.top_contexts.items():
            for kind, (values, index) in kinds.items():
                out[f"{lang}/top/{kind}/values"], out[f"{lang}/top/{kind}/index"] = values, index
        if self.w_down_norm is not None:
            out["w_down_norm"] = self.w_down_norm
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "methods": list(self.methods),
            "n_tokens": self.n_tokens,
            "config": self.config,
            "versions": self.versions,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``stats.safetensors`` and ``stats.json`` into ``directory`` (atomically)."""
        folder = Path(directory)
        with atomic_path(folder / STATS_FILE) as tmp:
            save_file(self.tensors(), str(tmp))
        write_json(
            folder / META_FILE, self.metadata()
        )  # last: its presence marks a complete result
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> NeuronStats:
        """Read results written by :meth:`save`.

        Raises:
            CraneLensError: The folder holds no (complete) statistics.
        """
        folder = Path(directory)
        meta_path, tensor_path = folder / META_FILE, folder / STATS_FILE
        if not meta_path.is_file() or not tensor_path.is_file():
            raise CraneLensError(
                f"{folder} holds no neuron statistics ({META_FILE} and {STATS_FILE} expected); "
                "pass the output_dir of compute_stats or a folder written by NeuronStats.save."
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if int(meta.get("format_version", 1)) > FORMAT_VERSION:
            raise CraneLensError(
                f"{folder} was written by a newer crane_lens (format {meta['format_version']}, "
                f"this one reads up to {FORMAT_VERSION}); upgrade crane_lens to read it."
            )
        tensors = load_file(str(tensor_path))
        # Read older folders in today's terms (their "cp" was today's "cp-attention").
        config = upgrade_config(meta["config"])
        if "shards" in config:
            config["shards"] = [shard | {"config": upgrade_config(shard["config"])}
                                for shard in config["shards"]]  # fmt: skip
        stats = cls(ModelSpec.from_dict(meta["spec"]), tuple(meta["methods"]),
                    config=config, versions=meta["versions"])  # fmt: skip
        stats.n_tokens = {lang: int(n) for lang, n in meta["n_tokens"].items()}
        stats.w_down_norm = tensors.pop("w_down_norm", None)
        for key, tensor in tensors.items():
            lang, name = key.split("/", 1)
            if name == "block_means":
                stats.block_means[lang] = tensor
            elif name == "block_ids":
                stats.block_ids[lang] = tensor
            elif name == "block_parts":
                stats.block_parts[lang] = tensor
            elif name == "part_tokens":
                stats.part_tokens[lang] = [int(n) for n in tensor.tolist()]
            elif name.startswith("top/"):
                _, kind, what = name.split("/")
                pair = stats.top_contexts.setdefault(lang, {}).setdefault(kind, (tensor, tensor))
                stats.top_contexts[lang][kind] = (
                    (tensor, pair[1]) if what == "values" else (pair[0], tensor)
                )
            elif name.startswith("part/"):
                stats.part_sums.setdefault(lang, {})[name.removeprefix("part/")] = tensor
            else:
                stats.sums.setdefault(lang, {})[name] = tensor
        stats.sums = {lang: stats.sums[lang] for lang in stats.n_tokens}  # language order
        for lang, means in stats.block_means.items():  # format 1 kept every block, in order
            stats.block_ids.setdefault(lang, torch.arange(len(means)))
        return stats

    def __repr__(self) -> str:
        tokens = ", ".join(f"{lang}: {n:,}" for lang, n in self.n_tokens.items())
        return (f"NeuronStats({self.spec.name}, methods={list(self.methods)}, "
                f"{self.spec.n_layers}×{self.spec.d_mlp} neurons, tokens {{{tokens}}})")  # fmt: skip


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()


def _check_mergeable(a: NeuronStats, b: NeuronStats) -> None:
    """Raise a :class:`CraneLensError` naming the first difference that forbids a merge."""

    def refuse(what: str, item: str, left: Any, right: Any, advice: str) -> None:
        raise CraneLensError(
            f"Cannot merge statistics of different {what}: {item} is {left!r} in the first and "
            f"{right!r} in the second. {advice}"
        )

    same_model = "Merge only shards computed with the same model, loaded the same way."
    spec_a, spec_b = a.spec.to_dict(), b.spec.to_dict()
    for key in spec_a.keys() | spec_b.keys():
        if key != "device" and spec_a.get(key) != spec_b.get(key):  # devices may differ
            refuse("models", f"the model's {key}", spec_a.get(key), spec_b.get(key), same_model)
    for key, what in MERGE_IDENTITIES.items():
        if key in a.config and key in b.config and a.config[key] != b.config[key]:
            refuse(what, f'config["{key}"]', a.config[key], b.config[key], same_model)
    if set(a.methods) != set(b.methods):
        refuse("methods", "methods", sorted(a.methods), sorted(b.methods),
               "Re-run compute_stats on one shard with the other's methods.")  # fmt: skip
    for key in MERGE_SETTINGS:
        if key not in a.config and key not in b.config:
            continue
        left, right = a.config.get(key, _MISSING), b.config.get(key, _MISSING)
        if key == "methods" and isinstance(left, list) and isinstance(right, list):
            left, right = sorted(left), sorted(right)
        if left != right:
            value = right if left is _MISSING else left
            refuse("settings", f'config["{key}"]', left, right,
                   f"Re-run compute_stats on one shard with {key}={value!r}.")  # fmt: skip
    digests = [{s["config"].get("blocks_sha256") for s in _shards(x)} - {None} for x in (a, b)]
    shared = sorted(digests[0] & digests[1])
    if shared:
        raise CraneLensError(
            f"Both statistics cover the same token blocks (blocks_sha256 {shared[0][:12]}…): "
            "merging them would count every token twice. Merge shards of different blocks."
        )


def _common(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The entries two configs (or version tables) share; ``shards`` is rebuilt by merge.
    Method lists count as the same in any order (the first one's order is kept)."""

    def same(key: str, value: Any) -> bool:
        if key == "methods" and isinstance(value, list) and isinstance(b[key], list):
            return sorted(value) == sorted(b[key])
        return bool(b[key] == value)

    return {k: v for k, v in a.items() if k != "shards" and k in b and same(k, v)}


def _shards(stats: NeuronStats) -> list[dict[str, Any]]:
    """The provenance of every run behind ``stats`` (one entry unless it is a merge)."""
    if "shards" in stats.config:
        return list(stats.config["shards"])
    config = {k: v for k, v in stats.config.items() if k != "shards"}
    return [{"config": config, "versions": dict(stats.versions), "n_tokens": dict(stats.n_tokens)}]
