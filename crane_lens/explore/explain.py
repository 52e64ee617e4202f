"""``explain(model, text)``: the relevance of every MLP neuron at every token of one prompt."""

from __future__ import annotations

import html
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
from crane_lens.model.loader import get_spec
from crane_lens.model.runner import ScoreKind, frozen_weights, score_kinds
from crane_lens.selection.neurons import LanguageNeurons
from crane_lens.stats.lrp import AttentionRule, lrp_hooks, quiet_norm_edits

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

Method = Literal["crane", "attribution"]


@dataclass
class Explanation:
    """Per-token relevance of every neuron for one prompt.

    The data is per token (``relevance``, ``activations``, ``pieces``: one row per token,
    byte-level pieces included). The views (:meth:`to_html`, :meth:`heatmap`,
    :meth:`top_neurons`) are per *display unit* (``groups``): a character that the tokenizer
    split into byte-level pieces (common for Chinese) is one unit, its relevance the **sum over
    its pieces** (:meth:`unit_relevance`). Summing keeps totals: the units' relevance adds up to
    the tokens'. Unit indices (``position`` in the views) count units from ``<bos>`` = 0; unit
    ``u`` covers the tokens ``groups[u].start:groups[u].stop``.

    Attributes:
        tokens: ``[BOS] + prompt`` token ids.
        pieces: Each token's text: a character split into byte-level pieces shows on the piece
            that completes it, the pieces before it are empty strings (see ``groups``).
        relevance: ``Float[Tensor, "pos layer neuron"]``: for ``crane`` the LRP relevance
            h·g of the explained target (summed over predicted positions) carried by the neuron
            at that token; for ``attribution`` −h·∂NLL/∂h, the first-order ΔNLL of zeroing it there.
        activations: ``Float[Tensor, "pos layer neuron"]``: the neuron activations h.
        scores: ``Float[Tensor, "pred"]``: the explained gold-token score at each predicted
            position (logit or log-probability).
        method: ``"crane"`` or ``"attribution"``.
        target: What was explained (``"logit"``, ``"logprob"`` or ``"nll"``).
        groups: Display units (:func:`crane_lens.explore.tokens.display_groups`): the text of
            each unit and the tokens ``start:stop`` it covers. Rebuilt from ``pieces`` when
            not given.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")  # its byte-level BPE splits 你 and 好 in two
        >>> result = cl.explain(model, "你好")
        >>> len(result.tokens), result.units
        (5, ['<s>', '你', '好'])
        >>> [(g.start, g.stop) for g in result.groups]
        [(0, 1), (1, 3), (3, 5)]
        >>> bool(torch.isclose(result.per_unit()[1], result.per_token()[1:3].sum()))
        True
    """

    tokens: Int[Tensor, " pos"]
    pieces: list[str]
    relevance: Float[Tensor, "pos layer neuron"]
    activations: Float[Tensor, "pos layer neuron"]
    scores: Float[Tensor, " pred"]
    method: str
    target: str
    config: dict[str, Any] = field(default_factory=dict)
    groups: list[TokenGroup] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.groups:
            self.groups = groups_from_pieces(self.pieces)

    @property
    def units(self) -> list[str]:
        """The text of each display unit (``<bos>``, then characters or whole tokens)."""
        return [group.text for group in self.groups]

    def per_token(self) -> Float[Tensor, " pos"]:
        """Relevance of all neurons at each token (byte-level pieces separately)."""
        return self.relevance.sum(dim=(1, 2))

    def per_layer(self) -> Float[Tensor, "layer pos"]:
        """Relevance of each layer's neurons at each token (byte-level pieces separately)."""
        return self.relevance.sum(dim=2).T

    def unit_relevance(self) -> Float[Tensor, "unit layer neuron"]:
        """``relevance`` summed over the tokens (pieces) of each display unit."""
        return sum_groups(self.relevance, self.groups)

    def per_unit(self) -> Float[Tensor, " unit"]:
        """Relevance of all neurons at each display unit (summed over its pieces)."""
        return sum_groups(self.per_token(), self.groups)

    def top_neurons(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` neurons with the highest relevance summed over the prompt's tokens.

        Returns:
            DataFrame with ``layer``, ``neuron``, ``relevance`` (summed over the prompt),
            ``token`` (the visible text of the display unit where the neuron's relevance
            peaks, its relevance summed over the unit's pieces; never empty), ``position``
            (that unit's index: the heatmap's column, the index into :meth:`per_unit`;
            ``<bos>`` is 0) and ``token_start``/``token_stop`` (the unit's token positions,
            stop excluded: the rows of ``relevance`` it sums).

        Example:
            >>> import crane_lens as cl
            >>> result = cl.explain(cl.load_model("crane-tiny"), "你好")
            >>> list(result.top_neurons(3).columns)
            ['layer', 'neuron', 'relevance', 'token', 'position', 'token_start', 'token_stop']
        """
        import pandas as pd

        total = self.relevance.sum(dim=0).flatten()
        order = torch.sort(-total, stable=True).indices[:k]
        d_mlp = self.relevance.shape[2]
        position = sum_groups(self.relevance.flatten(1)[:, order], self.groups).argmax(0).tolist()
        peak = [self.groups[unit] for unit in position]
        return pd.DataFrame({"layer": (order // d_mlp).tolist(), "neuron": (order % d_mlp).tolist(),
                             "relevance": total[order].tolist(),
                             "token": [group.label for group in peak], "position": position,
                             "token_start": [group.start for group in peak],
                             "token_stop": [group.stop for group in peak]})  # fmt: skip

    def share(self, neurons: LanguageNeurons, lang: str) -> Float[Tensor, " pos"]:
        """Per token (byte-level pieces separately), the share of its absolute relevance
        carried by ``lang``'s set (0…1)."""
        mask = torch.zeros(self.relevance.shape[1:], dtype=torch.bool)
        for layer, idx in enumerate(neurons.per_layer(lang)):
            mask[layer, idx] = True
        magnitude = self.relevance.abs()
        total = magnitude.sum(dim=(1, 2))
        return torch.where(total > 0, (magnitude * mask).sum(dim=(1, 2)) / total, 0.0)

    def heatmap(self) -> go.Figure:
        """Layer × display unit relevance (summed over each layer's neurons and over the unit's
        byte-level pieces), diverging around 0.

        The x ticks read ``"<position> <text>"`` (``"3 你"``): the unit's index (unique, so two
        equal characters keep two columns) and its visible text (HTML-escaped for plotly).
        """
        import plotly.graph_objects as go

        values = sum_groups(self.relevance.sum(dim=2), self.groups).T
        bound = float(values.abs().max()) or 1.0
        labels = [tick_label(position, group) for position, group in enumerate(self.groups)]
        notes = [[group_note(group) for group in self.groups]] * len(values)
        figure = go.Figure(go.Heatmap(
            z=values.numpy(), x=labels, y=[f"layer {i}" for i in range(len(values))],
            zmin=-bound, zmax=bound, colorscale="RdBu_r", customdata=notes,
            colorbar={"title": {"text": "relevance" if self.method == "crane" else "ΔNLL est."}},
            hovertemplate="%{x} (%{customdata})<br>%{y}<br>%{z:.4g}<extra></extra>",
        ))  # fmt: skip
        figure.update_layout(
            title=f"{self.method} relevance per layer and token (target: {self.target})",
            xaxis_title="token (a character split into byte-level pieces: their sum)",
            yaxis_title="layer",
            width=max(600, 28 * len(labels) + 200),
            height=260 + 22 * len(values),
        )
        return figure

    def to_html(self, scale: float | None = None) -> str:
        """The prompt's text coloured by the total relevance of each display unit (a character
        split into byte-level pieces: the sum over its pieces); pass ``scale`` to compare
        prompts."""
        unit = "relevance" if self.method == "crane" else "nats (estimated ΔNLL)"
        title = f"{self.method}: relevance of all MLP neurons per token"
        notes = [group_note(group) for group in self.groups]
        return coloured_tokens(self.units, self.per_unit().tolist(), title, unit, scale, notes)

    def _repr_html_(self) -> str:
        return self.to_html()


def tick_label(position: int, group: TokenGroup, width: int = 12) -> str:
    """A unique, visible axis label for a display unit: ``"3 你"``, ``"0 &lt;bos&gt;"``.

    Plotly reads ``<s>``, ``<b>``... in labels as markup: ``<``, ``>`` and ``&`` are escaped
    (plotly shows the entities as the characters).
    """
    text = group.label.strip() or group.label
    text = text if len(text) <= width else text[: width - 1] + "…"
    return html.escape(f"{position} {text}", quote=False)


def explain(
    model: Any,
    text_or_tokens: str | Sequence[int] | Tensor,
    method: Method = "crane",
    *,
    target: Literal["logit", "logprob"] = "logit",
    attention: AttentionRule = "attnlrp",
    objective: Literal["nll", "logit"] = "nll",
) -> Explanation:
    """Relevance of every MLP neuron at every token of one prompt: one forward + one backward.

    The same quantities as :func:`crane_lens.compute_stats`, kept per token instead of summed:
    summed over the prompt's tokens they equal the engine's sums on the same tokens.

    Args:
        model: A TransformerBridge.
        text_or_tokens: A text (any length from one word; BOS is prepended) or token ids.
        method: ``"crane"`` (AttnLRP relevance of the gold next-token ``target``) or
            ``"attribution"`` (−h·∂NLL/∂h, or the gold logit with ``objective="logit"``).
        target: For ``crane``: the gold ``"logit"`` (default) or ``"logprob"``.
        attention: For ``crane``: ``"attnlrp"``, ``"cp"`` (lxt's CP-LRP) or
            ``"cp-attention"`` (CP-LRP's attention rule only).
        objective: For ``attribution``: ``"nll"`` or ``"logit"``.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> result = cl.explain(model, "Xin chào")
        >>> result.relevance.shape[1:], len(result.pieces) == len(result.tokens)
        (torch.Size([4, 1024]), True)
    """
    tokens = prompt_tokens(model, text_or_tokens)
    acts, relevance, scores = relevance_pass(
        model, tokens[None], torch.tensor([len(tokens)]), method, target=target,
        attention=attention, objective=objective,
    )  # fmt: skip
    spec = get_spec(model)
    return Explanation(
        tokens=tokens, pieces=readable_tokens(model.tokenizer, tokens.tolist()),
        relevance=relevance[0], activations=acts[0], scores=scores[0],
        method=method, target=target if method == "crane" else objective,
        config={"attention": attention, "model": spec.name},
        groups=display_groups(model.tokenizer, tokens),
    )  # fmt: skip


def relevance_pass(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    lengths: Int[Tensor, " batch"],
    method: Method = "crane",
    *,
    target: Literal["logit", "logprob"] = "logit",
    attention: AttentionRule = "attnlrp",
    objective: Literal["nll", "logit"] = "nll",
) -> tuple[
    Float[Tensor, "batch pos layer neuron"],
    Float[Tensor, "batch pos layer neuron"],
    Float[Tensor, "batch pred"],
]:  # fmt: skip
    """One forward and one backward pass over right-padded prompts: every neuron's activation
    and relevance at every token (zero at padded positions), and the explained scores.

    Each row's target is its own scores summed over its real predicted positions; rows do not
    interact (causal attention, per-token norms), so a batch gives each prompt's
    :func:`explain` up to floating-point rounding. The one implementation behind
    :func:`explain` and :func:`relevance_cache`.
    """
    if method not in ("crane", "attribution"):
        raise ValueError(f"method must be 'crane' or 'attribution', not {method!r}.")
    spec = get_spec(model)
    posts: list[Tensor | None] = [None] * spec.n_layers

    def keep(layer: int) -> Any:
        def hook(x: Tensor, hook: Any) -> Tensor:
            posts[layer] = x
            return x

        return hook

    hooks: list[tuple[str, Any]] = [("hook_embed", lambda x, hook: x.detach().requires_grad_(True))]
    if method == "crane":
        hooks += lrp_hooks(model, attention=attention, gated=spec.gated)
        kind: ScoreKind = target
    else:
        kind = "logit" if objective == "logit" else "logprob"
    hooks += [(spec.hook_name(layer), keep(layer)) for layer in range(spec.n_layers)]
    # Position t >= 1 predicts token t: real when t < the row's length.
    real = torch.arange(1, tokens.shape[1])[None, :] < lengths[:, None]
    with frozen_weights(model), torch.enable_grad(), quiet_norm_edits():
        scores = score_kinds(model, tokens, [kind], hooks=hooks)[kind]
        explained = (scores * real.to(scores.device)).sum()
        # Attribution: -h·∂NLL/∂h = h·∂(log p)/∂h, so both read h·∂(explained score)/∂h.
        grads = torch.autograd.grad(explained, posts)  # type: ignore[arg-type]
    acts = torch.stack([h.detach().float().cpu() for h in posts if h is not None], dim=2)
    grad = torch.stack([g.float().cpu() for g in grads], dim=2)
    on_token = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None])[:, :, None, None]
    relevance = torch.where(on_token, acts * grad, 0.0)
    scores = torch.where(real, scores.detach().float().cpu(), 0.0)
    return torch.where(on_token, acts, 0.0), relevance, scores
