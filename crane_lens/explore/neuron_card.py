"""``neuron_card(stats, layer, neuron)``: one neuron up close, language by language.

A card shows what the statistics know about one MLP neuron in every language — how often it
fires, its mean activation, its CRANE relevance, Kojima et al.'s average precision, which
selected sets hold it, optionally the exact ΔNLL of zeroing it — and the contexts that drive
it: the top tokens the statistics pass kept (``compute_stats(..., top_contexts=k)``: the largest
activations in magnitude, or the highest relevances), each shown in its block with every token
coloured by the neuron's activation (or relevance) there.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from crane_lens.data.corpus import Corpus
from crane_lens.data.tokens import TokenBlocks, make_token_blocks
from crane_lens.errors import CraneLensError
from crane_lens.explore.tokens import coloured_tokens, display_groups
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.stats.results import NeuronStats
from crane_lens.stats.top_contexts import TopKind

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

UNITS = {"activation": "activation", "relevance": "relevance"}
KIND_TITLES = {"activation": "|activation|", "relevance": "relevance"}


@dataclass
class Context:
    """One of the neuron's top tokens, in a window of its block.

    Attributes:
        lang: The language of the text.
        rank: 0 for the language's highest value.
        value: The neuron's activation (or relevance) at the top token.
        block: The block of the language's token blocks the token is in.
        position: The token's position in its block (BOS is 0, never a context).
        pieces: The visible text of each token of the window.
        values: The neuron's value at each token of the window (``nan`` without a model).
        focus: Which piece is the top token.
    """

    lang: str
    rank: int
    value: float
    block: int
    position: int
    pieces: list[str]
    values: list[float]
    focus: int


@dataclass
class NeuronCard:
    """Everything crane_lens knows about one neuron (see :func:`neuron_card`).

    Attributes:
        layer: The neuron's layer.
        neuron: Its index in the layer.
        model: The model's name.
        kind: What the contexts are ranked and coloured by: ``"activation"`` or ``"relevance"``.
        table: One row per language: ``activation_probability``, ``mean_activation``, and
            where the statistics have them ``crane`` (mean relevance per token), ``kojima``
            (average precision), ``sets`` (the selected sets that hold the neuron) and
            ``ablation_dnll`` (the exact ΔNLL per token of zeroing it).
        contexts: The top contexts, language by language, best first.
    """

    layer: int
    neuron: int
    model: str
    kind: str
    table: pd.DataFrame
    contexts: list[Context] = field(default_factory=list)

    def contexts_of(self, lang: str) -> list[Context]:
        """The contexts of one language, best first."""
        return [c for c in self.contexts if c.lang == lang]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the table as records, the contexts as dicts."""
        table = self.table.reset_index().to_dict(orient="records")
        return {"layer": self.layer, "neuron": self.neuron, "model": self.model,
                "kind": self.kind, "table": table,
                "contexts": [asdict(c) for c in self.contexts]}  # fmt: skip

    def to_html(self) -> str:
        """A self-contained HTML fragment: the table, then each language's contexts."""
        title = f"Neuron ({self.layer}, {self.neuron}) of {self.model}"
        table = self.table.reset_index().to_html(
            float_format=lambda v: f"{v:.4g}", na_rep="–", classes="neuron-table", border=0,
            index=False,
        )  # fmt: skip
        scale = max((abs(v) for c in self.contexts for v in c.values if v == v), default=0.0)
        blocks = []
        for lang in dict.fromkeys(c.lang for c in self.contexts):
            shown = []
            for c in self.contexts_of(lang):
                notes = ["top token" if i == c.focus else "" for i in range(len(c.pieces))]
                values = [v if v == v else (c.value if i == c.focus else 0.0)
                          for i, v in enumerate(c.values)]  # fmt: skip
                shown.append(coloured_tokens(
                    c.pieces, values, f"#{c.rank + 1}: {c.value:.4g} (block {c.block}, "
                    f"token {c.position})", UNITS[self.kind], scale or None, notes, focus=c.focus,
                    legend=False,
                ))  # fmt: skip
            blocks.append(f"<h4>{html.escape(lang)}</h4>{''.join(shown)}")
        contexts = "".join(blocks) or "<p>No contexts.</p>"
        how = (f"Each token on a background coloured by the neuron's {self.kind} there (red +, "
               f"blue −, full colour at ±{scale or 1:.3g}; hover for the value); the top token "
               "outlined.")  # fmt: skip
        style = ("<style>.neuron-card table{border-collapse:collapse}.neuron-card th,"
                 ".neuron-card td{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}"
                 "</style>")  # fmt: skip
        return (f'{style}<div class="neuron-card"><h3>{html.escape(title)}</h3>{table}'
                f"<h4>Top contexts by {html.escape(KIND_TITLES[self.kind])}</h4><p>{how}</p>{contexts}</div>")  # fmt: skip

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        langs = ", ".join(self.table.index)
        return f"NeuronCard(({self.layer}, {self.neuron}) of {self.model}; {langs})"


