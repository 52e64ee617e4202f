"""crane_lens: find the MLP neurons a multilingual language model needs for each language.

The pipeline, one sub-package per stage: ``data`` (corpora, token blocks) → ``model`` (demo
models, TransformerBridge loader) → ``stats`` (relevance and activation statistics) →
``selection`` (language-specific neuron sets) → ``intervention`` (hooks that mask them) /
``evaluation`` (ablation matrices, benchmarks) → ``plots``; ``pipeline`` runs them all
(:func:`run`, :class:`RunConfig`, :class:`RunResult`, also as ``crane_lens.pipeline``).

Example:
    >>> import crane_lens as cl
    >>> corpus = cl.load_corpus("builtin", langs=["en", "zh", "vi"])
    >>> corpus.langs
    ['en', 'zh', 'vi']
"""

from importlib.metadata import PackageNotFoundError, version

from crane_lens.data import (
    Corpus,
    TokenBlocks,
    canonical_lang,
    load_corpus,
    make_token_blocks,
)
from crane_lens.errors import (
    CorpusFormatError,
    CraneLensError,
    EmptyCorpusError,
    MissingLanguageError,
    ModelLoadError,
    NeuronSetMismatchError,
    OutputExistsError,
    TokenizerError,
    UnknownLanguageError,
    UnsupportedModelError,
)
from crane_lens.evaluation import AblationMatrix, ablation_matrix
from crane_lens.explore import Explanation, TokenNLLChange, explain, token_nll_change
from crane_lens.intervention import ablate, ablation_hooks, intervention_values
from crane_lens.model import ModelSpec, get_spec, load_model
from crane_lens.pipeline import RunConfig, RunResult, run
from crane_lens.selection import LanguageNeurons, random_neurons, select_language_neurons
from crane_lens.stats import NeuronStats, compute_stats

try:
    __version__ = version("crane_lens")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AblationMatrix",
    "Corpus",
    "CorpusFormatError",
    "CraneLensError",
    "EmptyCorpusError",
    "Explanation",
    "LanguageNeurons",
    "MissingLanguageError",
    "ModelLoadError",
    "ModelSpec",
    "NeuronSetMismatchError",
    "NeuronStats",
    "OutputExistsError",
    "RunConfig",
    "RunResult",
    "TokenBlocks",
    "TokenNLLChange",
    "TokenizerError",
    "UnknownLanguageError",
    "UnsupportedModelError",
    "__version__",
    "ablate",
    "ablation_hooks",
    "ablation_matrix",
    "canonical_lang",
    "compute_stats",
    "explain",
    "get_spec",
    "intervention_values",
    "load_corpus",
    "load_model",
    "make_token_blocks",
    "random_neurons",
    "run",
    "select_language_neurons",
    "token_nll_change",
]
