"""Multiple-choice benchmarks: accuracy per language, with or without masked neurons.

**Scoring** (:func:`mc_accuracy`). Each choice is scored by the log-likelihood of its tokens
after ``[BOS] + question``; the prediction is the choice of highest score, ties going to the
lowest index. Question and choice are tokenised *separately* and their ids concatenated
(:func:`encode_pairs`): every choice of an item then sees exactly the same context ids and is
scored on exactly its own tokens, whereas a joint tokenisation can merge the last question token
with the first choice token, so that "the choice's tokens" would differ from choice to choice or
swallow part of the question. The whitespace between question and choice belongs to the
*choice* (``" Paris"``), which is how byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, crane-tiny)
attach spaces; a choice is encoded after an anchor ``"\\n"`` that is then dropped
(:func:`encode_continuations`), so a SentencePiece tokenizer that adds a dummy-prefix ``▁``
(Llama 2) does not add a spurious token to every choice. Sequences are sorted by length and
batched with right padding as in :mod:`crane_lens.evaluation.nll` (a causal model never attends
to a later pad, so no attention mask is needed and batched scores equal one-at-a-time ones);
a sequence longer than the model's context loses question tokens from the left. The forward
pass is ``model(tokens, return_type="logits")`` inside the call, so hooks the caller activates
(``with model.hooks(fwd_hooks=...)`` or :func:`crane_lens.ablate`) act on every score: this is
how masking experiments compare accuracy with and without a language's neurons.

**Length bias.** The summed log-likelihood (``normalize="none"``) favours short choices: every
extra token costs log-probability. ``"token"`` (the default) divides it by the number of tokens
of the choice (mean log-probability per token); ``"char"`` divides by its number of characters
(surrounding whitespace excluded), which does not depend on the tokenizer and so compares
models with different vocabularies. The built-in set also removes most of the bias at the
source: its distractors are drawn among the texts whose continuations have a length close to
the true one's (mean log character length over the requested languages), so that neither the
sum nor the mean can be won by length alone (the tests check that "pick the shortest" and "pick
the longest" score near chance).

**Built-in set** (:func:`builtin_multiple_choice`): "which of ``n_choices`` candidates is the
true continuation of this text?", from the embedded corpus' held-out *eval* split. Each text is
split into a context (the first ``context_fraction`` of its characters) and its continuation (the
rest): at a word boundary, or — for languages written without spaces (zh, ja, th) — at a
character position, preferably just after punctuation so that the tokenizer would not have
merged the two sides. Distractors are the continuations of other texts of the same language and
the same origin (help text for help text, UDHR for UDHR: otherwise the domain alone would give
the answer away), never one whose context is identical (it would be true as well). Items are
*parallel*: one seeded RNG picks the item keys, their distractor keys and the answer positions
once, and every language uses them, so accuracies are comparable across languages (and
per-item correctness can be paired across languages or conditions). Only alignment keys that
every requested language has (with a text of usable length: 6-120 words, or 12-300 characters
unspaced) qualify, so the requested languages decide the items: the 17 languages together share
only the UDHR paragraphs (49 items; Arabic and Hindi lack most LibreOffice help texts, and a
warning says so), the 15 others share 467 texts (418 of them LibreOffice help).

Measured on crane-tiny (seed 0, ``normalize="token"``, chance 0.25): on 100 in-domain items
(``origins=["libreoffice-help"]``) per language of those 15, mean accuracy 0.43 (en 0.56, pt 0.55,
de 0.43, zh 0.42, ja 0.31, tr 0.27), 0.30 with every MLP zeroed; on the 49 UDHR items of the 17
languages, 0.25: the demo model has not learnt that domain. Scores are not calibrated by each
choice's unconditional probability (no PMI normalisation, Holtzman et al., 2021); here all
choices are real continuations of the same origin, so their priors are comparable.

**Your own set** (:func:`load_multiple_choice`): any Hugging Face dataset, a local JSON-lines,
JSON, parquet or CSV file, with a question, a list of choices and the answer per row.

Example:
    >>> import crane_lens as cl
    >>> from crane_lens.evaluation.multiple_choice import builtin_multiple_choice, mc_accuracy
    >>> model = cl.load_model("crane-tiny", device="cpu")
    >>> mc = builtin_multiple_choice(["en", "de"], max_items_per_lang=8)
    >>> report = mc_accuracy(model, mc)
    >>> report.n_items("de"), report.chance("de")
    (8, 0.25)
    >>> zero = [(f"blocks.{l}.mlp.hook_post", lambda x, hook: x * 0) for l in range(4)]
    >>> with model.hooks(fwd_hooks=zero):
    ...     masked = mc_accuracy(model, mc)
    >>> masked.accuracy("en") <= report.accuracy("en")
    True
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from crane_lens.data.languages import canonical_lang, canonical_langs
from crane_lens.errors import (
    CorpusFormatError,
    EmptyCorpusError,
    MissingLanguageError,
    TokenizerError,
    UnknownLanguageError,
)
from crane_lens.evaluation.nll import length_batches

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Normalize = Literal["token", "none", "char"]
AnswerFormat = Literal["auto", "index", "letter", "text"]

FORMAT = "crane_lens.multiple_choice"  # marker of files written by MultipleChoiceSet.save
FORMAT_VERSION = 1
_ANCHOR = "\n"  # encoded before a choice and dropped: neutralises SentencePiece's dummy prefix
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# -- items and sets -------------------------------------------------------------------------
@dataclass
class MultipleChoiceItem:
    """One question with its candidate answers.

    Attributes:
        question: The context the choices are scored after (may be empty).
        choices: Candidate answers (at least two), scored *as written*: include the separating
            space (``" Paris"``) when the choice follows the question after a space.
        answer: Index of the right choice (0-based).
        key: Optional identifier (the built-in set: the alignment key of the source text,
            shared by the same item in every language).
    """

    question: str
    choices: list[str]
    answer: int
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str):
            raise ValueError(f"question must be a string, not {type(self.question).__name__}.")
        if not isinstance(self.choices, (list, tuple)) or len(self.choices) < 2:
            raise ValueError(
                f"an item needs at least 2 choices, got {self.choices!r}; drop such items."
            )
        self.choices = list(self.choices)
        for choice in self.choices:
            if not isinstance(choice, str) or not choice.strip():
                raise ValueError(
                    f"every choice must be a non-blank string, got {choice!r} in {self.choices!r}."
                )
        if isinstance(self.answer, bool) or not isinstance(self.answer, int):
            raise ValueError(f"answer must be a 0-based int index, not {self.answer!r}.")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"answer {self.answer} is out of range for {len(self.choices)} choices "
                f"(0-based: 0..{len(self.choices) - 1})."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "key": self.key,
        }


@dataclass
class MultipleChoiceSet:
    """Multiple-choice items per language.

    ``len(mc)`` is the number of items over all languages; ``mc["vi"]`` the items of one.

    Attributes:
        items: ``lang -> items``; language codes in any form :func:`canonical_lang` accepts
            (stored canonical).
        name: Name of the benchmark (carried into reports).
        meta: How the set was made (source, seed, settings); saved with it.
    """

    items: dict[str, list[MultipleChoiceItem]]
    name: str = "multiple-choice"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canonical: dict[str, list[MultipleChoiceItem]] = {}
        for lang, rows in self.items.items():
            code = canonical_lang(lang)
            if code in canonical:
                raise ValueError(f"{lang!r} and another code both name {code!r}; merge them.")
            if not rows:
                raise EmptyCorpusError(
                    f"Multiple-choice set {self.name!r} has no items for {code!r}; drop the "
                    "language."
                )
            canonical[code] = list(rows)
        if not canonical:
            raise EmptyCorpusError(f"Multiple-choice set {self.name!r} has no items.")
        self.items = canonical

    @property
    def langs(self) -> list[str]:
        """Languages, in order."""
        return list(self.items)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.items.values())

    def __getitem__(self, lang: str) -> list[MultipleChoiceItem]:
        return self.items[self._require(lang)]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lang}={len(rows)}" for lang, rows in self.items.items())
        return f"MultipleChoiceSet(name={self.name!r}, items: {sizes})"

    def _require(self, lang: str) -> str:
        code = canonical_lang(lang)
        if code not in self.items:
            raise MissingLanguageError(
                f"Multiple-choice set {self.name!r} has no {lang!r}; it has "
                f"{', '.join(self.langs)}."
            )
        return code

    def n_items(self, lang: str) -> int:
        return len(self[lang])

    def select(self, langs: str | Iterable[str]) -> MultipleChoiceSet:
        """The set restricted to some languages (in this order)."""
        chosen = [self._require(x) for x in canonical_langs(langs)]
        return MultipleChoiceSet({x: self.items[x] for x in chosen}, self.name, dict(self.meta))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per item: ``lang``, ``item`` (index in its language), ``key``, ``question``,
        ``choices`` (list), ``answer``, ``answer_text``."""
        import pandas as pd

        rows = [
            {"lang": lang, "item": i, "key": it.key, "question": it.question,
             "choices": list(it.choices), "answer": it.answer,
             "answer_text": it.choices[it.answer]}
            for lang, items in self.items.items() for i, it in enumerate(items)
        ]  # fmt: skip
        columns = ["lang", "item", "key", "question", "choices", "answer", "answer_text"]
        return pd.DataFrame(rows, columns=columns)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set as one JSON file, atomically (temporary file + ``os.replace``).

        It loads back with :meth:`load` or :func:`load_multiple_choice`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "meta": self.meta,
            "items": {lang: [it.to_dict() for it in rows] for lang, rows in self.items.items()},
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultipleChoiceSet:
        """Read a set written by :meth:`save`.

        Raises:
            CorpusFormatError: The file is missing, not JSON, or not such a set.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorpusFormatError(
                f"Cannot read the multiple-choice set {path}: {exc}. Pass a file written by "
                "MultipleChoiceSet.save, or use load_multiple_choice for other formats."
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorpusFormatError(
                f"{path} is not a file written by MultipleChoiceSet.save (no format "
                f"{FORMAT!r}); read other JSON with load_multiple_choice."
            )
        if data.get("version", 0) > FORMAT_VERSION:
            raise CorpusFormatError(
                f"{path} has format version {data['version']}, newer than this crane_lens "
                f"reads ({FORMAT_VERSION}); upgrade crane_lens."
            )
        try:
            items = {
                lang: [MultipleChoiceItem(**row) for row in rows]
                for lang, rows in data["items"].items()
            }
            return cls(items, str(data.get("name", "multiple-choice")), dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusFormatError(f"{path}: invalid multiple-choice set ({exc}).") from exc


# -- scoring --------------------------------------------------------------------------------
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
    logits = model(tokens, return_type="logits")[:, first - 1 : -1].float()
    targets = tokens[:, first:, None]
    # gather - logsumexp: no second vocabulary-sized tensor as log_softmax would allocate.
    gold = logits.gather(-1, targets)[..., 0] - torch.logsumexp(logits, dim=-1)
    position = torch.arange(first, tokens.shape[1], device=tokens.device)[None, :]
    scored = (position >= starts[:, None]) & (position < lengths[:, None])
    return torch.where(scored, gold, torch.zeros_like(gold)).sum(dim=1)


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
    device = next(model.parameters()).device
    logprobs = [0.0] * len(ids)
    batches = length_batches(ids, max_tokens_per_batch)
    for members in tqdm(batches, desc="choices", disable=not show_progress, leave=False):
        width = len(ids[members[-1]])
        pad = ids[members[0]][0]  # any real id: padded positions are never scored
        tokens = torch.tensor(
            [ids[i] + [pad] * (width - len(ids[i])) for i in members], device=device
        )
        values = _batch_logprobs(
            model,
            tokens,
            torch.tensor([starts[i] for i in members], device=device),
            torch.tensor([len(ids[i]) for i in members], device=device),
        )
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
UNSPACED = frozenset({"zh", "ja", "th"})  # written without spaces between words
MIN_WORDS, MAX_WORDS, MIN_SIDE_WORDS = 6, 120, 3  # spaced languages, per text / per side
MIN_CHARS, MAX_CHARS, MIN_SIDE_CHARS = 12, 300, 6  # unspaced languages
_BREAK_AFTER = frozenset("，、。；：！？,.;:!?）)」』】》")


def split_text(text: str, lang: str, context_fraction: float = 0.5) -> tuple[str, str] | None:
    """Split a text into a context and its continuation, or ``None`` when it is too short/long.

    Spaced languages: whitespace is collapsed, the cut is the word boundary closest to
    ``context_fraction`` of the characters, with at least 3 words on either side, and the
    continuation keeps the space (``"... the properties", " of a control ..."``). Unspaced
    languages (zh, ja, th): the cut is just after punctuation or whitespace when there is such
    a place within a quarter of the text from the target, else at the target character; at
    least 6 characters on either side.
    """
    if lang in UNSPACED:
        text = text.strip()
        n = len(text)
        if not MIN_CHARS <= n <= MAX_CHARS:
            return None
        target = context_fraction * n
        cuts = range(MIN_SIDE_CHARS, n - MIN_SIDE_CHARS + 1)
        natural = [
            i for i in cuts
            if abs(i - target) <= n / 4
            and (text[i - 1] in _BREAK_AFTER or text[i - 1].isspace() or text[i].isspace())
        ]  # fmt: skip
        cut = min(natural or cuts, key=lambda i: (abs(i - target), i))
        context, continuation = text[:cut].rstrip(), text[cut:]
        if continuation[:1].isspace():
            continuation = " " + continuation.lstrip()
        return context, continuation
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    target = context_fraction * len(" ".join(words))
    offsets = [0]
    for word in words:
        offsets.append(offsets[-1] + len(word) + 1)  # offsets[i] - 1: space before word i
    best = min(
        range(MIN_SIDE_WORDS, len(words) - MIN_SIDE_WORDS + 1),
        key=lambda i: (abs(offsets[i] - 1 - target), i),
    )
    return " ".join(words[:best]), " " + " ".join(words[best:])


def _warn_if_few_shared(eligible: dict[str, set[str]], shared: set[str]) -> None:
    """Name the languages whose texts limit the shared keys (greedily, while that pays)."""
    kept, dropped = dict(eligible), []
    count = len(shared)
    while len(kept) > 1:
        without = {
            lang: len(set.intersection(*(keys for other, keys in kept.items() if other != lang)))
            for lang in kept
        }
        lang = max(without, key=lambda x: (without[x], x))
        if without[lang] < 1.5 * count or without[lang] - count < 20:
            break
        dropped.append(lang)
        del kept[lang]
        count = without[lang]
    if dropped:
        log.warning(
            "Only %d texts are shared by all requested languages; without %s there would be %d "
            "(the embedded eval split lacks most of their texts).",
            len(shared), ", ".join(dropped), count,
        )  # fmt: skip


def builtin_multiple_choice(
    langs: str | Iterable[str] | None = None,
    *,
    n_choices: int = 4,
    max_items_per_lang: int | None = None,
    seed: int = 0,
    origins: Iterable[str] | None = None,
    context_fraction: float = 0.5,
) -> MultipleChoiceSet:
    """The built-in "true continuation" benchmark, parallel across languages.

    See the module docstring for the task and the length control.

    Args:
        langs: Languages (default: the 17 of the embedded corpus, which share only the 49
            UDHR items, out of crane-tiny's domain). Only texts all of them have make items, so
            fewer languages can mean more items: without ``ar`` and ``hi``, 467.
        n_choices: Candidates per item (the true continuation and ``n_choices - 1`` others).
        max_items_per_lang: Keep a seeded random sample of this many items.
        seed: Seed of the item sample, the distractors and the answer positions.
        origins: Restrict to record origins, e.g. ``["udhr"]`` (out of crane-tiny's training
            domain) or ``["libreoffice-help"]``.
        context_fraction: Share of each text's characters given as context.

    Returns:
        The same items (keys, distractor keys, answer positions) in every language; the answer
        positions are balanced over ``0 .. n_choices - 1``.

    Raises:
        UnknownLanguageError, MissingLanguageError: A language that is unknown or not in the
            embedded corpus.
        EmptyCorpusError: Fewer shared texts than ``n_choices``.
    """
    from crane_lens.data.sources import load_corpus

    if n_choices < 2:
        raise ValueError(f"n_choices must be at least 2, not {n_choices}.")
    if not 0 < context_fraction < 1:
        raise ValueError(f"context_fraction must be in (0, 1), not {context_fraction}.")
    if max_items_per_lang is not None and max_items_per_lang < 1:
        raise ValueError(f"max_items_per_lang must be positive, not {max_items_per_lang}.")
    corpus = load_corpus("builtin", langs=langs, split="eval", origins=origins)
    splits: dict[str, dict[str, tuple[str, str]]] = {}
    origin: dict[str, str | None] = {}
    for lang in corpus.langs:
        splits[lang] = {}
        for record in corpus.records[lang]:
            if record.key is not None:
                origin.setdefault(record.key, record.origin)
                parts = split_text(record.text, lang, context_fraction)
                if parts is not None:
                    splits[lang][record.key] = parts
    eligible = {lang: set(rows) for lang, rows in splits.items()}
    shared = set.intersection(*eligible.values())
    _warn_if_few_shared(eligible, shared)
    keys, seen = [], set()
    for key in sorted(shared):  # the same text under two keys would make two identical items
        versions = tuple(splits[lang][key] for lang in corpus.langs)
        if versions not in seen:
            seen.add(versions)
            keys.append(key)
    if len(keys) < n_choices:
        raise EmptyCorpusError(
            f"Only {len(keys)} texts of usable length are shared by {', '.join(corpus.langs)}; "
            f"{n_choices} choices need at least {n_choices}. Request fewer languages or choices."
        )
    # Continuation length of a key: mean over languages of the log character count.
    size = {
        k: sum(math.log(len(splits[x][k][1])) for x in corpus.langs) / len(corpus.langs)
        for k in keys
    }
    rng = random.Random(seed)
    chosen = keys
    if max_items_per_lang is not None and max_items_per_lang < len(keys):
        chosen = sorted(rng.sample(keys, max_items_per_lang))
    positions = [i % n_choices for i in range(len(chosen))]
    rng.shuffle(positions)
    pool_size = 3 * (n_choices - 1)
    items: dict[str, list[MultipleChoiceItem]] = {lang: [] for lang in corpus.langs}
    skipped = 0
    by_origin: dict[str | None, list[str]] = {}
    for key in keys:
        by_origin.setdefault(origin[key], []).append(key)
    for key, answer in zip(chosen, positions, strict=True):
        # Distractors of the same origin (help text for help text, UDHR for UDHR) when there
        # are enough: otherwise the domain alone would give the answer away.
        same = by_origin[origin[key]]
        candidates = same if len(same) >= n_choices else keys
        nearest = sorted(
            (k for k in candidates if k != key), key=lambda k: (abs(size[k] - size[key]), k)
        )
        pool = nearest[:pool_size]
        rng.shuffle(pool)
        taken = {lang: {splits[lang][key][1].strip()} for lang in corpus.langs}
        distractors: list[str] = []
        for candidate in [*pool, *nearest[pool_size:]]:
            texts = {lang: splits[lang][candidate][1].strip() for lang in corpus.langs}
            if any(
                texts[x] in taken[x] or splits[x][candidate][0] == splits[x][key][0]
                for x in corpus.langs
            ):
                continue  # a duplicate choice, or a text with the same context: also "true"
            distractors.append(candidate)
            for lang in corpus.langs:
                taken[lang].add(texts[lang])
            if len(distractors) == n_choices - 1:
                break
        if len(distractors) < n_choices - 1:
            skipped += 1
            continue
        order = [*distractors[:answer], key, *distractors[answer:]]
        for lang in corpus.langs:
            choices = [splits[lang][k][1] for k in order]
            items[lang].append(MultipleChoiceItem(splits[lang][key][0], choices, answer, key))
    if skipped:
        log.warning("%d items were dropped: not enough distinct distractors.", skipped)
    meta = {
        "source": "builtin", "split": "eval", "task": "true continuation",
        "langs": corpus.langs, "n_choices": n_choices, "seed": seed,
        "max_items_per_lang": max_items_per_lang, "context_fraction": context_fraction,
        "origins": None if origins is None else list(origins),
    }  # fmt: skip
    log.info("built-in multiple choice: %d items per language", len(items[corpus.langs[0]]))
    return MultipleChoiceSet(items, name="builtin-continuation", meta=meta)


# -- users' sets ----------------------------------------------------------------------------
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv",
                  ".tsv": "csv"}  # fmt: skip
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_SAVED_DATASET_FILES = ("dataset_info.json", "dataset_dict.json")  # Dataset.save_to_disk


def _file_builder(source: str) -> str | None:
    name = source.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    return _FILE_BUILDERS.get(Path(name).suffix)


def _is_saved_set(path: Path) -> bool:
    """A JSON file written by :meth:`MultipleChoiceSet.save` (its ``format`` comes first)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as f:
        return FORMAT in f.read(200)


def _load_rows(source: str, split: str, kwargs: dict[str, Any]) -> Any:
    import datasets

    path = Path(source).expanduser()
    builder = _file_builder(source) if path.is_file() else None
    if builder is None and _file_builder(source) is not None and not path.exists():
        raise CorpusFormatError(f"No such file: {source}.")
    if builder is not None:
        kwargs = {**kwargs, "data_files": {split: str(path)}}
        if path.name.lower().removesuffix(".gz").endswith(".tsv"):
            kwargs.setdefault("sep", "\t")
        name = builder
    else:
        name = source
        files = kwargs.get("data_files")
        if files is not None and not isinstance(files, Mapping):
            kwargs = {**kwargs, "data_files": {split: files}}  # so that split= names them
    if builder is not None and path.stat().st_size == 0:
        raise CorpusFormatError(f"{source} is empty; it should hold one question per row.")
    # StopIteration: what `datasets` lets escape on a JSON file without records.
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, StopIteration)
    errors += (getattr(getattr(datasets, "exceptions", None), "DatasetGenerationError", OSError),)
    saved = path.is_dir() and any((path / f).exists() for f in _SAVED_DATASET_FILES)
    try:
        if saved:
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(name, split=split, **kwargs)
    except errors as exc:
        raise CorpusFormatError(
            f"Cannot load the multiple-choice data {source!r}, split {split!r}: "
            f"{str(exc).rstrip('.')}. Check the path or name and the split; without a hub, "
            "pass a local .jsonl/.json/.parquet/.csv file or a dataset folder."
        ) from exc


