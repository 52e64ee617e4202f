"""``NeuronStats``: per-language, per-neuron statistics — mergeable sums plus derived scores."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from crane_lens.errors import CraneLensError, UnknownLanguageError
from crane_lens.model.spec import ModelSpec
from crane_lens.stats.methods import METHODS, STATISTICS, primary_statistic
from crane_lens.utils.io import atomic_path, write_json

if TYPE_CHECKING:
    import pandas as pd

STATS_FILE, META_FILE = "stats.safetensors", "stats.json"
FORMAT_VERSION = 1
MIN_FIELDS = frozenset({"abs_mean_min"})  # merged by minimum; every other field by sum


@dataclass
class NeuronStats:
    """Float32 accumulators per language, and the scores every method derives from them.

    The raw fields are sums over predicted tokens (and per-block means for ``kojima``), so two
    shards of a corpus merge exactly (:meth:`merge`); every score is computed on demand by
    :meth:`scores`, e.g. ``stats.scores("crane")`` → ``Float[Tensor, "lang layer neuron"]``.

    Attributes:
        spec: The model the statistics were computed on.
        methods: Methods that were run (keys of :data:`crane_lens.stats.METHODS`).
        sums: ``lang -> field -> Float[Tensor, "layer neuron"]``.
        n_tokens: Predicted tokens per language (the denominator of every mean).
        block_means: ``lang -> Float[Tensor, "block layer neuron"]``: each block's mean
            activation (``kojima`` only).
        w_down_norm: ``Float[Tensor, "layer neuron"]``, ``‖W_down[i, :]‖`` (``plnd`` only).
        config: The settings of the run (seq_len, target, attention rule, seed...).
        versions: Package versions the run used.
    """

    spec: ModelSpec
    methods: tuple[str, ...]
    sums: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    n_tokens: dict[str, int] = field(default_factory=dict)
    block_means: dict[str, Tensor] = field(default_factory=dict)
    w_down_norm: Tensor | None = None
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

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
        return torch.stack([STATISTICS[name].compute(self, lang) for lang in self.langs])

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
        n_layers, d_mlp = self.spec.n_layers, self.spec.d_mlp
        grid = torch.cartesian_prod(torch.arange(n_layers), torch.arange(d_mlp))
        frames = []
        for index, lang in enumerate(self.langs):
            frame = pd.DataFrame({"lang": lang, "layer": grid[:, 0], "neuron": grid[:, 1]})
            for name in names:
                frame[name] = self.scores(name)[index].flatten().numpy()
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # -- merging ---------------------------------------------------------------------------
    def merge(self, other: NeuronStats) -> NeuronStats:
        """Statistics of the union of two token sets (e.g. two shards of one corpus).

        Raises:
            CraneLensError: The two results come from different models or methods.
        """
        if not self.spec.same_neurons_as(other.spec) or self.methods != other.methods:
            raise CraneLensError(
                "Cannot merge statistics of different models or methods: "
                f"{self.spec.name} {list(self.methods)} vs {other.spec.name} {list(other.methods)}."
            )
        merged = NeuronStats(self.spec, self.methods, config=dict(self.config),
                             versions=dict(self.versions), w_down_norm=self.w_down_norm)  # fmt: skip
        for lang in dict.fromkeys([*self.langs, *other.langs]):
            parts = [s for s in (self, other) if lang in s.n_tokens]
            merged.n_tokens[lang] = sum(s.n_tokens[lang] for s in parts)
            merged.sums[lang] = {}
            for name in parts[0].sums[lang]:
                values = [s.sums[lang][name] for s in parts]
                reduce = torch.minimum if name in MIN_FIELDS else torch.add
                merged.sums[lang][name] = values[0] if len(values) == 1 else reduce(*values)
            if any(lang in s.block_means for s in parts):
                merged.block_means[lang] = torch.cat([s.block_means[lang] for s in parts])
        return merged

    def __add__(self, other: NeuronStats) -> NeuronStats:
        return self.merge(other)

    # -- persistence -----------------------------------------------------------------------
    def tensors(self) -> dict[str, Tensor]:
        out = {
            f"{lang}/{name}": t for lang, fields in self.sums.items() for name, t in fields.items()
        }
        out |= {f"{lang}/block_means": t for lang, t in self.block_means.items()}
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
        tensors = load_file(str(tensor_path))
        stats = cls(ModelSpec.from_dict(meta["spec"]), tuple(meta["methods"]),
                    config=meta["config"], versions=meta["versions"])  # fmt: skip
        stats.n_tokens = {lang: int(n) for lang, n in meta["n_tokens"].items()}
        stats.w_down_norm = tensors.pop("w_down_norm", None)
        for key, tensor in tensors.items():
            lang, name = key.split("/", 1)
            if name == "block_means":
                stats.block_means[lang] = tensor
            else:
                stats.sums.setdefault(lang, {})[name] = tensor
        stats.sums = {lang: stats.sums[lang] for lang in stats.n_tokens}  # language order
        return stats

    def __repr__(self) -> str:
        tokens = ", ".join(f"{lang}: {n:,}" for lang, n in self.n_tokens.items())
        return (f"NeuronStats({self.spec.name}, methods={list(self.methods)}, "
                f"{self.spec.n_layers}×{self.spec.d_mlp} neurons, tokens {{{tokens}}})")  # fmt: skip
