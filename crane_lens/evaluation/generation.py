"""Does the model still write in the prompt's language? Greedy continuations, language-identified.

:func:`greedy_continuations` decodes greedily with one plain forward pass per new token
(:func:`~crane_lens.model.runner.last_logits`: the whole sequence through the model, the last
position alone through the unembedding), so intervention hooks the caller has activated
(``with model.hooks(fwd_hooks=...)``) act on every step. Prompts are ``[BOS] + tokens``. Prompts
of equal token length share a batch and are never padded: the continuations are exactly those of
one prompt at a time (tested), with no attention mask to get wrong. A sequence stops at EOS; the
others of its batch go on without it. (``TransformerBridge.generate(do_sample=False)`` honours
such hooks too — with and without its KV cache, checked in the tests — but batches prompts of
different lengths by left padding; for the short continuations needed here the plain loop costs
little.)

:func:`generation_check` takes held-out prompts (by default the first ``prompt_tokens`` tokens of
embedded *eval* texts, the same segments in every language where the corpus has them),
continues them, identifies the language of each continuation
(:mod:`crane_lens.evaluation.language_id`) and reports, per prompt language, the fraction of
continuations in that language, the fraction that cannot be identified (no letters, e.g. an
immediate EOS or only punctuation), and where the others went.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

from crane_lens.data.languages import canonical_lang
from crane_lens.errors import CraneLensError, TokenizerError
from crane_lens.evaluation.language_id import LanguageIdentifier, detect_script, identifier_for
from crane_lens.model.runner import last_logits
from crane_lens.utils.io import write_json
from crane_lens.utils.progress import tqdm

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

REPORT_FILE = "generation.json"
FORMAT_VERSION = 1
UNIDENTIFIED = "none"  # distribution key of continuations the identifier cannot place


# -- decoding -------------------------------------------------------------------------------
@torch.no_grad()
def greedy_tokens(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    *,
    max_new_tokens: int = 24,
    eos_token_id: int | None = None,
) -> list[list[int]]:
    """Greedy continuation of a batch of equal-length, unpadded prompts.

    Each step runs the model on the whole sequence (no KV cache), so active hooks see every
    position of every step; only the last position is projected onto the vocabulary.

    Args:
        model: A TransformerBridge.
        tokens: Prompt ids (BOS included), all real tokens.
        max_new_tokens: Tokens to generate per prompt at most.
        eos_token_id: A row stops after emitting it (it is kept, last); ``None``: never stop.

    Returns:
        The new token ids of each row.
    """
    outputs: list[list[int]] = [[] for _ in range(tokens.shape[0])]
    active = torch.arange(tokens.shape[0])
    sequence = tokens
    for _ in range(max_new_tokens):
        logits = last_logits(model, sequence)
        chosen = logits.argmax(dim=-1)  # ties: the lowest id, deterministically
        for row, token in zip(active.tolist(), chosen.tolist(), strict=True):
            outputs[row].append(token)
        keep = torch.ones_like(chosen, dtype=torch.bool)
        if eos_token_id is not None:
            keep = chosen != eos_token_id
        sequence = torch.cat([sequence, chosen[:, None]], dim=1)[keep]
        active = active[keep.cpu()]
        if not len(active):
            break
    return outputs


def greedy_generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    stop_at_eos: bool = True,
    show_progress: bool = False,
) -> list[list[int]]:
    """Greedy new tokens for prompts given as ids (each starting with BOS), batched by length.

    Args:
        model: A TransformerBridge.
        prompts: Token ids of each prompt, ``[BOS] + tokens``.
        max_new_tokens: Tokens to generate per prompt at most.
        batch_size: Prompts per forward pass.
        stop_at_eos: Stop a prompt at the tokenizer's EOS (kept as its last new token).
        show_progress: Show a progress bar over batches.

    Returns:
        New token ids per prompt, aligned with ``prompts``.

    Raises:
        ValueError: A prompt is empty, or prompt + new tokens exceed the model's context.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"max_new_tokens and batch_size must be at least 1, not {max_new_tokens} and "
            f"{batch_size}."
        )
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 2048)
    longest = max((len(p) for p in prompts), default=0)
    if any(not p for p in prompts):
        raise ValueError("Every prompt needs at least one token (BOS).")
    if longest + max_new_tokens - 1 > n_ctx:
        raise ValueError(
            f"A prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds the model's "
            f"context of {n_ctx}; shorten the prompts or lower max_new_tokens."
        )
    eos = getattr(model.tokenizer, "eos_token_id", None) if stop_at_eos else None
    device = next(model.parameters()).device
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    batches = [
        members[start : start + batch_size]
        for _, members in sorted(by_length.items())
        for start in range(0, len(members), batch_size)
    ]
    outputs: list[list[int]] = [[] for _ in prompts]
    for members in tqdm(batches, desc="generate", disable=not show_progress, leave=False):
        tokens = torch.tensor([list(prompts[i]) for i in members], device=device)
        new = greedy_tokens(model, tokens, max_new_tokens=max_new_tokens, eos_token_id=eos)
        for i, ids in zip(members, new, strict=True):
            outputs[i] = ids
    return outputs


