"""``token_nll_change``: what masking a language's neurons does to each token of a prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from crane_lens.explore.tokens import coloured_tokens, prompt_tokens, readable_tokens
from crane_lens.intervention.hooks import Mode, intervention
from crane_lens.model.loader import get_spec
from crane_lens.model.runner import gold_scores
from crane_lens.selection.neurons import LanguageNeurons

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TokenNLLChange:
    """Per predicted token: NLL (nats) without and with a language's set masked.

    Attributes:
        tokens: ``[BOS] + prompt`` token ids.
        pieces: Text of each predicted token (``tokens[1:]``), byte pieces merged.
        base: ``Float[Tensor, "pred"]`` NLL of the unmasked model.
        masked: ``Float[Tensor, "pred"]`` NLL with the set masked.
        label: What was masked (``"crane:zh (zero)"``).
    """

    tokens: Int[Tensor, " pos"]
    pieces: list[str]
    base: Float[Tensor, " pred"]
    masked: Float[Tensor, " pred"]
    label: str

    @property
    def delta(self) -> Float[Tensor, " pred"]:
        """ΔNLL per token: masked − unmasked (positive: the token became less likely)."""
        return self.masked - self.base

    def mean(self) -> tuple[float, float]:
        """Mean NLL per token, unmasked and masked."""
        return float(self.base.mean()), float(self.masked.mean())

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"token": self.pieces, "nll": self.base.tolist(),
                             "nll_masked": self.masked.tolist(), "delta": self.delta.tolist()})  # fmt: skip

    def to_html(self, scale: float | None = None) -> str:
        """Coloured tokens; pass the same ``scale`` (nats) to compare several prompts."""
        base, masked = self.mean()
        title = f"ΔNLL per token with {self.label} masked (mean {base:.3f} → {masked:.3f} nats)"
        return coloured_tokens(self.pieces, self.delta.tolist(), title, "nats", scale)

    def _repr_html_(self) -> str:
        return self.to_html()


@torch.no_grad()
def token_nll_change(
    model: Any,
    text_or_tokens: str | Sequence[int] | Tensor,
    neurons: LanguageNeurons,
    lang: str,
    *,
    mode: Mode = "zero",
    values: Tensor | None = None,
    factor: float = 0.0,
) -> TokenNLLChange:
    """Score a prompt token by token with and without ``lang``'s neurons masked.

    Args:
        model: A TransformerBridge.
        text_or_tokens: A text (any length from one word) or token ids.
        neurons: Language neuron sets (e.g. from :func:`crane_lens.select_language_neurons`).
        lang: Whose set to mask.
        mode, values, factor: The intervention (see :func:`crane_lens.intervention.intervention`).

    Example:
        >>> import crane_lens as cl, torch
        >>> model = cl.load_model("crane-tiny")
        >>> sets = cl.LanguageNeurons(4, 1024, {"zh": torch.tensor([[0, 1], [2, 3]])})
        >>> change = cl.token_nll_change(model, "你好，世界", sets, "zh")
        >>> len(change.pieces) == len(change.delta)
        True
    """
    neurons.check_fits(get_spec(model))
    tokens = prompt_tokens(model, text_or_tokens)
    edit = intervention(neurons, lang, mode=mode, values=values, factor=factor)
    base = -gold_scores(model, tokens[None])[0]
    masked = -gold_scores(model, tokens[None], hooks=edit.hooks())[0]
    pieces = readable_tokens(model.tokenizer, tokens.tolist())[1:]
    label = f"{neurons.method or 'neurons'}:{lang} ({mode})"
    return TokenNLLChange(tokens, pieces, base.float().cpu(), masked.float().cpu(), label)
