"""crane_lens: find the MLP neurons a multilingual language model needs for each language.

The pipeline, one sub-package per stage: ``data`` (corpora, token blocks) → ``model`` (demo
models, TransformerBridge loader) → ``stats`` (relevance and activation statistics) →
``selection`` (language-specific neuron sets) → ``intervention`` (hooks that mask them) /
``evaluation`` (ablation matrices, benchmarks) → ``plots``; ``pipeline`` runs them all
(:func:`run`, :class:`RunConfig`, :class:`RunResult`, also as ``crane_lens.pipeline``) into a run
folder (``runs``: its settings, result and layout), which ``report`` turns into HTML.

Example:
    >>> import crane_lens as cl
    >>> corpus = cl.load_corpus("builtin", langs=["en", "zh", "vi"])
    >>> corpus.langs
    ['en', 'zh', 'vi']
"""

import warnings
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

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

# tqdm.auto warns once, in a notebook without ipywidgets, that it falls back to text bars (which
# work). Whoever imports it first — transformers, TransformerLens or crane_lens, now that the API
# loads lazily — would print it in a notebook's first model cell (crane_lens.utils.progress).
warnings.filterwarnings("ignore", message="IProgress not found")

if TYPE_CHECKING:
    from crane_lens.data import Corpus, TokenBlocks, canonical_lang, load_corpus, make_token_blocks
    from crane_lens.evaluation import (
        AblationMatrix,
        SteeringMatrix,
        ablation_matrix,
        greedy_continuations,
        steered_continuations,
        steering_matrix,
    )
    from crane_lens.explore import (
        Explanation,
        NeuronCard,
        RelevanceCache,
        TokenNLLChange,
        explain,
        neuron_card,
        relevance_cache,
        token_nll_change,
    )
    from crane_lens.intervention import ablate, ablation_hooks, intervention_values, steer
    from crane_lens.model import ModelSpec, get_spec, load_model
    from crane_lens.pipeline import RunConfig, RunResult, run
    from crane_lens.selection import (
        LanguageNeurons,
        SelectionStability,
        random_neurons,
        select_language_neurons,
        selection_stability,
    )
    from crane_lens.stats import NeuronStats, compute_stats
    from crane_lens.study import StudyConfig, StudyResult, study

# Imported on first use (PEP 562): `import crane_lens` and the `crane-lens` command start without
# torch and transformers, so a bad option fails fast and Ctrl-C is caught by the command.
_LAZY = {
    "Corpus": "crane_lens.data",
    "TokenBlocks": "crane_lens.data",
    "canonical_lang": "crane_lens.data",
    "load_corpus": "crane_lens.data",
    "make_token_blocks": "crane_lens.data",
    "AblationMatrix": "crane_lens.evaluation",
    "ablation_matrix": "crane_lens.evaluation",
    "SteeringMatrix": "crane_lens.evaluation",
    "greedy_continuations": "crane_lens.evaluation",
    "steered_continuations": "crane_lens.evaluation",
    "steering_matrix": "crane_lens.evaluation",
    "Explanation": "crane_lens.explore",
    "TokenNLLChange": "crane_lens.explore",
    "explain": "crane_lens.explore",
    "RelevanceCache": "crane_lens.explore",
    "NeuronCard": "crane_lens.explore",
    "neuron_card": "crane_lens.explore",
    "relevance_cache": "crane_lens.explore",
    "token_nll_change": "crane_lens.explore",
    "ablate": "crane_lens.intervention",
    "ablation_hooks": "crane_lens.intervention",
    "intervention_values": "crane_lens.intervention",
    "steer": "crane_lens.intervention",
    "ModelSpec": "crane_lens.model",
    "get_spec": "crane_lens.model",
    "load_model": "crane_lens.model",
    "RunConfig": "crane_lens.pipeline",
    "RunResult": "crane_lens.pipeline",
    "run": "crane_lens.pipeline",
    "StudyConfig": "crane_lens.study",
    "StudyResult": "crane_lens.study",
    "study": "crane_lens.study",
    "LanguageNeurons": "crane_lens.selection",
    "random_neurons": "crane_lens.selection",
    "select_language_neurons": "crane_lens.selection",
    "SelectionStability": "crane_lens.selection",
    "selection_stability": "crane_lens.selection",
    "NeuronStats": "crane_lens.stats",
    "compute_stats": "crane_lens.stats",
}
_SUBPACKAGES = ("data", "evaluation", "explore", "intervention", "model", "pipeline", "plots",
                "report", "runs", "selection", "stats", "study", "utils")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    if name in _SUBPACKAGES:
        return import_module(f"crane_lens.{name}")
    raise AttributeError(f"module 'crane_lens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))


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
    "NeuronCard",
    "NeuronSetMismatchError",
    "NeuronStats",
    "OutputExistsError",
    "RelevanceCache",
    "RunConfig",
    "RunResult",
    "SelectionStability",
    "SteeringMatrix",
    "StudyConfig",
    "StudyResult",
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
    "greedy_continuations",
    "intervention_values",
    "load_corpus",
    "load_model",
    "make_token_blocks",
    "neuron_card",
    "random_neurons",
    "relevance_cache",
    "run",
    "select_language_neurons",
    "selection_stability",
    "steer",
    "steered_continuations",
    "steering_matrix",
    "study",
    "token_nll_change",
]
