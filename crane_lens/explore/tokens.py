"""Tokens as a reader sees them, and coloured-text rendering for notebooks.

Byte-level tokenizers split a character into several pieces (GPT-2-style byte-level BPE splits
most Chinese characters in two or three; SentencePiece byte fallback, as in Gemma, splits rare
characters into ``<0xE9>``-style pieces). A piece alone decodes to '�' and shows nothing a reader
can recognise, so every view here works on *display units* (:func:`display_groups`): runs of
consecutive tokens whose bytes decode into complete characters. Values of a unit are the sum
over its pieces (:func:`sum_groups`); the per-token data stays available next to them.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from crane_lens.errors import TokenizerError

#: Bytes still missing from an incomplete UTF-8 sequence: at most 3 (a character has ≤ 4 bytes),
#: so at most 3 more tokens, each at least one byte, tell whether a trailing '�' completes.
_UTF8_LOOKAHEAD = 3
_WHITESPACE_SIGNS = {"\n": "↵", "\r": "␍", "\t": "⇥"}
# Characters that take no room on their own: controls, format characters (U+200B zero-width
# space, U+FEFF, ...), combining marks and line/paragraph separators.
_ZERO_WIDTH_CATEGORIES = {"Cc", "Cf", "Mn", "Me", "Zl", "Zp"}


class TokenGroup(NamedTuple):
    """One display unit: the tokens ``start:stop`` whose bytes decode into ``text``.

    ``text`` is the exact decoded text (special tokens: their name, e.g. ``<bos>``); use
    :attr:`label` to show it (never empty or invisible).
    """

    text: str
    start: int
    stop: int

    @property
    def label(self) -> str:
        """``text`` as shown on screen: see :func:`visible_text`."""
        return visible_text(self.text)

    @property
    def n_tokens(self) -> int:
        """Number of tokens (pieces) in the unit."""
        return self.stop - self.start


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), clean_up_tokenization_spaces=False))


def _is_boundary(tokenizer: Any, ids: list[int], start: int, stop: int, special: set[int]) -> bool:
    """Whether ``ids[start:stop]``, whose text ends with '�', can end a unit: the next 1, 2 and
    3 tokens decode the same after it as on their own (none completes a character with it)."""
    text = _decode(tokenizer, ids[start:stop])
    for ahead in range(stop + 1, min(stop + _UTF8_LOOKAHEAD, len(ids)) + 1):
        if ids[ahead - 1] in special:
            break
        if _decode(tokenizer, ids[start:ahead]) != text + _decode(tokenizer, ids[stop:ahead]):
            return False
    return True


def display_groups(tokenizer: Any, ids: Sequence[int] | Tensor) -> list[TokenGroup]:
    """Group token positions into display units: whole characters (or whole text pieces).

    A unit is the shortest run of consecutive tokens whose bytes decode into complete
    characters: a byte-level piece that decodes to an incomplete UTF-8 sequence (a trailing
    '�' that the next tokens turn into a character) joins the following piece(s) until the text
    is complete. A token that is already whole text (``" cat"``, ``"我们"``) is a unit of its own,
    and so is every special token (shown by its name, ``<bos>``). Bytes that never form a
    character (invalid UTF-8) stay '�' and end their unit. The units cover ``ids`` in order
    and their texts concatenate to ``tokenizer.decode(ids)`` (special tokens by name).

    Args:
        tokenizer: A Hugging Face tokenizer.
        ids: Token ids.

    Returns:
        ``TokenGroup(text, start, stop)`` per unit, ``ids[start:stop]`` its tokens.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")  # byte-level BPE: 你 and 好 are 2 pieces each
        >>> ids = model.tokenizer("你好 cat", add_special_tokens=False)["input_ids"]
        >>> [tuple(g) for g in display_groups(model.tokenizer, ids)]
        [('你', 0, 2), ('好', 2, 4), (' cat', 4, 5)]
    """
    ids = [int(i) for i in torch.as_tensor(ids).flatten().tolist()]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    groups: list[TokenGroup] = []
    start = 0
    for position, token in enumerate(ids):
        if token in special:
            if start < position:  # bytes cut short by a special token: a unit of their own
                groups.append(TokenGroup(_decode(tokenizer, ids[start:position]), start, position))
            name = tokenizer.convert_ids_to_tokens(token)
            groups.append(TokenGroup(str(name), position, position + 1))
            start = position + 1
            continue
        stop = position + 1
        text = _decode(tokenizer, ids[start:stop])
        if text.endswith("\ufffd") and not _is_boundary(tokenizer, ids, start, stop, special):
            continue  # the next bytes complete a character with ours
        groups.append(TokenGroup(text, start, stop))
        start = stop
    return groups


def groups_from_pieces(pieces: Sequence[str]) -> list[TokenGroup]:
    """Display units rebuilt from :func:`readable_tokens` output (no tokenizer at hand).

    Each unit ends at a non-empty piece; the empty pieces before it are its first bytes.

    Example:
        >>> [tuple(g) for g in groups_from_pieces(["<bos>", "", "你", "好"])]
        [('<bos>', 0, 1), ('你', 1, 3), ('好', 3, 4)]
    """
    groups: list[TokenGroup] = []
    start = 0
    for position, piece in enumerate(pieces):
        if piece or position == len(pieces) - 1:
            groups.append(TokenGroup(piece, start, position + 1))
            start = position + 1
    return groups


def sum_groups(
    values: Float[Tensor, " pos *rest"], groups: Sequence[TokenGroup], offset: int = 0
) -> Float[Tensor, " unit *rest"]:
    """Sum a per-token tensor over the tokens of each display unit.

    Args:
        values: One row per token; ``values[i]`` belongs to token ``i + offset`` (``offset=1``
            for per-predicted-token values such as NLLs, whose row ``i`` predicts token
            ``i + 1``).
        groups: Units from :func:`display_groups` (those not covered by ``values`` are skipped).
        offset: Token index of ``values[0]``.

    Returns:
        One row per unit: the sum of its tokens' rows.

    Example:
        >>> groups = [TokenGroup("<bos>", 0, 1), TokenGroup("你", 1, 3), TokenGroup("好", 3, 4)]
        >>> sum_groups(torch.tensor([1.0, 2.0, 3.0, 4.0]), groups)
        tensor([1., 5., 4.])
        >>> sum_groups(torch.tensor([2.0, 3.0, 4.0]), groups, offset=1)  # no row for <bos>
        tensor([5., 4.])
    """
    rows = [
        values[group.start - offset : group.stop - offset].sum(dim=0)
        for group in groups
        if group.start >= offset and group.stop - offset <= len(values)
    ]
    if not rows:
        return values.new_zeros((0, *values.shape[1:]))
    return torch.stack(rows)


def visible_text(text: str) -> str:
    """A unit's text as shown on screen: never empty, never invisible.

    Newlines, carriage returns and tabs show as ``↵``, ``␍``, ``⇥``; a unit of spaces only as
    ``␣``; a unit that would take no room (empty, or only zero-width/format characters or
    combining marks) as ``∅``, ``⟨U+200B⟩`` or the mark on a dotted circle ``◌``.

    Example:
        >>> [visible_text(t) for t in ["你", " cat", "\\n", "  ", "", "\\u200b", "\\u0301"]]
        ['你', ' cat', '↵', '␣␣', '∅', '⟨U+200B⟩', '◌́']
    """
    shown = "".join(_WHITESPACE_SIGNS.get(c, c) for c in text)
    if not shown:
        return "∅"
    if shown.isspace():
        return "␣" * len(shown)
    if all(unicodedata.category(c) in _ZERO_WIDTH_CATEGORIES for c in shown):
        return "".join(
            f"◌{c}" if unicodedata.category(c) in ("Mn", "Me") else f"⟨U+{ord(c):04X}⟩"
            for c in shown
        )
    return shown


def readable_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token's text, with byte-level pieces merged into whole characters.

    A character split over several byte-level tokens (common for Chinese) decodes as '�' piece
    by piece; here it is shown once, on the token that completes it, and the tokens before it
    show as empty strings. Special tokens show as their names (``<bos>``). One entry per token;
    for display, use the units of :func:`display_groups` instead (no empty entries).

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> ids = model.tokenizer("你好", add_special_tokens=False)["input_ids"]
        >>> readable_tokens(model.tokenizer, ids)
        ['', '你', '', '好']
    """
    pieces: list[str] = []
    for group in display_groups(tokenizer, ids):
        pieces += [""] * (group.n_tokens - 1) + [group.text]
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


