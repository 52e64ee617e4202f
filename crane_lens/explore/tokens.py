"""Tokens as a reader sees them, and coloured-text rendering for notebooks."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from crane_lens.errors import TokenizerError


def readable_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token's text, with byte-level pieces merged into whole characters.

    A character split over several byte-level tokens (common for Chinese) decodes as '�' piece
    by piece; here it is shown once, on the token that completes it, and the tokens before it
    show as empty strings. Special tokens show as their names (``<bos>``).

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> ids = model.tokenizer("你好", add_special_tokens=False)["input_ids"]
        >>> "".join(readable_tokens(model.tokenizer, ids))
        '你好'
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pieces: list[str] = []
    pending: list[int] = []
    for token in ids:
        token = int(token)
        if token in special:
            pieces.append(tokenizer.convert_ids_to_tokens(token))
            pending = []
            continue
        pending.append(token)
        text = tokenizer.decode(pending)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next bytes
            pieces.append("")
            continue
        pieces.append(text)
        pending = []
    return pieces


def prompt_tokens(model: Any, text_or_tokens: str | Sequence[int] | Tensor) -> Int[Tensor, " pos"]:
    """``[BOS] + tokens`` of a text (or given ids, BOS added when missing), on the CPU."""
    bos = getattr(model.tokenizer, "bos_token_id", None)
    if bos is None:
        raise TokenizerError(
            "The model's tokenizer has no BOS token; prompts are scored after BOS."
        )
    if isinstance(text_or_tokens, str):
        if not text_or_tokens:
            raise ValueError("The prompt is empty; give at least one word.")
        ids = model.tokenizer(text_or_tokens, add_special_tokens=False)["input_ids"]
    else:
        ids = [int(i) for i in torch.as_tensor(text_or_tokens).flatten().tolist()]
    if not ids or ids[0] != bos:
        ids = [bos, *ids]
    if len(ids) < 2:
        raise ValueError("The prompt has no token after BOS to predict; give at least one word.")
    return torch.tensor(ids, dtype=torch.long)


def coloured_tokens(
    pieces: Sequence[str],
    values: Sequence[float],
    title: str,
    unit: str,
    scale: float | None = None,
) -> str:
    """HTML: each token on a background coloured by its value (red positive, blue negative),
    full colour at ``scale`` (default: the largest absolute value shown)."""
    scale = scale or max((abs(v) for v in values), default=0.0) or 1.0
    spans = []
    for piece, value in zip(pieces, values, strict=True):
        alpha = min(1.0, abs(value) / scale)
        rgb = "214,39,40" if value > 0 else "31,119,180"
        text = html.escape(piece).replace("\n", "↵") or "&#8203;"
        spans.append(f'<span title="{value:+.4g} {html.escape(unit)}" style="background:'
                     f'rgba({rgb},{alpha:.2f});padding:1px 0;white-space:pre">{text}</span>')  # fmt: skip
    return (f'<div style="font-family:monospace;line-height:1.8"><b>{html.escape(title)}</b> '
            f"(hover a token for its value; red +, blue −, scale ±{scale:.3g} {html.escape(unit)})"
            f"<br>{''.join(spans)}</div>")  # fmt: skip