def _bos(model: Any) -> int:
    bos = getattr(model.tokenizer, "bos_token_id", None)
    if bos is None:
        raise TokenizerError("The model's tokenizer has no BOS token; prompts start with BOS.")
    return int(bos)


def _continuation_text(model: Any, prompt: Sequence[int], new: Sequence[int]) -> str:
    """Decoded new tokens (without EOS), decoded in context so split characters join up.

    Special tokens are left out (a model pushed off its text, e.g. by steering, may emit
    ``<start_of_image>`` markers: they are not text in any language)."""
    tokenizer = model.tokenizer
    eos = getattr(tokenizer, "eos_token_id", None)
    new = list(new[:-1] if new and new[-1] == eos else new)

    def decode(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=True))

    head = decode(prompt[1:]).rstrip("\ufffd")  # a prompt that ends inside a character
    full = decode([*prompt[1:], *new])
    return full[len(head) :] if full.startswith(head) else decode(new)


def greedy_continuations(
    model: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    show_progress: bool = False,
) -> list[str]:
    """Greedy continuation text of each prompt, stopping at EOS (which is not included).

    Prompts are encoded as ``[BOS] + tokens``. Hooks active on the model apply to every step.

    Args:
        model: A TransformerBridge (e.g. from :func:`crane_lens.load_model`).
        prompts: Prompt texts.
        max_new_tokens: Tokens to generate per prompt at most.
        batch_size: Prompts per forward pass (only prompts of equal token length share one).
        show_progress: Show a progress bar over batches.

    Returns:
        The continuations, aligned with ``prompts`` (the prompt itself is not repeated).

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny", device="cpu")
        >>> from crane_lens.evaluation.language_id import identify_language
        >>> continuations = greedy_continuations(model, ["You can set the properties of the"])
        >>> len(continuations), identify_language(continuations[0])
        (1, 'en')
    """
    bos = _bos(model)
    encoded = model.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    ids = [[bos, *row] for row in encoded]
    new = greedy_generate(
        model, ids, max_new_tokens=max_new_tokens, batch_size=batch_size,
        show_progress=show_progress,
    )  # fmt: skip
    return [_continuation_text(model, p, n) for p, n in zip(ids, new, strict=True)]