def group_note(group: TokenGroup) -> str:
    """Which tokens a unit covers, for hover texts: ``token 3`` or ``tokens 3–4 (2 pieces)``."""
    if group.n_tokens == 1:
        return f"token {group.start}"
    return f"tokens {group.start}–{group.stop - 1} ({group.n_tokens} pieces)"


def coloured_tokens(
    pieces: Sequence[str],
    values: Sequence[float],
    title: str,
    unit: str,
    scale: float | None = None,
    notes: Sequence[str] | None = None,
    focus: int | None = None,
    legend: bool = True,
) -> str:
    """HTML: each piece of text on a background coloured by its value (red positive, blue
    negative), full colour at ``scale`` (default: the largest absolute value shown).

    Every piece is shown by :func:`visible_text`, so no coloured span is empty or invisible;
    ``notes`` (one per piece) are added to the hover text; piece ``focus`` is outlined;
    ``legend=False`` leaves out how to read the colours (a page that says it once).
    """
    scale = scale or max((abs(v) for v in values), default=0.0) or 1.0
    notes = notes if notes is not None else [""] * len(pieces)
    spans = []
    for i, (piece, value, note) in enumerate(zip(pieces, values, notes, strict=True)):
        alpha = min(1.0, abs(value) / scale)
        outline = ";outline:2px solid #222" if i == focus else ""
        rgb = "214,39,40" if value > 0 else "31,119,180"
        hover = html.escape(f"{value:+.4g} {unit}" + (f" · {note}" if note else ""))
        text = html.escape(visible_text(piece))
        spans.append(f'<span title="{hover}" style="background:'
                     f'rgba({rgb},{alpha:.2f});padding:1px 0;white-space:pre{outline}">'
                     f"{text}</span>")  # fmt: skip
    how = (f" (hover the text for its value; red +, blue −, scale ±{scale:.3g} "
           f"{html.escape(unit)})" if legend else "")  # fmt: skip
    return (f'<div style="font-family:monospace;line-height:1.8"><b>{html.escape(title)}</b>'
            f"{how}<br>{''.join(spans)}</div>")  # fmt: skip
