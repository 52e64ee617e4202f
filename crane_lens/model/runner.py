"""The forward-pass runner beneath statistics and evaluation: token placement, padded batching,
the masking core, and the one gold-token log-probability.

Every score crane_lens reads off a model — CRANE's target, attribution's objective, exact
ablation, the ablation matrix, both NLL protocols and multiple-choice scoring — is a gold-token
log-probability or logit computed here by :func:`gold_scores`:

* the forward pass stops at the unembedding's input (``unembed.hook_in``); the unembedding is
  applied here, **chunked over the vocabulary**, so ``[batch, pos, vocab]`` logits never exist at
  once — a 262 k vocabulary (Gemma 3) would need 268 MB of float32 logits per 256-token row;
* ``log p(gold) = logit(gold) − logsumexp(logits)``; the log-normaliser is accumulated chunk by
  chunk in float32 and its backward pass recomputes each chunk, so gradients (attribution) are
  bounded in memory too;
* on the first use for a model, the chunked head is checked against the model's own logits on a
  short probe; an output layer it cannot reproduce falls back to the full logits (still reduced in
  vocabulary chunks).

Tokens go to the device of the input embedding; every score is returned on the device of the
unembedding, so a model split across devices (``device_map``) works unchanged. Batches are
right-padded (:func:`pad_rows`): under a causal mask no real position attends to a pad, so no
attention mask is needed and scores equal unbatched ones.

Example:
    >>> import crane_lens as cl
    >>> model = cl.load_model("crane-tiny")
    >>> tokens = model.to_tokens("Xin chào các bạn")
    >>> logp = gold_scores(model, tokens)
    >>> full = model(tokens, return_type="logits").float().log_softmax(-1)
    >>> expected = full[:, :-1].gather(-1, tokens[:, 1:, None].to(full.device))[..., 0]
    >>> bool(torch.allclose(logp, expected, atol=1e-4))
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

log = logging.getLogger(__name__)

T = TypeVar("T")
ScoreKind = Literal["logprob", "logit"]
HookFn = Callable[[Tensor, Any], Tensor]
HookList = Sequence[tuple[str, Any]]
# float32 logits per vocabulary chunk: bounded whatever the vocabulary. At most 32 MiB, glibc's
# largest threshold for serving an allocation by mmap: a larger chunk gets fresh pages, zero-filled
# by the kernel, on every call. Gemma 3's ablation matrix on a CPU: 16 s with 32 MiB chunks,
# 24 s with 256 MiB.
CHUNK_BYTES = 32 << 20
# A gradient pass keeps the softmax of every chunk for its backward pass while all of them take
# at most this much (no second vocabulary matmul and exp: Gemma 3's 262 k-entry head is two
# thirds of a forward pass on a CPU); above it, each chunk is recomputed in the backward pass.
KEEP_BYTES = 1 << 30


class StopForward(Exception):
    """Raised by a hook to end a forward pass once everything needed has been captured."""


# -- placement and batching ----------------------------------------------------------------
def input_device(model: Any) -> torch.device:
    """Where token ids go: the device of the input embedding (the first of a split model)."""
    original = getattr(model, "original_model", None)
    if original is not None and hasattr(original, "get_input_embeddings"):
        return original.get_input_embeddings().weight.device
    return next(model.parameters()).device


def pad_rows(
    rows: Sequence[Sequence[int]], pad: int | None = None
) -> tuple[Int[Tensor, "batch width"], Int[Tensor, " batch"]]:
    """Right-pad token rows into one tensor (CPU); returns ``(tokens, lengths)``.

    ``pad`` defaults to the first token of the first row — any real id works, because padded
    positions are never scored and, under a causal mask, never attended to by real ones.

    Example:
        >>> pad_rows([[5, 6, 7], [5, 8]])
        (tensor([[5, 6, 7],
                [5, 8, 5]]), tensor([3, 2]))
    """
    width = max(len(r) for r in rows)
    fill = rows[0][0] if pad is None else pad
    tokens = torch.tensor([[*r, *[fill] * (width - len(r))] for r in rows], dtype=torch.long)
    return tokens, torch.tensor([len(r) for r in rows])


def length_batches(
    ids: Sequence[Sequence[int]], max_tokens: int, indices: Iterable[int] | None = None
) -> list[list[int]]:
    """Group sequences (by index) into batches of similar length for right-padded passes.

    Sorted by length, each batch grows while ``members × longest`` stays within ``max_tokens``
    (a sequence longer than that runs alone); the last member of a batch is its longest.

    Example:
        >>> length_batches([[1] * 5, [1] * 2, [1] * 3], max_tokens=6)
        [[1, 2], [0]]
    """
    chosen = range(len(ids)) if indices is None else indices
    batches: list[list[int]] = []
    for i in sorted(chosen, key=lambda i: len(ids[i])):
        if batches and (len(batches[-1]) + 1) * len(ids[i]) <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# -- the masking core -----------------------------------------------------------------------
def keep_fill_hook(
    keep: Float[Tensor, "*condition neuron"],
    fill: Float[Tensor, "*condition neuron"],
    rows_each: int | None = None,
) -> HookFn:
    """The masking core: a hook computing ``h * keep + fill`` at every position.

    With 1-D ``keep``/``fill`` every batch row gets the same edit. With ``[condition, neuron]``
    tensors, condition ``c`` edits batch rows ``c*rows_each ... (c+1)*rows_each - 1`` (the same
    inputs repeated once per condition), so one forward pass evaluates every condition. The
    vectors move once to each device/dtype they meet (a split model's layers live on different
    devices); the hook returns a new tensor, so gradients see ``∂h'/∂h = keep``.

    Raises:
        ValueError: At call time, when a stacked batch is not ``conditions × rows_each`` rows.

    Example:
        >>> hook = keep_fill_hook(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 2), 1)
        >>> hook(torch.ones(2, 3, 2))[:, 0].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    stacked = keep.dim() == 2
    if stacked and rows_each is None:
        raise ValueError("Stacked keep/fill tensors need rows_each (batch rows per condition).")
    cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def hook(x: Tensor, hook: Any = None) -> Tensor:
        key = (x.device, x.dtype)
        if key not in cache:  # moved once per device/dtype, not on every call
            cache[key] = (keep.to(x.device, x.dtype), fill.to(x.device, x.dtype))
        k, f = cache[key]
        if not stacked:
            return x * k + f
        n_conditions = len(k)
        if x.shape[0] != n_conditions * rows_each:  # type: ignore[operator]
            raise ValueError(
                f"Stacked hook expects {n_conditions} conditions × {rows_each} rows, got a batch "
                f"of {x.shape[0]}."
            )
        shaped = x.reshape(n_conditions, rows_each, *x.shape[1:])  # type: ignore[arg-type]
        view = (n_conditions,) + (1,) * (x.dim() - 1) + (x.shape[-1],)
        return (shaped * k.view(view) + f.view(view)).reshape(x.shape)

    return hook


