"""Exceptions raised by crane_lens.

Every error says what went wrong *and* what to do about it; they all derive from
:class:`CraneLensError` (and from the built-in exception a caller would expect, so
``except ValueError`` keeps working).
"""

from __future__ import annotations


class CraneLensError(Exception):
    """Base class of crane_lens' errors."""


class UnknownLanguageError(CraneLensError, ValueError):
    """A language code that is malformed or not known to crane_lens."""


class MissingLanguageError(CraneLensError, KeyError):
    """A known language that the chosen corpus source does not contain."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EmptyCorpusError(CraneLensError, ValueError):
    """A source (or a language in it) with no usable text."""


class CorpusFormatError(CraneLensError, ValueError):
    """A corpus file or dataset that cannot be read as configured."""


class TokenizerError(CraneLensError, ValueError):
    """A tokenizer that lacks what an operation needs (e.g. a BOS token)."""


class ModelLoadError(CraneLensError, ValueError):
    """A model that cannot be loaded as asked (missing path or tokenizer, bad device/dtype)."""


class UnsupportedModelError(CraneLensError, ValueError):
    """A model without the MLP neuron hooks crane_lens analyses."""


class NeuronSetMismatchError(CraneLensError, ValueError):
    """A neuron set whose layers or neuron indices do not fit the model it is applied to."""


class OutputExistsError(CraneLensError, FileExistsError):
    """An output folder that holds a different run; crane_lens never overwrites it silently."""
