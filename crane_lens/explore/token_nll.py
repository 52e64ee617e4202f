"""``token_nll_change``: what masking a language's neurons does to each token of a prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from crane_lens.explore.tokens import (
    TokenGroup,
    coloured_tokens,
    display_groups,
    group_note,
    groups_from_pieces,
    prompt_tokens,
    readable_tokens,
    sum_groups,
)
from crane_lens.intervention.hooks import Mode, intervention
from crane_lens.model.loader import get_spec
from crane_lens.model.runner import gold_scores
from crane_lens.selection.neurons import LanguageNeurons

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TokenNLLChange:
    """Per predicted token: NLL (nats) without and with a language's set masked.

    The tensors are per predicted token (``tokens[1:]``, byte-level pieces included). The
    views (:meth:`to_html`, :meth:`to_dataframe`) are per *display unit* (``groups``): a
    character that the tokenizer split into byte-level pieces (common for Chinese) is one unit,
    its NLL and ΔNLL the **sum over its pieces**. Each piece's NLL is the NLL of predicting that
    piece given everything before it (the earlier pieces of the character included), so by the
    chain rule the sum is the NLL of predicting the whole character: −log p(character | text
    before it).

    Attributes:
        tokens: ``[BOS] + prompt`` token ids.
        pieces: Text of each predicted token (``tokens[1:]``): a character split into byte-level
            pieces shows on the piece that completes it, the pieces before it are empty strings.
        base: ``Float[Tensor, "pred"]`` NLL of the unmasked model.
        masked: ``Float[Tensor, "pred"]`` NLL with the set masked.
        label: What was masked (``"crane:zh (zero)"``).
        groups: Display units of the whole ``[BOS] + prompt``
            (:func:`crane_lens.explore.tokens.display_groups`; ``<bos>`` is unit 0 and is not
            predicted). Rebuilt from ``pieces`` when not given.

    Example:
        >>> import crane_lens as cl, torch
        >>> model = cl.load_model("crane-tiny")  # its byte-level BPE splits 你 and 好 in two
        >>> sets = cl.LanguageNeurons(4, 1024, {"zh": torch.tensor([[0, 1], [2, 3]])})
        >>> change = cl.token_nll_change(model, "你好", sets, "zh")
        >>> len(change.delta), change.units
        (4, ['你', '好'])
        >>> bool(torch.isclose(change.unit_nll()[0][0], change.base[0:2].sum()))
        True
    """

    tokens: Int[Tensor, " pos"]
    pieces: list[str]
    base: Float[Tensor, " pred"]
    masked: Float[Tensor, " pred"]
    label: str
    groups: list[TokenGroup] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = [TokenGroup("<bos>", 0, 1)] + [
                TokenGroup(group.text, group.start + 1, group.stop + 1)
                for group in groups_from_pieces(self.pieces)
            ]

    @property
    def predicted_groups(self) -> list[TokenGroup]:
        """The display units that are predicted (all but those of ``<bos>``)."""
        return [group for group in self.groups if group.start >= 1]

    @property
    def units(self) -> list[str]:
        """The text of each predicted display unit."""
        return [group.text for group in self.predicted_groups]

    def unit_nll(self) -> tuple[Float[Tensor, " unit"], Float[Tensor, " unit"]]:
        """NLL of each predicted display unit, unmasked and masked: sums over its pieces."""
        groups = self.predicted_groups
        return sum_groups(self.base, groups, offset=1), sum_groups(self.masked, groups, offset=1)

    def unit_delta(self) -> Float[Tensor, " unit"]:
        """ΔNLL of each predicted display unit: the sum of its pieces' ΔNLL."""
        return sum_groups(self.delta, self.predicted_groups, offset=1)

    @property
    def delta(self) -> Float[Tensor, " pred"]:
        """ΔNLL per token: masked − unmasked (positive: the token became less likely)."""
        return self.masked - self.base

    def mean(self) -> tuple[float, float]:
        """Mean NLL per token (per piece), unmasked and masked."""
        return float(self.base.mean()), float(self.masked.mean())

    def to_dataframe(self, by: Literal["unit", "token"] = "unit") -> pd.DataFrame:
        """One row per predicted display unit (default) or per predicted token.

        Args:
            by: ``"unit"``: NLLs summed over the pieces of each unit; ``"token"``: the raw
                per-token (per-piece) values, each row naming the unit its piece belongs to.

        Returns:
            DataFrame with ``token`` (the unit's visible text, never empty), ``nll``,
            ``nll_masked``, ``delta`` (nats), ``position`` (the unit's index; ``<bos>`` is 0,
            as in :class:`~crane_lens.explore.explain.Explanation`) and, ``by="unit"``,
            ``token_start``/``token_stop`` (its tokens in ``tokens``, stop excluded) or,
            ``by="token"``, ``token_index`` (the piece's index in ``tokens``).

        Example:
            >>> import crane_lens as cl, torch
            >>> model = cl.load_model("crane-tiny")
            >>> sets = cl.LanguageNeurons(4, 1024, {"zh": torch.tensor([[0, 1]])})
            >>> change = cl.token_nll_change(model, "你好", sets, "zh")
            >>> change.to_dataframe()[["token", "position", "token_start", "token_stop"]]
              token  position  token_start  token_stop
            0     你         1            1           3
            1     好         2            3           5
            >>> list(change.to_dataframe("token")["token_index"])
            [1, 2, 3, 4]
        """
        import pandas as pd

        if by not in ("unit", "token"):
            raise ValueError(f"by must be 'unit' or 'token', not {by!r}.")
        positions = [(u, group) for u, group in enumerate(self.groups) if group.start >= 1]
        if by == "unit":
            base, masked = self.unit_nll()
            return pd.DataFrame({"token": [group.label for _, group in positions],
                                 "nll": base.tolist(), "nll_masked": masked.tolist(),
                                 "delta": (masked - base).tolist(),
                                 "position": [u for u, _ in positions],
                                 "token_start": [group.start for _, group in positions],
                                 "token_stop": [group.stop for _, group in positions]})  # fmt: skip
        rows = [(u, group, i) for u, group in positions for i in range(group.start, group.stop)]
        return pd.DataFrame({"token": [group.label for _, group, _ in rows],
                             "nll": self.base.tolist(), "nll_masked": self.masked.tolist(),
                             "delta": self.delta.tolist(), "position": [u for u, _, _ in rows],
                             "token_index": [index for _, _, index in rows]})  # fmt: skip

    def to_html(self, scale: float | None = None) -> str:
        """The prompt coloured by each display unit's ΔNLL (a character split into byte-level
        pieces: the sum over its pieces); pass the same ``scale`` (nats) to compare prompts."""
        base, masked = self.mean()
        title = f"ΔNLL per token with {self.label} masked (mean {base:.3f} → {masked:.3f} nats)"
        notes = [group_note(group) for group in self.predicted_groups]
        return coloured_tokens(self.units, self.unit_delta().tolist(), title, "nats", scale, notes)

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
    groups = display_groups(model.tokenizer, tokens)
    return TokenNLLChange(tokens, pieces, base.float().cpu(), masked.float().cpu(), label, groups)
