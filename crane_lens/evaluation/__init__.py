"""Stage 5 of the pipeline — evaluation: how well a (possibly intervened) model predicts text."""

from crane_lens.evaluation.ablation import (
    AblationMatrix,
    EvalBlocks,
    ablation_matrix,
    conditions_nll,
    eval_blocks,
)
from crane_lens.evaluation.generation import (
    GenerationReport,
    default_prompts,
    generation_check,
    greedy_continuations,
)
from crane_lens.evaluation.language_id import (
    LanguageIdentifier,
    default_identifier,
    identify_language,
)
from crane_lens.evaluation.multiple_choice import (
    MultipleChoiceItem,
    MultipleChoiceReport,
    MultipleChoiceSet,
    builtin_multiple_choice,
    continuation_logprobs,
    load_multiple_choice,
    mc_accuracy,
)
from crane_lens.evaluation.nll import (
    NLLReport,
    corpus_nll,
    encode_for_nll,
    stream_nll,
    stream_tokens,
    text_nll,
)
from crane_lens.evaluation.steering import (
    SteeringMatrix,
    steered_continuations,
    steering_matrix,
)

__all__ = [
    "AblationMatrix",
    "EvalBlocks",
    "GenerationReport",
    "LanguageIdentifier",
    "MultipleChoiceItem",
    "MultipleChoiceReport",
    "MultipleChoiceSet",
    "NLLReport",
    "SteeringMatrix",
    "ablation_matrix",
    "builtin_multiple_choice",
    "conditions_nll",
    "continuation_logprobs",
    "corpus_nll",
    "default_identifier",
    "default_prompts",
    "encode_for_nll",
    "eval_blocks",
    "generation_check",
    "greedy_continuations",
    "identify_language",
    "load_multiple_choice",
    "mc_accuracy",
    "steered_continuations",
    "steering_matrix",
    "stream_nll",
    "stream_tokens",
    "text_nll",
]
