"""``LanguageNeurons``: the neurons selected for each language, in rank order.

Dimension names used throughout: ``lang layer neuron`` (``neuron`` indexes one layer's MLP
neurons, ``0 <= neuron < d_mlp``). A neuron is *exclusive* when exactly one language's set holds
it and *shared* when several do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from crane_lens.errors import CraneLensError, NeuronSetMismatchError, UnknownLanguageError
from crane_lens.model.spec import ModelSpec
from crane_lens.utils.io import atomic_path, write_json

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "crane_lens.language_neurons"
FORMAT_VERSION = 1


def _pairs(tensor: Tensor) -> Int[Tensor, "k 2"]:
    return tensor.to(torch.long).reshape(-1, 2)


def pairs_from_layers(layers: list[Tensor]) -> Int[Tensor, "k 2"]:
    """``(layer, neuron)`` rows from per-layer index tensors (LAPE's layout)."""
    rows = [torch.stack([torch.full_like(idx, layer), idx], dim=1)
            for layer, idx in enumerate(torch.as_tensor(x, dtype=torch.long) for x in layers)]  # fmt: skip
    return torch.cat(rows) if rows else torch.zeros(0, 2, dtype=torch.long)


@dataclass
class LanguageNeurons:
    """Per language, the selected ``(layer, neuron)`` pairs, best first.

    Attributes:
        n_layers: Layers of the model the set is for.
        d_mlp: Neurons per layer of that model.
        ranked: ``lang -> Int[Tensor, "k 2"]``, rows ``(layer, neuron)`` in selection order.
        scores: ``lang -> Float[Tensor, "k"]``, the selection score of each row (``None`` for
            sets imported without scores, e.g. from LAPE's format).
        method: What selected them (``"crane"``, ``"lape"``, ``"random"``...).
        model: Name of the model they were selected on.
        config: How they were selected (statistic, rule, budget...).
    """

    n_layers: int
    d_mlp: int
    ranked: dict[str, Tensor]
    scores: dict[str, Tensor] | None = None
    method: str = ""
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ranked = {lang: _pairs(pairs) for lang, pairs in self.ranked.items()}
        for lang, pairs in self.ranked.items():
            bad = (pairs[:, 0] < 0) | (pairs[:, 0] >= self.n_layers)
            bad |= (pairs[:, 1] < 0) | (pairs[:, 1] >= self.d_mlp)
            if bool(bad.any()):
                layer, neuron = pairs[bad][0].tolist()
                raise NeuronSetMismatchError(
                    f"Neuron ({layer}, {neuron}) of {lang!r} lies outside a model of "
                    f"{self.n_layers} layers × {self.d_mlp} neurons."
                )
            if len(torch.unique(pairs, dim=0)) != len(pairs):
                raise NeuronSetMismatchError(f"The set of {lang!r} lists a neuron twice.")

    # -- access ---------------------------------------------------------------------------
    @property
    def langs(self) -> list[str]:
        return list(self.ranked)

    def _require(self, lang: str) -> str:
        if lang not in self.ranked:
            raise UnknownLanguageError(f"No neuron set for {lang!r}; this one covers {self.langs}.")
        return lang

    def __len__(self) -> int:
        return len(self.ranked)

    def count(self, lang: str) -> int:
        """Number of neurons selected for ``lang``."""
        return len(self.ranked[self._require(lang)])

    def per_layer(self, lang: str) -> list[Int[Tensor, " k_layer"]]:
        """Sorted neuron indices of ``lang``'s set, one tensor per layer (LAPE's layout)."""
        pairs = self.ranked[self._require(lang)]
        return [pairs[pairs[:, 0] == layer, 1].sort().values for layer in range(self.n_layers)]

    def layer_counts(self, lang: str) -> list[int]:
        """How many neurons of ``lang``'s set lie in each layer."""
        return [len(idx) for idx in self.per_layer(lang)]

    def mask(self, lang: str) -> Bool[Tensor, "layer neuron"]:
        """``True`` where a neuron belongs to ``lang``'s set."""
        out = torch.zeros(self.n_layers, self.d_mlp, dtype=torch.bool)
        pairs = self.ranked[self._require(lang)]
        out[pairs[:, 0], pairs[:, 1]] = True
        return out

    def membership(self) -> Int[Tensor, "layer neuron"]:
        """How many languages' sets hold each neuron."""
        return torch.stack([self.mask(lang) for lang in self.langs]).sum(dim=0)

    def exclusive_mask(self, lang: str) -> Bool[Tensor, "layer neuron"]:
        """Neurons of ``lang``'s set that no other language's set holds."""
        return self.mask(lang) & (self.membership() == 1)

    def top(self, k: int) -> LanguageNeurons:
        """The first ``k`` neurons of every language's set (the best ``k`` by its score)."""
        return LanguageNeurons(
            self.n_layers, self.d_mlp, {lang: p[:k] for lang, p in self.ranked.items()},
            None if self.scores is None else {lang: s[:k] for lang, s in self.scores.items()},
            self.method, self.model, {**self.config, "top": k},
        )  # fmt: skip

    def select_langs(self, langs: list[str]) -> LanguageNeurons:
        """The sets of some languages only (membership is then counted among them)."""
        keep = [self._require(lang) for lang in langs]
        scores = None if self.scores is None else {lang: self.scores[lang] for lang in keep}
        return LanguageNeurons(self.n_layers, self.d_mlp, {lang: self.ranked[lang] for lang in keep},
                               scores, self.method, self.model, dict(self.config))  # fmt: skip

    # -- comparison -------------------------------------------------------------------------
    def overlap_counts(self) -> pd.DataFrame:
        """Per language and layer: selected, exclusive and shared neurons.

        The last rows (``layer == "all"``) total each language over layers.
        """
        import pandas as pd

        membership = self.membership()
        rows = []
        for lang in self.langs:
            mask = self.mask(lang)
            exclusive = (mask & (membership == 1)).sum(dim=1)
            selected = mask.sum(dim=1)
            for layer in range(self.n_layers):
                rows.append({"lang": lang, "layer": layer, "selected": int(selected[layer]),
                             "exclusive": int(exclusive[layer]),
                             "shared": int(selected[layer] - exclusive[layer])})  # fmt: skip
            rows.append({"lang": lang, "layer": "all", "selected": int(selected.sum()),
                         "exclusive": int(exclusive.sum()),
                         "shared": int(selected.sum() - exclusive.sum())})  # fmt: skip
        return pd.DataFrame(rows, columns=["lang", "layer", "selected", "exclusive", "shared"])

    def jaccard(self, other: LanguageNeurons | None = None) -> pd.DataFrame:
        """Jaccard index |A ∩ B| / |A ∪ B| between sets.

        Args:
            other: ``None`` compares this object's languages with each other (a symmetric
                lang × lang table); another :class:`LanguageNeurons` compares, language by
                language, the two methods' sets (rows: this one's languages, columns: the
                other's).

        Raises:
            NeuronSetMismatchError: ``other`` is for a model of another shape.
        """
        import pandas as pd

        other = self if other is None else other
        if (other.n_layers, other.d_mlp) != (self.n_layers, self.d_mlp):
            raise NeuronSetMismatchError(
                f"Cannot compare sets for {self.n_layers}×{self.d_mlp} and "
                f"{other.n_layers}×{other.d_mlp} neurons."
            )
        mine = {a: self.mask(a) for a in self.langs}
        table = {}
        for b in other.langs:
            column = {}
            mb = other.mask(b)
            for a in self.langs:
                ma = mine[a]
                union = int((ma | mb).sum())
                column[a] = int((ma & mb).sum()) / union if union else float("nan")
            table[b] = column
        return pd.DataFrame(table, index=self.langs, columns=other.langs)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (lang, neuron): rank, layer, neuron, score, exclusive."""
        import pandas as pd

        membership = self.membership()
        frames = []
        for lang, pairs in self.ranked.items():
            scores = None if self.scores is None else self.scores[lang].numpy()
            frames.append(pd.DataFrame({
                "lang": lang, "rank": range(len(pairs)), "layer": pairs[:, 0].numpy(),
                "neuron": pairs[:, 1].numpy(),
                "score": float("nan") if scores is None else scores,
                "exclusive": (membership[pairs[:, 0], pairs[:, 1]] == 1).numpy(),
            }))  # fmt: skip
        columns = ["lang", "rank", "layer", "neuron", "score", "exclusive"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def check_fits(self, model_or_spec: Any) -> None:
        """Raise a clear error unless the sets index neurons of a model of this shape.

        Args:
            model_or_spec: A :class:`ModelSpec` or a bridged model.

        Raises:
            NeuronSetMismatchError: Different number of layers or neurons per layer.
        """
        if isinstance(model_or_spec, ModelSpec):
            n_layers, d_mlp, name = model_or_spec.n_layers, model_or_spec.d_mlp, model_or_spec.name
        else:
            cfg = model_or_spec.cfg
            n_layers, d_mlp = int(cfg.n_layers), int(cfg.d_mlp)
            name = str(getattr(cfg, "model_name", "") or "this model")
        if (n_layers, d_mlp) != (self.n_layers, self.d_mlp):
            raise NeuronSetMismatchError(
                f"These neuron sets were selected on {self.model or 'a model'} with "
                f"{self.n_layers} layers × {self.d_mlp} neurons, but {name} has {n_layers} × "
                f"{d_mlp}. Select neurons on this model (select_language_neurons) or load the "
                "sets made for it."
            )

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "model": self.model,
            "n_layers": self.n_layers,
            "d_mlp": self.d_mlp,
            "config": self.config,
            "langs": {
                lang: {
                    "neurons": pairs.tolist(),
                    "scores": None if self.scores is None else self.scores[lang].tolist(),
                }
                for lang, pairs in self.ranked.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanguageNeurons:
        if data.get("format") != FORMAT:
            raise CraneLensError(
                "Not a crane_lens neuron-set file (no 'format': "
                f"{FORMAT!r}); LAPE's torch files load with LanguageNeurons.from_lape."
            )
        langs = data["langs"]
        has_scores = all(v.get("scores") is not None for v in langs.values())
        return cls(
            int(data["n_layers"]), int(data["d_mlp"]),
            {lang: torch.tensor(v["neurons"], dtype=torch.long) for lang, v in langs.items()},
            {lang: torch.tensor(v["scores"], dtype=torch.float32) for lang, v in langs.items()}
            if has_scores else None,
            data.get("method", ""), data.get("model", ""), data.get("config", {}),
        )  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the sets as JSON (atomically: a temporary file, then a rename)."""
        return write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LanguageNeurons:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise CraneLensError(f"No neuron-set file at {path}.")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def to_lape(self, path: str | os.PathLike[str] | None = None) -> list[list[Tensor]]:
        """LAPE's published format: a list over languages (in :attr:`langs` order) of lists over
        layers of sorted ``torch.long`` index tensors; saved with ``torch.save`` when ``path`` is
        given."""
        sets = [self.per_layer(lang) for lang in self.langs]
        if path is not None:
            with atomic_path(path) as tmp:
                torch.save(sets, tmp)
        return sets

    @classmethod
    def from_lape(
        cls,
        source: str | os.PathLike[str] | list[list[Tensor]],
        langs: list[str],
        model: Any,
        *,
        method: str = "lape",
    ) -> LanguageNeurons:
        """Read neuron sets in LAPE's format (e.g. a file other work published).

        Args:
            source: A ``torch.save``-d file or the loaded list itself.
            langs: The language of each outer entry, in order (the format does not store them).
            model: The model (or its :class:`ModelSpec`) the sets will be applied to.
            method: Label for the imported sets.

        Raises:
            NeuronSetMismatchError: The nesting, the number of languages or layers, or an index
                does not fit ``model``.
        """
        spec = model if isinstance(model, ModelSpec) else None
        n_layers = spec.n_layers if spec else int(model.cfg.n_layers)
        d_mlp = spec.d_mlp if spec else int(model.cfg.d_mlp)
        name = spec.name if spec else str(getattr(model.cfg, "model_name", ""))
        data = source if isinstance(source, list) else torch.load(source, weights_only=True)
        if not isinstance(data, list | tuple) or len(data) != len(langs):
            raise NeuronSetMismatchError(
                f"Expected a list of {len(langs)} languages ({langs}) of per-layer index tensors; "
                f"got {type(data).__name__} of length {len(data) if hasattr(data, '__len__') else '?'}."
            )
        ranked = {}
        for lang, layers in zip(langs, data, strict=True):
            if not isinstance(layers, list | tuple) or len(layers) != n_layers:
                found = len(layers) if isinstance(layers, list | tuple) else type(layers).__name__
                raise NeuronSetMismatchError(
                    f"The entry for {lang!r} has {found} layers; the model has {n_layers}. "
                    "Was the file made for another model?"
                )
            ranked[lang] = pairs_from_layers(list(layers))
        return cls(n_layers, d_mlp, ranked, None, method, name, {"imported": "lape_format"})

    def __repr__(self) -> str:
        counts = ", ".join(f"{lang}: {len(p)}" for lang, p in self.ranked.items())
        return (f"LanguageNeurons({self.method or 'unnamed'}, {self.model or '?'}, "
                f"{self.n_layers}×{self.d_mlp}, {{{counts}}})")  # fmt: skip