def _answer_index(value: Any, choices: list[str], answer_format: AnswerFormat) -> int:
    """0-based index of the right choice from an int, a digit string, a letter or the text."""
    n = len(choices)
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"answer {value!r} is not an index, a letter or a choice's text")
    readings: dict[str, int] = {}
    if isinstance(value, int):
        if answer_format in ("auto", "index"):
            readings["index"] = value
    elif isinstance(value, str):
        text = value.strip()
        if answer_format in ("auto", "index") and text.isdigit():
            readings["index"] = int(text)
        if answer_format in ("auto", "letter") and len(text) == 1 and text in _LETTERS:
            readings["letter"] = _LETTERS.index(text)
        if answer_format in ("auto", "text"):
            matches = [i for i, c in enumerate(choices) if c.strip() == text]
            if len(matches) > 1:
                raise ValueError(f"answer {value!r} matches several choices {choices!r}")
            if matches:
                readings["text"] = matches[0]
    if not readings:
        expected = {
            "auto": "an index 0..{n1}, a letter A..{last}, or one choice's exact text",
            "index": "an index 0..{n1}", "letter": "a letter A..{last}",
            "text": "one choice's exact text",
        }[answer_format].format(n1=n - 1, last=_LETTERS[min(n, 26) - 1])  # fmt: skip
        raise ValueError(f"answer {value!r} is not {expected} (choices: {choices!r})")
    if len(set(readings.values())) > 1:
        raise ValueError(
            f"answer {value!r} is ambiguous: "
            + ", ".join(f"as {how} it is choice {i}" for how, i in readings.items())
            + "; pass answer_format='index', 'letter' or 'text'"
        )
    index = next(iter(readings.values()))
    if not 0 <= index < n:
        raise ValueError(f"answer {value!r} is out of range for {n} choices (0-based indices)")
    return index


