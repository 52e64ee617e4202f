"""Stage 5 of the pipeline — evaluation: how well a (possibly intervened) model predicts text."""

from crane_lens.evaluation.nll import (
    NLLReport,
    corpus_nll,
    encode_for_nll,
    stream_nll,
    stream_tokens,
    text_nll,
)

__all__ = [
    "NLLReport",
    "corpus_nll",
    "encode_for_nll",
    "stream_nll",
    "stream_tokens",
    "text_nll",
]