def neuron_card(
    stats: NeuronStats,
    layer: int,
    neuron: int,
    *,
    model: Any = None,
    blocks: TokenBlocks | Corpus | None = None,
    contexts: NeuronStats | None = None,
    neurons: Mapping[str, LanguageNeurons] | None = None,
    kind: TopKind = "activation",
    n_contexts: int = 3,
    window: tuple[int, int] = (16, 4),
    langs: Sequence[str] | None = None,
    ablation: Corpus | None = None,
    ablation_tokens: int = 1024,
) -> NeuronCard:
    """The card of neuron ``(layer, neuron)``: per-language statistics, sets, top contexts.

    Args:
        stats: Statistics of a run (with ``top_contexts`` for the contexts).
        layer: The neuron's layer.
        neuron: Its index in the layer.
        model: The model the statistics came from: colours every token of a context by the
            neuron's activation (or relevance, one backward pass per block), and is needed for
            ``ablation``. Without it only the top token is coloured.
        blocks: The token blocks of the statistics pass (or the corpus they were cut from,
            cut again with the statistics' settings and checked against their fingerprint),
            to show the contexts' text. Without them the card has no contexts.
        contexts: Statistics whose top contexts to show, when ``stats`` kept none: e.g. a
            forward pass over some text, ``compute_stats(model, text, "activation_probability",
            top_contexts=8)`` (``blocks`` are then that pass's).
        neurons: Selected sets by name (``{"crane": ..., "lape": ...}``): the ``sets`` column.
        kind: Rank and colour the contexts by ``"activation"`` (magnitude: a gated MLP's
            neuron is often strongly negative where it matters) or ``"relevance"``.
        n_contexts: Contexts per language (at most the statistics' ``top_contexts``).
        window: Tokens shown before and after the top token.
        langs: Languages (default: all of ``stats``).
        ablation: Held-out text: adds the exact ΔNLL per token of zeroing this neuron alone,
            per language (``ablation_tokens`` tokens each; needs ``model``).
        ablation_tokens: Tokens per language for ``ablation``.

    Raises:
        ValueError: No such neuron, or bad counts.
        CraneLensError: Contexts asked for (``blocks``) that the statistics did not keep, or
            blocks that are not the statistics' own.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> corpus = cl.load_corpus("builtin", langs=["en", "vi"])
        >>> stats = cl.compute_stats(model, corpus, ["crane", "lape"], max_tokens_per_lang=1024,
        ...                          top_contexts=4, progress=False)
        >>> card = cl.neuron_card(stats, 3, 17, model=model, blocks=corpus)
        >>> card.table.columns.tolist(), len(card.contexts_of("vi"))
        (['activation_probability', 'mean_activation', 'crane'], 3)
    """
    import pandas as pd

    spec = stats.spec
    if not 0 <= layer < spec.n_layers or not 0 <= neuron < spec.d_mlp:
        raise ValueError(f"No neuron ({layer}, {neuron}) in a model of {spec.n_layers} layers × "
                         f"{spec.d_mlp} neurons.")  # fmt: skip
    if n_contexts < 0 or min(window) < 0 or ablation_tokens < 1:
        raise ValueError("n_contexts and window must be >= 0, ablation_tokens >= 1.")
    if ablation is not None and model is None:
        raise ValueError("ablation needs the model: pass model=... as well.")
    chosen = list(langs) if langs is not None else stats.langs
    unknown = [lang for lang in chosen if lang not in stats.langs]
    if unknown:
        raise CraneLensError(f"The statistics have no {unknown}; they cover {stats.langs}.")
    source = contexts if contexts is not None else stats
    token_blocks = _own_blocks(source, blocks, model) if blocks is not None else None
    found = source.contexts(layer, neuron, kind, chosen) if token_blocks is not None else None

    table = pd.DataFrame(index=pd.Index(chosen, name="lang"))
    n_tok = torch.tensor([stats.n_tokens[lang] for lang in chosen], dtype=torch.float64)
    for column, name in (("activation_probability", "act_on"), ("mean_activation", "act_sum")):
        sums = torch.stack([stats.sums[lang][name][layer, neuron].double() for lang in chosen])
        table[column] = (sums / n_tok).tolist()
    for method in ("crane", "kojima"):
        if method in stats.methods:
            index = [stats.langs.index(lang) for lang in chosen]
            table[method] = stats.scores(method)[index, layer, neuron].tolist()
    if neurons:
        table["sets"] = [", ".join(name for name, sets in neurons.items()
                                   if lang in sets.langs and bool(sets.mask(lang)[layer, neuron]))
                         for lang in chosen]  # fmt: skip
    if ablation is not None:
        table["ablation_dnll"] = _ablation_dnll(model, ablation, chosen, layer, neuron,
                                                ablation_tokens)  # fmt: skip

    shown: list[Context] = []
    if found is not None and token_blocks is not None:
        found = found[found["rank"] < n_contexts]
        shown = _contexts(found, token_blocks, model, layer, neuron, kind, window)
    return NeuronCard(layer, neuron, spec.name, kind, table, shown)