def _choices_of(row: Mapping[str, Any], choices_field: str | Sequence[str]) -> list[str]:
    if isinstance(choices_field, str):
        value = row[choices_field]
        if isinstance(value, str):  # a JSON list, as CSV files hold lists
            try:
                value = json.loads(value)
            except ValueError:
                value = None
            if not isinstance(value, list):
                raise ValueError(
                    f"field {choices_field!r} holds a string that is not a JSON list; give "
                    "one column per choice with choices_field=['A', 'B', 'C', 'D']"
                )
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"field {choices_field!r} must hold a list, not {value!r}")
        values = list(value)
    else:
        values = [row[name] for name in choices_field]
        while values and (values[-1] is None or values[-1] == ""):
            values.pop()  # fewer choices in this row than columns
    return ["" if v is None else str(v) for v in values]


def load_multiple_choice(
    source: str | os.PathLike[str],
    *,
    langs: str | Iterable[str] | None = None,
    lang: str | None = None,
    lang_field: str = "lang",
    question_field: str = "question",
    choices_field: str | Sequence[str] = "choices",
    answer_field: str = "answer",
    key_field: str | None = None,
    answer_format: AnswerFormat = "auto",
    choice_prefix: str = " ",
    split: str = "test",
    config: str | None = None,
    set_name: str | None = None,
    **dataset_kwargs: Any,
) -> MultipleChoiceSet:
    """Load a multiple-choice set from a file or a Hugging Face dataset.

    Args:
        source: A local ``.jsonl``/``.json``/``.parquet``/``.csv``/``.tsv`` file (optionally
            compressed; read with the matching ``datasets`` builder, ``split`` then only names
            it), a file written by :meth:`MultipleChoiceSet.save`, a folder written by
            ``Dataset.save_to_disk``, a hub id, or a builder name (``"json"``) with
            ``data_files=``.
        langs: Keep only these languages (per-row languages).
        lang: The language of every row; then ``lang_field`` is not read.
        lang_field: Column with each row's language code (any form :func:`canonical_lang`
            accepts); rows with unknown codes are skipped with a warning.
        question_field: Column with the question (context).
        choices_field: Column with the list of choices (a JSON list in CSV files), or several
            columns, one per choice (``["A", "B", "C", "D"]``; trailing empty ones dropped).
        answer_field: Column with the right answer: a 0-based index (int or digit string), a
            letter ``"A"``, ``"B"``... or the exact text of the right choice.
        key_field: Optional column with an item identifier (e.g. shared by translations).
        answer_format: ``"auto"`` (any of the above; an answer that reads differently as a
            letter and as a text is an error) or ``"index"``, ``"letter"``, ``"text"``.
        choice_prefix: Prepended to every choice that does not start with whitespace: the
            separator between question and answer (``"Answer:" + " Paris"``); pass ``""`` for
            languages written without spaces.
        split: Dataset split.
        config: Dataset configuration (``datasets.load_dataset``'s ``name``), e.g. a subject.
        set_name: Name of the set (default: the file name or dataset id).
        **dataset_kwargs: Passed to ``datasets.load_dataset`` (``data_files=``, ``revision=``...).

    Raises:
        CorpusFormatError: Unreadable source, a missing field, a row with fewer than 2 choices,
            a blank choice, an unreadable or out-of-range answer, or no items at all.
        UnknownLanguageError: ``lang`` is not a known language.
        MissingLanguageError: A language of ``langs`` has no rows.

    Example:
        >>> import json, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "capitals.jsonl"
        >>> _ = path.write_text(json.dumps({"question": "The capital of France is",
        ...     "choices": ["Paris", "Rome"], "answer": "A"}) + "\\n")
        >>> mc = load_multiple_choice(path, lang="en")
        >>> mc["en"][0].choices, mc["en"][0].answer
        ([' Paris', ' Rome'], 0)
    """
    source = os.fspath(source)
    if _is_saved_set(Path(source).expanduser()):
        loaded = MultipleChoiceSet.load(Path(source).expanduser())
        return loaded if langs is None else loaded.select(langs)
    fixed = None if lang is None else canonical_lang(lang)
    wanted = None if langs is None else canonical_langs(langs)
    kwargs = dict(dataset_kwargs) if config is None else {**dataset_kwargs, "name": config}
    dataset = _load_rows(source, split, kwargs)
    columns = list(getattr(dataset, "column_names", None) or [])
    needed = [question_field, answer_field]
    needed += [choices_field] if isinstance(choices_field, str) else list(choices_field)
    needed += [] if fixed is not None else [lang_field]
    needed += [] if key_field is None else [key_field]
    missing = [f for f in needed if f not in columns]
    if missing:
        hint = " or give every row's language with lang='en'" if lang_field in missing else ""
        raise CorpusFormatError(
            f"{source!r} (split {split!r}) has no field {', '.join(map(repr, missing))}; its "
            f"fields are {', '.join(columns)}. Name the right ones with question_field=, "
            f"choices_field=, answer_field=, lang_field={hint}."
        )
    items: dict[str, list[MultipleChoiceItem]] = {}
    unknown: Counter[str] = Counter()
    present: set[str] = set()  # languages of the rows, wanted or not
    duplicates = 0
    for number, row in enumerate(dataset):
        if fixed is not None:
            code = fixed
        else:
            try:
                code = canonical_lang(str(row[lang_field]))
            except UnknownLanguageError:
                unknown[str(row[lang_field])] += 1
                continue
        present.add(code)
        if wanted is not None and code not in wanted:
            continue
        try:
            raw = _choices_of(row, choices_field)
            answer = _answer_index(row[answer_field], raw, answer_format)
            choices = [c if c[:1].isspace() else choice_prefix + c for c in raw]
            question = row[question_field]
            item = MultipleChoiceItem(
                "" if question is None else str(question),
                choices,
                answer,
                None if key_field is None or row[key_field] is None else str(row[key_field]),
            )
        except ValueError as exc:
            raise CorpusFormatError(
                f"{source!r}, row {number}: {str(exc).rstrip('.')}. Fix or drop the row."
            ) from exc
        duplicates += len(set(raw)) < len(raw)
        items.setdefault(code, []).append(item)
    if unknown:
        log.warning(
            "skipped rows with unknown language codes: %s",
            ", ".join(f"{code!r} ({n})" for code, n in unknown.most_common()),
        )
    if duplicates:
        log.warning("%d items of %r have two identical choices.", duplicates, source)
    absent = [x for x in wanted or [] if x not in items]
    if absent and present:
        raise MissingLanguageError(
            f"{source!r} has no rows in {', '.join(map(repr, absent))}; it has "
            f"{', '.join(sorted(present))}."
        )
    if not items:
        raise CorpusFormatError(
            f"{source!r} (split {split!r}) has no usable rows. Check the split, the "
            "lang/lang_field settings (unknown language codes are skipped) and the content."
        )
    order = wanted or list(items)
    meta = {"source": source, "split": split, "config": config, "choice_prefix": choice_prefix}
    return MultipleChoiceSet(
        {x: items[x] for x in order}, set_name or Path(source).name or source, meta
    )