# -- report ---------------------------------------------------------------------------------
@dataclass
class GenerationReport:
    """Continuations per prompt language and the language each was identified as.

    Attributes:
        prompts: ``lang -> prompt texts``.
        continuations: ``lang -> continuation texts`` (aligned with the prompts).
        identified: ``lang -> identified language of each continuation`` (``None``: none).
        keys: ``lang -> alignment key of each prompt's source text`` (``None`` for user prompts).
        config: Settings of the run (prompt_tokens, max_new_tokens, model, identifier...).
    """

    prompts: dict[str, list[str]] = field(default_factory=dict)
    continuations: dict[str, list[str]] = field(default_factory=dict)
    identified: dict[str, list[str | None]] = field(default_factory=dict)
    keys: dict[str, list[str | None]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def langs(self) -> list[str]:
        """Prompt languages, in order."""
        return list(self.prompts)

    def _labels(self, lang: str) -> list[str | None]:
        canon = canonical_lang(lang)
        if canon not in self.identified:
            raise CraneLensError(
                f"This report has no prompts in {lang!r}; it covers {', '.join(self.langs)}."
            )
        return self.identified[canon]

    def fraction_in_language(self, lang: str, *, among_identified: bool = False) -> float:
        """Fraction of ``lang``'s continuations identified as ``lang``.

        Args:
            lang: A prompt language.
            among_identified: Leave the unidentifiable continuations (e.g. a bare ``"."``
                before EOS) out of the denominator.
        """
        labels = self._labels(lang)
        if among_identified:
            labels = [x for x in labels if x is not None]
        return sum(x == canonical_lang(lang) for x in labels) / max(1, len(labels))

    def fraction_unidentified(self, lang: str) -> float:
        """Fraction of ``lang``'s continuations that could not be identified (``None``)."""
        labels = self._labels(lang)
        return sum(x is None for x in labels) / max(1, len(labels))

    def distribution(self, lang: str) -> dict[str, float]:
        """Identified language → fraction of ``lang``'s continuations, most frequent first;
        unidentifiable ones under ``"none"``."""
        labels = self._labels(lang)
        counts = Counter(UNIDENTIFIED if x is None else x for x in labels)
        return {k: n / max(1, len(labels)) for k, n in counts.most_common()}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per prompt language: ``lang``, ``n``, ``in_language``, ``unidentified``,
        ``in_language_of_identified``, then the fraction identified as each language that
        occurs (columns sorted)."""
        import pandas as pd

        seen = sorted({x for labels in self.identified.values() for x in labels if x is not None})
        rows = []
        for lang in self.langs:
            shares = self.distribution(lang)
            rows.append(
                {"lang": lang, "n": len(self.identified[lang]),
                 "in_language": self.fraction_in_language(lang),
                 "unidentified": self.fraction_unidentified(lang),
                 "in_language_of_identified": self.fraction_in_language(
                     lang, among_identified=True),
                 **{other: shares.get(other, 0.0) for other in seen}}
            )  # fmt: skip
        columns = ["lang", "n", "in_language", "unidentified", "in_language_of_identified"]
        return pd.DataFrame(rows, columns=[*columns, *seen])

    def texts_dataframe(self) -> pd.DataFrame:
        """One row per prompt: ``lang``, ``key``, ``prompt``, ``continuation``, ``identified``."""
        import pandas as pd

        rows = [
            {"lang": lang, "key": (self.keys.get(lang) or [None] * len(prompts))[i],
             "prompt": prompt, "continuation": self.continuations[lang][i],
             "identified": self.identified[lang][i]}
            for lang, prompts in self.prompts.items() for i, prompt in enumerate(prompts)
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=["lang", "key", "prompt", "continuation", "identified"])

    def summary(self) -> str:
        """One line per language: in-language and unidentified fractions, top other language."""
        lines = []
        for lang in self.langs:
            others = [(k, v) for k, v in self.distribution(lang).items() if k not in (lang, "none")]
            other = f"; most often else: {others[0][0]} {others[0][1]:.2f}" if others else ""
            lines.append(
                f"{lang}: in language {self.fraction_in_language(lang):.2f}, unidentified "
                f"{self.fraction_unidentified(lang):.2f} (n={len(self.identified[lang])}){other}"
            )
        return "\n".join(lines)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationReport:
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CraneLensError(
                f"Generation report format {version} is not supported (this crane_lens reads "
                f"{FORMAT_VERSION}); recompute it with generation_check()."
            )
        fields = ("prompts", "continuations", "identified", "keys", "config")
        return cls(**{k: data.get(k, {}) for k in fields})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON, atomically (a folder gets ``generation.json`` inside).

        Returns:
            The file written; :meth:`load` reads it back.
        """
        target = Path(path)
        if target.is_dir():
            target = target / REPORT_FILE
        write_json(target, self.to_dict())
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GenerationReport:
        """Read a report written by :meth:`save` (a file, or a folder holding one)."""
        target = Path(path)
        if target.is_dir():
            target = target / REPORT_FILE
        if not target.is_file():
            raise CraneLensError(
                f"No generation report at {path}; write one with GenerationReport.save()."
            )
        return cls.from_dict(json.loads(target.read_text(encoding="utf-8")))


# -- the check ------------------------------------------------------------------------------
def _word_boundary(head: str, following: str) -> bool:
    """Whether a prompt may end between ``head`` and the ``following`` text: at the end of a
    word (a letter, then white space), or between two CJK characters. Not after
    punctuation, where a model tends to end the text at once."""
    if not head or not following:
        return False
    before, after = head[-1], following[0]
    if detect_script(before) in ("Hani", "Jpan") and detect_script(after) in ("Hani", "Jpan"):
        return True
    return unicodedata.category(before).startswith(("L", "M")) and after.isspace()


def _cut(tokenizer: Any, ids: Sequence[int], prompt_tokens: int) -> int:
    """Prompt length in tokens: at most ``prompt_tokens``, ending at the end of a word when one
    of the last half of those positions allows it (a continuation that starts inside a word
    says little about its language), and never inside a multi-byte character."""
    text = tokenizer.decode(list(ids[: prompt_tokens + 1]))
    fallback = None
    for cut in range(prompt_tokens, 0, -1):
        head = tokenizer.decode(list(ids[:cut]))
        if head.endswith("\ufffd") or not text.startswith(head):
            continue
        fallback = fallback or cut
        if cut >= (prompt_tokens + 1) // 2 and _word_boundary(head, text[len(head) :]):
            return cut
    return fallback or prompt_tokens


def default_prompts(
    model: Any,
    langs: Iterable[str] | None = None,
    *,
    n_prompts: int = 16,
    prompt_tokens: int = 12,
) -> dict[str, tuple[list[list[int]], list[str | None]]]:
    """Held-out prompts from the embedded *eval* split: ``lang -> (ids, keys)``.

    Each prompt is ``[BOS]`` + the first ``prompt_tokens`` tokens of a text at least twice that
    long, so the prompt stops mid-text; fewer tokens (down to half) when that lets it end at
    the end of a word rather than inside one or after punctuation (never inside a character).
    The texts are the same segments (alignment keys) in every language, spread evenly over the
    keys whose text is long enough in all of them; when there are too few such keys, each
    language's own texts fill the rest.

    Args:
        model: A TransformerBridge (its tokenizer cuts the prompts).
        langs: Languages of the embedded corpus (default: all 17).
        n_prompts: Prompts per language at most.
        prompt_tokens: Prompt length in tokens, BOS excluded.
    """
    import crane_lens as cl

    if n_prompts < 1 or prompt_tokens < 1:
        raise ValueError(
            f"n_prompts and prompt_tokens must be at least 1, not {n_prompts} and {prompt_tokens}."
        )
    corpus = cl.load_corpus("builtin", split="eval", langs=None if langs is None else list(langs))
    tokenizer, bos = model.tokenizer, _bos(model)
    eligible: dict[str, dict[str, list[int]]] = {}
    order: dict[str, list[str]] = {}
    for lang in corpus.langs:
        records = corpus.records[lang]
        encoded = tokenizer([r.text for r in records], add_special_tokens=False)["input_ids"]
        eligible[lang], order[lang] = {}, []
        for index, (record, ids) in enumerate(zip(records, encoded, strict=True)):
            if len(ids) >= 2 * prompt_tokens:
                key = record.key if record.key is not None else f"#{index}"
                eligible[lang].setdefault(key, ids)
                order[lang].append(key)
    first = corpus.langs[0]
    shared = [k for k in order[first] if all(k in eligible[lang] for lang in corpus.langs)]
    shared_set = set(shared)

    def spread(keys: list[str], n: int) -> list[str]:
        """``n`` keys evenly spaced over ``keys`` (all of them if there are fewer)."""
        return keys if len(keys) <= n else [keys[i * len(keys) // n] for i in range(n)]

    out: dict[str, tuple[list[list[int]], list[str | None]]] = {}
    for lang in corpus.langs:
        own = [k for k in order[lang] if k not in shared_set]
        keys = spread(shared, n_prompts) + spread(own, max(0, n_prompts - len(shared)))
        if not keys:
            raise CraneLensError(
                f"No {lang!r} eval text is {2 * prompt_tokens} tokens long; lower prompt_tokens."
            )
        prompts = [[bos, *ids[: _cut(tokenizer, ids, prompt_tokens)]] for ids in
                   (eligible[lang][key] for key in keys)]  # fmt: skip
        out[lang] = (prompts, [None if k.startswith("#") else k for k in keys])
    return out


def generation_check(
    model: Any,
    prompts: dict[str, list[str]] | None = None,
    *,
    langs: Iterable[str] | None = None,
    n_prompts: int = 16,
    prompt_tokens: int = 12,
    max_new_tokens: int = 24,
    identifier: LanguageIdentifier | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
) -> GenerationReport:
    """Continue prompts greedily and report whether the continuations stay in their language.

    Run it under an intervention to see what masking a language's neurons does to generation::

        with model.hooks(fwd_hooks=hooks):
            masked = generation_check(model, langs=["en", "zh"])

    Args:
        model: A TransformerBridge.
        prompts: ``lang -> prompt texts`` (encoded as ``[BOS] + tokens``); default: held-out
            prompts from the embedded eval split (:func:`default_prompts`).
        langs: Languages of the default prompts (default: all 17); not with ``prompts``.
        n_prompts: Default prompts per language.
        prompt_tokens: Length of the default prompts, BOS excluded.
        max_new_tokens: Tokens generated per prompt at most (generation stops at EOS).
        identifier: Language identifier (default: the prompts' languages and the 17 built-in
            ones, :func:`~crane_lens.evaluation.language_id.identifier_for`).
        batch_size: Prompts per forward pass.
        show_progress: Show a progress bar.

    Returns:
        A :class:`GenerationReport`.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny", device="cpu")
        >>> report = generation_check(model, langs=["vi"], n_prompts=4)
        >>> report.langs, len(report.continuations["vi"])
        (['vi'], 4)
    """
    bos = _bos(model)
    if prompts is None:
        chosen = default_prompts(model, langs, n_prompts=n_prompts, prompt_tokens=prompt_tokens)
        ids = {lang: rows for lang, (rows, _) in chosen.items()}
        keys = {lang: row_keys for lang, (_, row_keys) in chosen.items()}
        texts = {lang: [model.tokenizer.decode(p[1:]) for p in rows] for lang, rows in ids.items()}
    else:
        if langs is not None:
            raise ValueError("Pass either prompts= or langs= (for the default prompts), not both.")
        texts = {canonical_lang(lang): list(rows) for lang, rows in prompts.items()}
        empty = [lang for lang, rows in texts.items() if not rows]
        if empty:
            raise ValueError(f"No prompts for {', '.join(empty)}; drop them or add prompts.")
        tokenizer = model.tokenizer
        ids = {
            lang: [[bos, *row] for row in tokenizer(rows, add_special_tokens=False)["input_ids"]]
            for lang, rows in texts.items()
        }
        keys = {}
    # Before generating: a prompt language py3langid does not know fails here.
    identifier = identifier or identifier_for(texts)
    flat = [(lang, prompt) for lang, rows in ids.items() for prompt in rows]
    new = greedy_generate(
        model, [p for _, p in flat], max_new_tokens=max_new_tokens, batch_size=batch_size,
        show_progress=show_progress,
    )  # fmt: skip
    report = GenerationReport(
        prompts=texts,
        keys=keys,
        config={"prompt_tokens": prompt_tokens if prompts is None else None,
                "max_new_tokens": max_new_tokens, "default_prompts": prompts is None,
                "model": str(getattr(model.cfg, "model_name", "") or ""),
                "identifier": repr(identifier)},
    )  # fmt: skip
    for (lang, prompt), tokens in zip(flat, new, strict=True):
        text = _continuation_text(model, prompt, tokens)
        report.continuations.setdefault(lang, []).append(text)
        report.identified.setdefault(lang, []).append(identifier.predict(text))
    for line in report.summary().splitlines():
        log.info("generation check: %s", line)
    return report
