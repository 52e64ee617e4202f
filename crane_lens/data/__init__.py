"""Stage 1 of the pipeline — data: corpora per language and the token blocks models read."""

from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.data.languages import LANGUAGES, LanguageInfo, canonical_lang, canonical_langs
from crane_lens.data.sources import builtin_langs, load_corpus
from crane_lens.data.tokens import TokenBlocks, make_token_blocks

__all__ = [
    "LANGUAGES",
    "Corpus",
    "CorpusInfo",
    "LanguageInfo",
    "TextRecord",
    "TokenBlocks",
    "builtin_langs",
    "canonical_lang",
    "canonical_langs",
    "load_corpus",
    "make_token_blocks",
]
