"""Next-token negative log-likelihood of texts, per language and origin — two protocols.

* **Per text** (:func:`corpus_nll`, :func:`text_nll`): each text alone, as ``[BOS] + tokens``
  (truncated to the model's context). The first token of every text is predicted from BOS
  alone, so it also pays for not knowing the language yet — a cost that dominates short texts.
* **Stream** (:func:`stream_nll`): a language's texts in corpus order, joined with EOS + BOS
  (the packing of pre-training data) and cut into BOS-prefixed blocks — the way language-model perplexity is usually measured (LAPE
  evaluates on a per-language token stream) and the way crane_lens' statistics see text. Every
  text token is scored with the preceding text of the same language as context; separators are
  context only, never scored.

Texts are sorted by length and batched with *right* padding: under a causal mask no real
position attends to a pad, so no attention mask is needed and the scores equal unbatched ones;
padded targets are simply not counted. A forward pass under intervention hooks
(``with model.hooks(...)``) scores exactly the intervened model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from crane_lens.errors import TokenizerError
from crane_lens.model.runner import gold_scores, length_batches, pad_rows
from crane_lens.utils.progress import tqdm

if TYPE_CHECKING:
    import pandas as pd

    from crane_lens.data.corpus import Corpus


def encode_for_nll(model: Any, texts: Sequence[str]) -> list[list[int]]:
    """``[BOS] + tokens`` of each text, truncated to the model's context: what :func:`text_nll`
    scores (every id after the first is a predicted token). Baselines such as a unigram model
    must be computed on exactly these tokens."""
    tokenizer = model.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise TokenizerError("The model's tokenizer has no BOS token; NLL is scored after BOS.")
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 2048)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [[bos, *ids][:n_ctx] for ids in encoded]


@torch.no_grad()
def text_nll(
    model: Any,
    texts: Sequence[str],
    *,
    max_tokens_per_batch: int = 8192,
    show_progress: bool = False,
) -> tuple[list[float], list[int]]:
    """Summed NLL (nats) and number of predicted tokens of each text.

    Args:
        model: A TransformerBridge (e.g. from :func:`crane_lens.load_model`).
        texts: Texts to score.
        max_tokens_per_batch: Upper bound on tokens per forward pass.
        show_progress: Show a progress bar.

    Returns:
        ``(nats, tokens)``, lists aligned with ``texts``; a text of zero tokens scores (0.0, 0).
    """
    ids = encode_for_nll(model, texts)
    counts = [len(seq) - 1 for seq in ids]
    scorable = [i for i, seq in enumerate(ids) if len(seq) >= 2]
    batches = length_batches(ids, max_tokens_per_batch, scorable)
    parts = []  # per batch, kept on the device until the end: no host sync per pass
    for members in tqdm(batches, desc="NLL", disable=not show_progress, leave=False):
        tokens, lengths = pad_rows([ids[i] for i in members])
        logp = gold_scores(model, tokens)
        scored = torch.arange(1, tokens.shape[1])[None, :] < lengths[:, None]
        parts.append((members, -(logp * scored.to(logp.device)).sum(dim=1)))
    nats = [0.0] * len(texts)
    for members, values in parts:
        for i, value in zip(members, values.tolist(), strict=True):
            nats[i] = value
    return nats, counts


@dataclass
class NLLReport:
    """Summed NLL and token counts per language and origin.

    Attributes:
        nats: ``lang -> origin -> summed nats``.
        tokens: ``lang -> origin -> predicted tokens``.
    """

    nats: dict[str, dict[str, float]] = field(default_factory=dict)
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def langs(self) -> list[str]:
        return list(self.nats)

    def _sum(
        self, table: dict[str, dict[str, Any]], lang: str, origins: Iterable[str] | None
    ) -> Any:
        keep = None if origins is None else set(origins)
        return sum(v for o, v in table[lang].items() if keep is None or o in keep)

    def n_tokens(self, lang: str, origins: Iterable[str] | None = None) -> int:
        return int(self._sum(self.tokens, lang, origins))

    def nll(self, lang: str, origins: Iterable[str] | None = None) -> float:
        """Mean NLL in nats per token (token-weighted over texts)."""
        origins = None if origins is None else list(origins)
        return float(self._sum(self.nats, lang, origins)) / max(1, self.n_tokens(lang, origins))

    def perplexity(self, lang: str, origins: Iterable[str] | None = None) -> float:
        return math.exp(self.nll(lang, origins))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (lang, origin): nats, tokens, nll, perplexity."""
        import pandas as pd

        rows = [
            {"lang": lang, "origin": origin, "nats": self.nats[lang][origin],
             "tokens": self.tokens[lang][origin],
             "nll": self.nats[lang][origin] / max(1, self.tokens[lang][origin])}
            for lang in self.nats for origin in self.nats[lang]
        ]  # fmt: skip
        frame = pd.DataFrame(rows, columns=["lang", "origin", "nats", "tokens", "nll"])
        frame["perplexity"] = frame["nll"].map(math.exp)
        return frame


