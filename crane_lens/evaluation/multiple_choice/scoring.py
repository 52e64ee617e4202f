"""Scoring choices by log-likelihood: ``mc_accuracy`` and its report."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from crane_lens.data.languages import canonical_lang, canonical_langs
from crane_lens.errors import (
    MissingLanguageError,
    TokenizerError,
)
from crane_lens.evaluation.multiple_choice.sets import MultipleChoiceSet
from crane_lens.model.runner import gold_scores, length_batches, pad_rows
from crane_lens.utils.progress import tqdm

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


Normalize = Literal["token", "none", "char"]

_ANCHOR = "\n"  # encoded before a choice and dropped: neutralises SentencePiece's dummy prefix


def encode_continuations(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as a *continuation*: encoded after ``"\\n"``, which is dropped.

    For byte-level BPE this equals ``tokenizer(text)``; for SentencePiece tokenizers that add a
    dummy-prefix ``▁`` it avoids an extra token before every continuation. Where the anchor
    merges with the text (a text starting with a newline), the text is encoded alone.
    """
    if not texts:
        return []
    anchor = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
    joint = tokenizer([_ANCHOR + t for t in texts], add_special_tokens=False)["input_ids"]
    out: list[list[int]] = []
    for text, ids in zip(texts, joint, strict=True):
        if ids[: len(anchor)] == anchor:
            out.append(list(ids[len(anchor) :]))
        else:
            out.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return out


