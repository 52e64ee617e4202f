"""crane_lens: find the MLP neurons a multilingual language model needs for each language.

The pipeline, one sub-package per stage: ``data`` (corpora, token blocks) → ``model`` (demo
models, TransformerBridge loader) → ``stats`` (relevance and activation statistics) →
``selection`` → ``intervention`` / ``evaluation`` → ``plots``. The stages after ``stats`` arrive
in later releases.

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
    TokenizerError,
    UnknownLanguageError,
    UnsupportedModelError,
)
from crane_lens.model import ModelSpec, get_spec, load_model
from crane_lens.stats import NeuronStats, compute_stats

try:
    __version__ = version("crane_lens")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Corpus",
    "CorpusFormatError",
    "CraneLensError",
    "EmptyCorpusError",
    "MissingLanguageError",
    "ModelLoadError",
    "ModelSpec",
    "NeuronStats",
    "TokenBlocks",
    "TokenizerError",
    "UnknownLanguageError",
    "UnsupportedModelError",
    "__version__",
    "canonical_lang",
    "compute_stats",
    "get_spec",
    "load_corpus",
    "load_model",
    "make_token_blocks",
]