@contextlib.contextmanager
def frozen_weights(model: Any) -> Iterator[None]:
    """Weights need no gradient for relevance or attribution: freezing them saves the
    weight-gradient work (restored on exit)."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


# -- the forward pass up to the unembedding ------------------------------------------------
def unembed_input(
    model: Any, tokens: Int[Tensor, "batch pos"], hooks: HookList = ()
) -> Float[Tensor, "batch pos d_model"]:
    """Run ``model`` with ``hooks`` and return the unembedding's input (after the final norm).

    The pass stops there: the vocabulary projection is applied by :func:`gold_scores`, in
    chunks. Gradient mode is the caller's (``torch.no_grad()`` or not).
    """
    captured: list[Tensor] = []

    def stop(x: Tensor, hook: Any) -> Tensor:
        captured.append(x)
        raise StopForward

    tokens = tokens.to(input_device(model))
    with model.hooks(fwd_hooks=[*hooks, ("unembed.hook_in", stop)]):
        try:
            model(tokens, return_type="logits")
        except StopForward:
            return captured[0]
    raise RuntimeError("The forward pass never reached unembed.hook_in.")


def neuron_activations(
    model: Any, tokens: Int[Tensor, "batch pos"], neurons: Sequence[tuple[int, int]]
) -> Float[Tensor, "batch pos n_neurons"]:
    """The activations of ``neurons`` (``(layer, neuron)`` pairs, in that order) at every token,
    float32 on the CPU, from one forward pass stopped before the head.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> tokens = model.to_tokens(["Hello world"])
        >>> tuple(neuron_activations(model, tokens, [(0, 5), (3, 7)]).shape[::2])
        (1, 2)
    """
    from crane_lens.model.loader import get_spec

    spec = get_spec(model)
    values = torch.zeros(*tokens.shape, len(neurons))
    by_layer: dict[int, list[int]] = {}
    for column, (layer, _) in enumerate(neurons):
        by_layer.setdefault(layer, []).append(column)

    def writer(columns: list[int]) -> Callable[[Tensor, Any], Tensor]:
        index = torch.tensor([neurons[c][1] for c in columns])

        def hook(x: Tensor, hook: Any) -> Tensor:
            values[:, :, columns] = x[:, :, index.to(x.device)].detach().float().cpu()
            return x

        return hook

    with torch.no_grad():
        unembed_input(model, tokens, [(spec.hook_name(layer), writer(columns))
                                      for layer, columns in by_layer.items()])  # fmt: skip
    return values


@dataclass(frozen=True)
class _Head:
    """The unembedding as ``softcap(x @ weight.T + bias)``; ``exact``: verified on the model."""

    weight: Tensor
    bias: Tensor | None
    softcap: float | None
    exact: bool


def weights_stamp(model: Any) -> tuple[int, ...]:
    """Changes whenever a parameter is edited in place (each tensor's version counter)."""
    return tuple(p._version for p in model.parameters())


class PerWeights(Generic[T]):
    """A per-model cache of a value derived from the weights, recomputed after any in-place
    edit of them (the model itself is held weakly)."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], T]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, model: Any, compute: Callable[[], T]) -> T:
        stamp = weights_stamp(model)
        cached = self._cache.get(model)
        if cached is None or cached[0] != stamp:
            cached = self._cache[model] = (stamp, compute())
        return cached[1]


_HEADS: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], _Head]] = weakref.WeakKeyDictionary()


def _read_head(model: Any) -> _Head:
    unembed = model.unembed.original_component
    config = getattr(getattr(model, "original_model", None), "config", None)
    cap = getattr(config, "final_logit_softcapping", None)
    bias = getattr(unembed, "bias", None)
    return _Head(unembed.weight, bias, float(cap) if cap else None, exact=True)


def _head(model: Any, probe: Tensor) -> _Head:
    """The model's head, checked once (until its weights change) against its own logits."""
    stamp = weights_stamp(model)
    cached = _HEADS.get(model)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    head = _read_head(model)
    try:
        with torch.no_grad():
            probe = probe[:1, :16]
            expected = model(probe.to(input_device(model)), return_type="logits").float()
            resid = unembed_input(model, probe).to(head.weight.device)
            got = _logits_chunk(resid, head, 0, head.weight.shape[0]).float()
        exact = got.shape == expected.shape and bool(
            torch.allclose(got, expected.to(got.device), rtol=1e-3,
                           atol=1e-3 * float(expected.abs().max()))
        )  # fmt: skip
    except Exception as exc:  # e.g. a caller's active hooks reject the probe: not cached
        log.info("could not check the chunked unembedding (%s); full logits this time", exc)
        return dataclasses.replace(head, exact=False)
    if not exact:
        log.warning("The model's output layer is not a plain (soft-capped) linear map; scoring "
                    "from full logits, which costs more memory on large vocabularies.")  # fmt: skip
        head = _Head(head.weight, head.bias, head.softcap, exact=False)
    _HEADS[model] = (stamp, head)
    return head


def _logits_chunk(x: Tensor, head: _Head, start: int, stop: int) -> Tensor:
    """Logits of vocabulary entries ``start:stop`` (float32, soft-capped) for rows ``x``."""
    z = x @ head.weight[start:stop].T
    if head.bias is not None:
        z = z + head.bias[start:stop]
    z = z.to(_wide(z.dtype))
    return head.softcap * torch.tanh(z / head.softcap) if head.softcap else z


def last_logits(model: Any, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch vocab"]:
    """The logits of the last position only (float32 for half-precision models).

    Runs the model up to the unembedding and projects the last position alone: on a large
    vocabulary the projection of every position is most of a short sequence's cost (Gemma 3:
    262 144 entries). Falls back to the model's own logits where the head is not a plain
    (soft-capped) linear map. Active hooks apply.
    """
    head = _head(model, tokens)
    if not head.exact:
        logits = model(tokens.to(input_device(model)), return_type="logits")[:, -1]
        return logits.to(_wide(logits.dtype))
    x = unembed_input(model, tokens)[:, -1].to(head.weight.device)
    return _logits_chunk(x, head, 0, head.weight.shape[0])


def _wide(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision models; float64 stays float64 (gradient checks)."""
    return torch.promote_types(dtype, torch.float32)


def _chunk_size(n_rows: int, vocab: int, chunk: int | None) -> int:
    if chunk is not None:
        return max(1, chunk)
    return max(1024, min(vocab, CHUNK_BYTES // (4 * max(1, n_rows))))


class _LogNormaliser(torch.autograd.Function):
    """``logsumexp`` of the head's logits per row, chunked over the vocabulary both ways."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        head: _Head,
        chunk: int,
        backward: bool = True,
    ) -> Tensor:
        ctx.head, ctx.chunk = head, chunk
        vocab = weight.shape[0]
        kept = (2 if head.softcap else 1) * x.shape[0] * vocab * 4  # float32 logits (+ factor)
        if backward and (chunk >= vocab or kept <= KEEP_BYTES):
            # Keep d lse / dz (the softmax), one exp per logit in all: each chunk's logits are
            # turned into exp(z − max) in place, normalised once the total is known.
            slopes, caps, top = [], [], None
            for start in range(0, vocab, chunk):
                z = _logits_chunk(x, head, start, start + chunk)
                top = z.amax(-1) if top is None else torch.maximum(top, z.amax(-1))
                slopes.append(z)
            assert top is not None
            total = torch.zeros_like(top)
            for z in slopes:
                if head.softcap:  # d(cap·tanh(u/cap))/du = 1 − tanh² = 1 − (z/cap)²
                    caps.append(1 - (z / head.softcap) ** 2)
                total += z.sub_(top[:, None]).exp_().sum(-1)
            for i, p in enumerate(slopes):
                p.div_(total[:, None])
                if head.softcap:
                    p.mul_(caps[i])
            ctx.save_for_backward(x, top + total.log(), *slopes)
            return top + total.log()
        lse = torch.full(x.shape[:1], -torch.inf, device=x.device, dtype=_wide(x.dtype))
        for start in range(0, vocab, chunk):
            z = _logits_chunk(x, head, start, start + chunk)
            # logsumexp in place on this temporary chunk: torch's logsumexp took 3.4× as long
            # on a CPU (Gemma 3's head, 1024 rows × 65 536 entries).
            top = z.amax(-1)
            lse = torch.logaddexp(lse, top + z.sub_(top[:, None]).exp_().sum(-1).log())
        ctx.save_for_backward(x, lse)
        return lse

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, lse, *saved = ctx.saved_tensors
        head: _Head = ctx.head
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        wide = _wide(x.dtype)
        gx = torch.zeros(x.shape, device=x.device, dtype=wide) if want_x else None
        gw = torch.zeros(head.weight.shape, device=x.device, dtype=wide) if want_w else None
        gb = torch.zeros(head.weight.shape[:1], device=x.device, dtype=wide) if want_b else None
        for n, start in enumerate(range(0, head.weight.shape[0], ctx.chunk)):
            stop = start + ctx.chunk
            if saved:
                slope = saved[n]
            else:  # recompute this chunk's logits rather than store all of them
                z = _logits_chunk(x, head, start, stop)
                slope = (z - lse[:, None]).exp()
                if head.softcap:
                    slope = slope * (1 - (z / head.softcap) ** 2)
            dz = (slope * grad[:, None]).to(x.dtype)
            if gx is not None:
                gx += dz @ head.weight[start:stop]
            if gw is not None:
                gw[start:stop] = dz.T @ x
            if gb is not None:
                gb[start:stop] = dz.sum(0)
        return (
            None if gx is None else gx.to(x.dtype),
            None if gw is None else gw.to(head.weight.dtype),
            None if gb is None else gb.to(head.weight.dtype),
            None,
            None,
            None,
        )


def _gold_logit(x: Tensor, head: _Head, gold: Tensor) -> Tensor:
    # A batched dot product rounds like the matmul of the full head (same dtype, fp32 sums).
    z = (x[:, None, :] @ head.weight[gold][:, :, None])[:, 0, 0]
    if head.bias is not None:
        z = z + head.bias[gold]
    z = z.to(_wide(z.dtype))
    return head.softcap * torch.tanh(z / head.softcap) if head.softcap else z


def _from_full_logits(
    model: Any,
    tokens: Tensor,
    hooks: HookList,
    first: int,
    kinds: Sequence[ScoreKind],
    chunk: int | None,
) -> dict[str, Tensor]:
    with model.hooks(fwd_hooks=list(hooks)):
        logits = model(tokens.to(input_device(model)), return_type="logits")[:, first - 1 : -1]
    gold = tokens[:, first:].to(logits.device)
    logit = logits.gather(-1, gold[..., None])[..., 0].to(_wide(logits.dtype))
    out: dict[str, Tensor] = {}
    for kind in dict.fromkeys(kinds):
        if kind == "logit":
            out[kind] = logit
            continue
        size = _chunk_size(gold.numel(), logits.shape[-1], chunk)
        parts = [logits[..., s : s + size].to(_wide(logits.dtype)).logsumexp(-1)
                 for s in range(0, logits.shape[-1], size)]  # fmt: skip
        out[kind] = logit - torch.stack(parts).logsumexp(0)
    return out


def gold_scores(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    *,
    kind: ScoreKind = "logprob",
    hooks: HookList = (),
    first: int = 1,
    resid: Float[Tensor, "batch pos d_model"] | None = None,
    chunk: int | None = None,
) -> Float[Tensor, "batch pred"]:
    """The gold next token's log-probability (or logit) at every predicted position, float32.

    Args:
        model: A TransformerBridge, on one device or split across several.
        tokens: Token ids; position ``t`` predicts ``tokens[:, t]`` for ``t >= first``.
        kind: ``"logprob"`` (default) or ``"logit"``.
        hooks: Forward hooks active during the pass (interventions, LRP rules, reducers).
        first: First predicted position (``>= 1``); earlier positions are context only.
        resid: The unembedding's input of a pass the caller already ran
            (:func:`unembed_input`); then no forward pass runs here.
        chunk: Vocabulary entries per chunk (default: as many as keep one chunk's float32
            logits within 32 MiB, at least 1 024 entries).

    Returns:
        ``Float[Tensor, "batch pos-first"]`` on the unembedding's device; differentiable when
        gradients are enabled.
    """
    return score_kinds(model, tokens, (kind,), hooks=hooks, first=first, resid=resid,
                       chunk=chunk)[kind]  # fmt: skip


def score_kinds(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    kinds: Sequence[ScoreKind],
    *,
    hooks: HookList = (),
    first: int = 1,
    resid: Float[Tensor, "batch pos d_model"] | None = None,
    chunk: int | None = None,
) -> dict[str, Float[Tensor, "batch pred"]]:
    """:func:`gold_scores` of several kinds from ONE forward pass (e.g. CRANE's gold logit and
    attribution's log-probability, each then explained by its own backward pass)."""
    if first < 1:
        raise ValueError(f"first must be >= 1 (position 0 predicts nothing), not {first}.")
    unknown = [k for k in kinds if k not in ("logprob", "logit")]
    if unknown:
        raise ValueError(f"kind must be 'logprob' or 'logit', not {unknown[0]!r}.")
    head = _head(model, tokens)
    if not head.exact:
        if resid is not None:
            raise ValueError("This model's output layer needs full logits; pass no resid.")
        return _from_full_logits(model, tokens, hooks, first, kinds, chunk)
    if resid is None:
        resid = unembed_input(model, tokens, hooks)
    # unembed.hook_in fires before a split model moves the input to the head's device.
    x = resid[:, first - 1 : -1].to(head.weight.device)
    gold = tokens[:, first:].to(x.device)
    shape = gold.shape
    x, gold = x.reshape(-1, x.shape[-1]), gold.reshape(-1)
    logit = _gold_logit(x, head, gold)
    out: dict[str, Tensor] = {}
    for kind in dict.fromkeys(kinds):
        if kind == "logprob":
            size = _chunk_size(len(x), head.weight.shape[0], chunk)
            # Softmax kept for a backward pass only (Function.forward runs without grad mode).
            grad = torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (x, head.weight, head.bias)
            )
            out[kind] = logit - _LogNormaliser.apply(x, head.weight, head.bias, head, size, grad)
        else:
            out[kind] = logit
        out[kind] = out[kind].view(shape)
    return out