def encode_pairs(
    model: Any, contexts: Sequence[str], continuations: Sequence[str]
) -> tuple[list[list[int]], list[int]]:
    """``[BOS] + context ids + continuation ids`` of each pair, and where the continuation starts.

    Context and continuation are tokenised separately (see the module docstring). A pair longer
    than the model's context loses context tokens from the left; a continuation that alone
    exceeds it is cut at the end (both logged).

    Returns:
        ``(ids, starts)``: ``ids[i][starts[i]:]`` are the continuation's tokens (``starts[i] >= 1``).
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations.")
    tokenizer = model.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise TokenizerError(
            "The model's tokenizer has no BOS token; choices are scored after [BOS] + question. "
            "Set tokenizer.bos_token (e.g. to the EOS token) before scoring."
        )
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 2048)
    # Questions repeat once per choice: tokenise each distinct one once.
    distinct = list(dict.fromkeys(contexts))
    by_text = dict(
        zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"], strict=True)
    )
    conts = encode_continuations(tokenizer, continuations)
    ids, starts = [], []
    cut_context = cut_choice = 0
    for context, cont in zip(contexts, conts, strict=True):
        ctx = list(by_text[context])
        if 1 + len(ctx) + len(cont) > n_ctx:
            room = n_ctx - 1 - len(cont)
            if room >= 0:
                ctx, cut_context = ctx[len(ctx) - room :], cut_context + 1
            else:
                ctx, cont, cut_choice = [], cont[: n_ctx - 1], cut_choice + 1
        ids.append([bos, *ctx, *cont])
        starts.append(1 + len(ctx))
    if cut_context or cut_choice:
        log.warning(
            "%d question(s) were cut from the left and %d choice(s) at the end to fit the "
            "model's context of %d tokens.", cut_context, cut_choice, n_ctx,
        )  # fmt: skip
    return ids, starts


def _batch_logprobs(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    starts: Int[Tensor, " batch"],
    lengths: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """Summed log-probability of tokens ``starts[b] .. lengths[b] - 1`` of each row."""
    first = int(starts.min())  # positions before every row's continuation are never scored
    gold = gold_scores(model, tokens, first=first)
    position = torch.arange(first, tokens.shape[1])[None, :]
    scored = (position >= starts[:, None]) & (position < lengths[:, None])
    return torch.where(scored.to(gold.device), gold, torch.zeros_like(gold)).sum(dim=1)


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    *,
    max_tokens_per_batch: int = 8192,
    show_progress: bool = False,
) -> tuple[list[float], list[int]]:
    """Log-likelihood (nats) of each continuation after ``[BOS] + context``, and its token count.

    Args:
        model: A TransformerBridge; active hooks apply.
        contexts: Texts scored as context only.
        continuations: Texts whose tokens are scored (aligned with ``contexts``).
        max_tokens_per_batch: Upper bound on tokens per forward pass (a longer sequence runs
            alone).
        show_progress: Show a progress bar over batches.

    Returns:
        ``(logprobs, n_tokens)``, lists aligned with the inputs.
    """
    ids, starts = encode_pairs(model, contexts, continuations)
    parts = []  # kept on the device until the end: no host sync per pass
    for members in tqdm(length_batches(ids, max_tokens_per_batch), desc="choices",
                        disable=not show_progress, leave=False):  # fmt: skip
        tokens, lengths = pad_rows([ids[i] for i in members])
        first = torch.tensor([starts[i] for i in members])
        parts.append((members, _batch_logprobs(model, tokens, first, lengths)))
    logprobs = [0.0] * len(ids)
    for members, values in parts:
        for i, value in zip(members, values.tolist(), strict=True):
            logprobs[i] = value
    return logprobs, [len(seq) - start for seq, start in zip(ids, starts, strict=True)]


@dataclass
class MultipleChoiceReport:
    """Per-item scores and predictions of a model on a multiple-choice set.

    Attributes:
        name: Name of the set.
        normalize: How scores were normalised (``"token"``, ``"none"`` or ``"char"``).
        keys: ``lang -> key of each item``.
        answers: ``lang -> right choice of each item``.
        predictions: ``lang -> predicted choice of each item`` (argmax, lowest index on ties).
        scores: ``lang -> item -> normalised score of each choice`` (what the argmax ran on).
        logprobs: ``lang -> item -> summed log-probability (nats) of each choice``.
        n_tokens: ``lang -> item -> tokens of each choice``.
    """

    name: str
    normalize: str
    keys: dict[str, list[str | None]] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    predictions: dict[str, list[int]] = field(default_factory=dict)
    scores: dict[str, list[list[float]]] = field(default_factory=dict)
    logprobs: dict[str, list[list[float]]] = field(default_factory=dict)
    n_tokens: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def langs(self) -> list[str]:
        return list(self.answers)

    def _require(self, lang: str) -> str:
        code = canonical_lang(lang)
        if code not in self.answers:
            raise MissingLanguageError(
                f"This report has no {lang!r}; it covers {', '.join(self.langs)}."
            )
        return code

    def n_items(self, lang: str) -> int:
        return len(self.answers[self._require(lang)])

    def correct(self, lang: str) -> list[bool]:
        """Whether each item of ``lang`` was answered right (pair these across conditions)."""
        code = self._require(lang)
        return [p == a for p, a in zip(self.predictions[code], self.answers[code], strict=True)]

    def accuracy(self, lang: str | None = None) -> float:
        """Accuracy in ``lang``; with ``None``, the mean of the languages' accuracies."""
        if lang is None:
            return sum(self.accuracy(x) for x in self.langs) / len(self.langs)
        hits = self.correct(lang)
        return sum(hits) / len(hits)

    def chance(self, lang: str) -> float:
        """Expected accuracy of a uniform random guess (mean of 1 / number of choices)."""
        rows = self.scores[self._require(lang)]
        return sum(1 / len(row) for row in rows) / len(rows)

    def stderr(self, lang: str) -> float:
        """Binomial standard error of the accuracy, ``sqrt(p (1 - p) / n)``."""
        p = self.accuracy(lang)
        return math.sqrt(p * (1 - p) / self.n_items(lang))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per language: ``lang``, ``n_items``, ``accuracy``, ``stderr``, ``chance``."""
        import pandas as pd

        rows = [
            {"lang": x, "n_items": self.n_items(x), "accuracy": self.accuracy(x),
             "stderr": self.stderr(x), "chance": self.chance(x)}
            for x in self.langs
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=["lang", "n_items", "accuracy", "stderr", "chance"])

    def item_dataframe(self) -> pd.DataFrame:
        """One row per item: ``lang``, ``item``, ``key``, ``answer``, ``prediction``,
        ``correct``, ``scores``, ``logprobs``, ``n_tokens`` (the last three: one per choice)."""
        import pandas as pd

        rows = [
            {"lang": x, "item": i, "key": self.keys[x][i], "answer": self.answers[x][i],
             "prediction": self.predictions[x][i],
             "correct": self.predictions[x][i] == self.answers[x][i],
             "scores": self.scores[x][i], "logprobs": self.logprobs[x][i],
             "n_tokens": self.n_tokens[x][i]}
            for x in self.langs for i in range(len(self.answers[x]))
        ]  # fmt: skip
        columns = ["lang", "item", "key", "answer", "prediction", "correct", "scores",
                   "logprobs", "n_tokens"]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the lowest on ties; NaN counts as -inf."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best] or (math.isnan(values[best]) and not math.isnan(value)):
            best = i
    return best


def mc_accuracy(
    model: Any,
    mc: MultipleChoiceSet,
    *,
    normalize: Normalize = "token",
    langs: str | Iterable[str] | None = None,
    max_tokens_per_batch: int = 8192,
    show_progress: bool = False,
) -> MultipleChoiceReport:
    """Accuracy of a model on a multiple-choice set, per language.

    Each choice is scored by its log-likelihood after ``[BOS] + question`` (see the module
    docstring for tokenisation, batching and length bias); hooks active on ``model`` apply.

    Args:
        model: A TransformerBridge (e.g. from :func:`crane_lens.load_model`).
        mc: The items.
        normalize: ``"token"`` (mean log-probability per choice token, default), ``"none"``
            (summed log-probability) or ``"char"`` (summed log-probability per character of
            the choice, surrounding whitespace excluded).
        langs: Languages to score (default: all of the set).
        max_tokens_per_batch: Upper bound on tokens per forward pass.
        show_progress: Show progress bars.

    Returns:
        :class:`MultipleChoiceReport`.
    """
    if normalize not in ("token", "none", "char"):
        raise ValueError(f"normalize must be 'token', 'none' or 'char', not {normalize!r}.")
    chosen = mc.langs if langs is None else [mc._require(x) for x in canonical_langs(langs)]
    report = MultipleChoiceReport(name=mc.name, normalize=normalize)
    for lang in tqdm(chosen, desc="languages", disable=not show_progress):
        items = mc.items[lang]
        contexts = [it.question for it in items for _ in it.choices]
        choices = [c for it in items for c in it.choices]
        logprobs, counts = continuation_logprobs(
            model, contexts, choices, max_tokens_per_batch=max_tokens_per_batch,
            show_progress=show_progress,
        )  # fmt: skip
        report.keys[lang] = [it.key for it in items]
        report.answers[lang] = [it.answer for it in items]
        for key in ("predictions", "scores", "logprobs", "n_tokens"):
            getattr(report, key)[lang] = []
        at = 0
        for it in items:
            lp = logprobs[at : at + len(it.choices)]
            nt = counts[at : at + len(it.choices)]
            at += len(it.choices)
            if normalize == "token":
                score = [v / max(1, n) for v, n in zip(lp, nt, strict=True)]
            elif normalize == "char":
                score = [v / len(c.strip()) for v, c in zip(lp, it.choices, strict=True)]
            else:
                score = list(lp)
            report.logprobs[lang].append(lp)
            report.n_tokens[lang].append(nt)
            report.scores[lang].append(score)
            report.predictions[lang].append(_argmax(score))
    return report


# -- the built-in set -----------------------------------------------------------------------