def corpus_nll(
    model: Any, corpus: Corpus, *, max_tokens_per_batch: int = 8192, show_progress: bool = True
) -> NLLReport:
    """Score every text of a corpus; aggregate per language and record origin.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> udhr = cl.load_corpus("builtin", langs="vi", split="eval", origins=["udhr"])
        >>> report = corpus_nll(model, udhr, show_progress=False)
        >>> 0 < report.nll("vi") < 10
        True
    """
    report = NLLReport()
    for lang in tqdm(corpus.langs, desc="languages", disable=not show_progress):
        records = corpus.records[lang]
        nats, counts = text_nll(
            model, [r.text for r in records], max_tokens_per_batch=max_tokens_per_batch
        )
        report.nats[lang], report.tokens[lang] = {}, {}
        for record, value, count in zip(records, nats, counts, strict=True):
            origin = record.origin or "text"
            report.nats[lang][origin] = report.nats[lang].get(origin, 0.0) + value
            report.tokens[lang][origin] = report.tokens[lang].get(origin, 0) + count
    return report


def stream_tokens(
    model: Any, texts: Sequence[str], seq_len: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Blocks ``[BOS] + up to seq_len - 1 stream tokens`` and, per block position, the index of
    the text the token belongs to (``-1`` for BOS and the EOS + BOS separators, never scored)."""
    tokenizer = model.tokenizer
    bos, eos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)
    if bos is None:
        raise TokenizerError("The model's tokenizer has no BOS token; blocks start with BOS.")
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, not {seq_len}.")
    stream: list[int] = []
    owner: list[int] = []
    for index, ids in enumerate(tokenizer(list(texts), add_special_tokens=False)["input_ids"]):
        if index:  # EOS closes a text and BOS opens the next, as in packed pre-training data
            separator = [bos] if eos is None else [eos, bos]
            stream += separator
            owner += [-1] * len(separator)
        stream += ids
        owner += [index] * len(ids)
    step = seq_len - 1
    blocks = [[bos, *stream[i : i + step]] for i in range(0, len(stream), step)]
    owners = [[-1, *owner[i : i + step]] for i in range(0, len(stream), step)]
    return blocks, owners


@torch.no_grad()
def stream_nll(
    model: Any,
    corpus: Corpus,
    *,
    seq_len: int = 256,
    batch_size: int = 16,
    show_progress: bool = True,
) -> NLLReport:
    """Score each language's texts as one stream (see the module docstring); per origin.

    Args:
        model: A TransformerBridge.
        corpus: Texts; each language's records are streamed in corpus order.
        seq_len: Block length, BOS included (at most the model's context).
        batch_size: Blocks per forward pass.
        show_progress: Show a progress bar over languages.

    Returns:
        :class:`NLLReport` whose token counts are exactly the text tokens.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> udhr = cl.load_corpus("builtin", langs="vi", split="eval", origins=["udhr"])
        >>> stream = stream_nll(model, udhr, show_progress=False)
        >>> stream.nll("vi") < corpus_nll(model, udhr, show_progress=False).nll("vi")
        True
    """
    report = NLLReport()
    for lang in tqdm(corpus.langs, desc="languages", disable=not show_progress):
        records = corpus.records[lang]
        origins = [r.origin or "text" for r in records]
        blocks, owners = stream_tokens(model, [r.text for r in records], seq_len)
        names = list(dict.fromkeys(origins))
        origin_of_text = torch.tensor([names.index(o) for o in origins] + [-1])  # [-1]: separators
        nats: torch.Tensor | None = None
        counts = torch.zeros(len(names), dtype=torch.long)
        for start in range(0, len(blocks), batch_size):
            tokens, _ = pad_rows(blocks[start : start + batch_size])
            # Text index of each predicted token; -1 (separators, BOS, padding) is not scored.
            text, _ = pad_rows([o[1:] for o in owners[start : start + batch_size]], pad=-1)
            origin = origin_of_text[text]
            scored = origin >= 0
            nll = -gold_scores(model, tokens)
            if nats is None:
                nats = torch.zeros(len(names), dtype=nll.dtype, device=nll.device)
            # Unscored positions add 0 to origin 0: no boolean indexing (a host sync) on the device.
            kept = torch.where(scored.to(nll.device), nll, torch.zeros_like(nll))
            nats.index_add_(0, origin.clamp(min=0).to(nll.device).flatten(), kept.flatten())
            counts.index_add_(0, origin[scored], torch.ones_like(origin[scored]))
        totals = nats.cpu().double() if nats is not None else torch.zeros(len(names))
        report.nats[lang] = {name: float(totals[i]) for i, name in enumerate(names)}
        report.tokens[lang] = {name: int(counts[i]) for i, name in enumerate(names)}
    return report