def _own_blocks(stats: NeuronStats, blocks: TokenBlocks | Corpus, model: Any) -> TokenBlocks:
    """The statistics pass's token blocks: given, or cut again from its corpus and checked."""
    from crane_lens.stats.engine import _fingerprint

    if isinstance(blocks, Corpus):
        if model is None:
            raise ValueError("Cutting the corpus into blocks needs the model's tokenizer: pass "
                             "model=..., or the TokenBlocks themselves.")  # fmt: skip
        c = stats.config
        missing = [lang for lang in stats.langs if lang not in blocks.langs]
        if missing:
            raise CraneLensError(
                f"The corpus has no {missing}; the statistics cover {stats.langs}."
            )
        blocks = make_token_blocks(blocks.select(stats.langs), model.tokenizer, int(c["seq_len"]),
                                   c.get("max_tokens_per_lang"), int(c.get("seed", 0)))  # fmt: skip
    own = TokenBlocks({lang: blocks.blocks[lang] for lang in stats.langs if lang in blocks.blocks},
                      blocks.seq_len, blocks.bos_token_id, blocks.seed)  # fmt: skip
    expected = stats.config.get("blocks_sha256")
    if expected is not None and _fingerprint(own) != expected:
        raise CraneLensError(
            "These are not the token blocks the statistics were computed on (their fingerprint "
            "differs): pass the blocks (or the corpus, e.g. the run's train split) of that pass."
        )
    return own


def _contexts(
    found: pd.DataFrame, blocks: TokenBlocks, model: Any, layer: int, neuron: int,
    kind: TopKind, window: tuple[int, int],
) -> list[Context]:  # fmt: skip
    """Each found top token in a window of its block, with the neuron's value at every token."""
    per_token: dict[tuple[str, int], Tensor] = {}
    if model is not None:
        keys = list(dict.fromkeys(zip(found["lang"], found["block"], strict=True)))
        rows = torch.stack([blocks.blocks[lang][block] for lang, block in keys])
        values = _neuron_values(model, rows, layer, neuron, kind)
        per_token = {key: values[i] for i, key in enumerate(keys)}
    return contexts_in_blocks(found, blocks, getattr(model, "tokenizer", None), per_token, window)


