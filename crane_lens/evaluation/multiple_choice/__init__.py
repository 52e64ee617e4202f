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

from crane_lens.evaluation.multiple_choice.builtin import (
    UNSPACED,
    builtin_multiple_choice,
    split_text,
)
from crane_lens.evaluation.multiple_choice.loader import load_multiple_choice
from crane_lens.evaluation.multiple_choice.scoring import (
    MultipleChoiceReport,
    continuation_logprobs,
    encode_continuations,
    encode_pairs,
    mc_accuracy,
)
from crane_lens.evaluation.multiple_choice.sets import MultipleChoiceItem, MultipleChoiceSet

__all__ = [
    "UNSPACED",
    "MultipleChoiceItem",
    "MultipleChoiceReport",
    "MultipleChoiceSet",
    "builtin_multiple_choice",
    "continuation_logprobs",
    "encode_continuations",
    "encode_pairs",
    "load_multiple_choice",
    "mc_accuracy",
    "split_text",
]
