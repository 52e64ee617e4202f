"""Stage 5 of the pipeline — evaluation: how well a (possibly intervened) model predicts text."""

from crane_lens.evaluation.ablation import (
    AblationMatrix,
    EvalBlocks,
    ablation_matrix,
    conditions_nll,
    eval_blocks,
)
from crane_lens.evaluation.nll import (
    NLLReport,
    corpus_nll,
    encode_for_nll,
    stream_nll,
    stream_tokens,
    text_nll,
)

__all__ = [
    "AblationMatrix",
    "EvalBlocks",
    "NLLReport",
    "ablation_matrix",
    "conditions_nll",
    "corpus_nll",
    "encode_for_nll",
    "eval_blocks",
    "stream_nll",
    "stream_tokens",
    "text_nll",
]