def contexts_in_blocks(
    found: pd.DataFrame,
    blocks: TokenBlocks,
    tokenizer: Any,
    per_token: Mapping[tuple[str, int], Tensor],
    window: tuple[int, int],
) -> list[Context]:
    """:class:`Context` objects for the rows of :meth:`NeuronStats.contexts`: the window of
    each block around its top token, the neuron's values there from ``per_token[(lang,
    block)]`` (``nan`` where absent)."""
    out = []
    for lang, rank, value, block, position in found.itertuples(index=False):
        row = blocks.blocks[lang][block]
        start, stop = max(1, position - window[0]), min(len(row), position + window[1] + 1)
        if tokenizer is not None:
            start, stop = _whole_characters(tokenizer, row.tolist(), start, stop)
        ids = row[start:stop].tolist()
        pieces = _piece_labels(tokenizer, ids) if tokenizer is not None else [str(i) for i in ids]
        values = per_token.get((lang, block))
        shown = values[start:stop].tolist() if values is not None else [float("nan")] * len(ids)
        out.append(Context(lang, int(rank), float(value), int(block), int(position), pieces,
                           shown, position - start))  # fmt: skip
    return out


def _whole_characters(tokenizer: Any, row: list[int], start: int, stop: int) -> tuple[int, int]:
    """``start:stop`` widened to whole characters (a byte-level window cut inside one would
    show '�' at its edge); position 0, the BOS token, stays out."""
    lo, hi = max(1, start - 3), min(len(row), stop + 3)  # a character spans ≤ 4 byte tokens
    for group in display_groups(tokenizer, row[lo:hi]):
        if group.start + lo <= start < group.stop + lo:
            start = group.start + lo
        if group.start + lo < stop <= group.stop + lo:
            stop = group.stop + lo
    return start, stop


def _piece_labels(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each token's text; the byte-level pieces of one character (one value each: activations
    do not add up) read ``你(1/2)``, ``你(2/2)``."""
    out: list[str] = []
    for group in display_groups(tokenizer, ids):
        n = group.n_tokens
        out += [group.label] if n == 1 else [f"{group.label}({i}/{n})" for i in range(1, n + 1)]
    return out


def _neuron_values(
    model: Any, rows: Tensor, layer: int, neuron: int, kind: TopKind, batch_size: int = 8
) -> Tensor:
    """``[row, pos]``: the neuron's activation (or CRANE relevance, as the statistics pass
    computed it: the whole block explained) at every token of each block."""
    from crane_lens.explore.explain import relevance_pass
    from crane_lens.model.runner import neuron_activations

    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        if kind == "relevance":
            lengths = torch.full((len(chunk),), chunk.shape[1])
            _, relevance, _ = relevance_pass(model, chunk, lengths, "crane")
            out.append(relevance[:, :, layer, neuron])
            continue
        out.append(neuron_activations(model, chunk, [(layer, neuron)])[:, :, 0])
    return torch.cat(out)


def _ablation_dnll(
    model: Any, corpus: Corpus, langs: list[str], layer: int, neuron: int, max_tokens: int
) -> list[float]:
    """Exact ΔNLL per token of zeroing the neuron alone, per language (held-out text)."""
    from crane_lens.evaluation.ablation import conditions_nll, eval_blocks
    from crane_lens.intervention.hooks import Intervention, intervention
    from crane_lens.model.loader import get_spec

    spec = get_spec(model)
    per_layer = [torch.tensor([neuron] if i == layer else [], dtype=torch.long)
                 for i in range(spec.n_layers)]  # fmt: skip
    zeroed = intervention(per_layer, d_mlp=spec.d_mlp)
    held_out = eval_blocks(model, corpus, langs, seq_len=128, max_tokens_per_lang=max_tokens)
    out = []
    for lang in langs:
        nats = conditions_nll(model, held_out[lang], [Intervention({}, {}), zeroed])
        out.append(float((nats[1].sum() - nats[0].sum()) / held_out[lang].n_tokens))
    return out
