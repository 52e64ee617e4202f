"""AttnLRP in its efficient gradient×input form, expressed as TransformerBridge hooks.

With these hooks active, one ordinary backward pass yields the LRP-modified gradient ``g`` at
every neuron hook, and the relevance of a neuron on a token is ``h * g``. The forward values
are never changed — only the gradient paths:

* norms (every ``*.hook_scale``): identity rule — the 1/std (1/rms) factor is detached;
* MLP activation: identity rule — derivative ``act(x)/x`` instead of ``act'(x)``;
* gated product ``act(gate) * up``: uniform rule — each factor gets half the gradient;
* attention: Q and K gradients quartered, V halved (AttnLRP, Achtibat et al. 2024).

``attention="cp"`` is CP-LRP (Ali et al. 2022) exactly as lxt 2.1 implements it
(``lxt.efficient.patches``: ``cp_wrap_attention_forward``, ``cp_gated_mlp_forward``): the
gradient through Q and K is stopped and V left whole, and in a gated MLP the gate is a constant —
``act(gate)`` keeps its plain value, no gradient reaches the gate, and all the relevance of
``act(gate) * up`` flows through ``up`` (no halving). Ungated MLPs keep the identity rule.
``attention="cp-attention"`` changes the attention only (the MLPs as in AttnLRP): what
``"cp"`` meant before crane_lens recorded ``gated_mlp_rule`` in its statistics.

With a :class:`GradientSwitch`, every edited node carries both gradient paths and the switch
picks one per backward pass, so one forward pass serves an LRP backward (CRANE) and an ordinary
backward (attribution) alike.

Linear layers need nothing: the epsilon rule in gradient×input form is the plain gradient.
Rules that break exact conservation: the softmax (first-order Taylor rule, AttnLRP only) and
every bias (absorbs relevance). On a bias-free model with either CP variant, the relevance at the
input embeddings sums exactly to the explained logit.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor

from crane_lens.stats.model_parts import Activation, activation_function

AttentionRule = Literal["attnlrp", "cp", "cp-attention"]
ATTENTION_RULES: tuple[str, ...] = ("attnlrp", "cp", "cp-attention")
GatedMlpRule = Literal["uniform", "gate detached"]
HookFn = Callable[[Tensor, Any], Tensor]
_RATIO_EPS = 1e-6  # |x| below this: use act(x)/x at x = ±eps (the limit act'(0))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by a constant."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """``x`` unchanged, with its gradient multiplied by ``factor`` on the way back."""
    return _ScaleGrad.apply(x, factor)


class GradientSwitch:
    """Which gradient a shared forward pass propagates: ``"lrp"`` or ``"plain"``.

    Set :attr:`mode` before each backward pass; the edited nodes read it while gradients flow.

    Example:
        >>> switch = GradientSwitch()
        >>> x = torch.ones(2, requires_grad=True)
        >>> y = switch.select(x, scale_grad(x, 0.5))
        >>> torch.autograd.grad(y.sum(), x, retain_graph=True)[0].tolist()
        [0.5, 0.5]
        >>> switch.mode = "plain"
        >>> torch.autograd.grad(y.sum(), x)[0].tolist()
        [1.0, 1.0]
    """

    def __init__(self, mode: str = "lrp") -> None:
        self.mode = mode

    def select(self, plain: Tensor, lrp: Tensor) -> Tensor:
        """``plain``'s value, with the gradient of ``plain`` or ``lrp`` depending on the mode."""
        return _Select.apply(plain, lrp, self)


class _Select(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, plain: Tensor, lrp: Tensor, switch: GradientSwitch) -> Tensor:
        ctx.switch = switch
        return plain.view_as(plain)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.switch.mode == "plain":
            return grad, None, None
        return None, grad, None


def _with_gradient_of(value: Tensor, surrogate: Tensor) -> Tensor:
    """Exactly ``value`` in the forward pass, with the gradient paths of ``surrogate``."""
    return value.detach() + (surrogate - surrogate.detach())


def activation_ratio(pre: Tensor, act: Activation) -> Tensor:
    """``act(x) / x`` (detached), the identity rule's stand-in for ``act'(x)``."""
    x = pre.detach().float()
    safe = torch.where(x.abs() < _RATIO_EPS, torch.full_like(x, _RATIO_EPS).copysign(x), x)
    return (act(safe) / safe).to(pre.dtype)


def identity_rule(pre: Tensor, post: Tensor, act: Activation) -> Tensor:
    """``post = act(pre)`` with the identity rule: gradient ``g · act(x)/x`` to ``pre``."""
    return _with_gradient_of(post, pre * activation_ratio(pre, act))


def gated_mlp_rule(attention: AttentionRule) -> GatedMlpRule:
    """The rule a gated MLP's product gets under an attention rule (recorded in statistics).

    Example:
        >>> gated_mlp_rule("attnlrp"), gated_mlp_rule("cp"), gated_mlp_rule("cp-attention")
        ('uniform', 'gate detached', 'uniform')
    """
    check_attention(attention)
    return "gate detached" if attention == "cp" else "uniform"


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` of saved statistics in today's terms (a copy): statistics saved before
    crane_lens recorded ``gated_mlp_rule`` used AttnLRP's rule in every gated MLP, so their
    ``attention="cp"`` was today's ``"cp-attention"``.

    Example:
        >>> upgrade_config({"attention": "cp"})
        {'attention': 'cp-attention', 'gated_mlp_rule': 'uniform'}
        >>> upgrade_config({"attention": "cp", "gated_mlp_rule": "gate detached"})
        {'attention': 'cp', 'gated_mlp_rule': 'gate detached'}
    """
    out = dict(config)
    if "gated_mlp_rule" not in out and "attention" in out:
        if out["attention"] == "cp":
            out["attention"] = "cp-attention"
        out["gated_mlp_rule"] = "uniform"
    return out


def check_attention(attention: str) -> None:
    """Raise ``ValueError`` unless ``attention`` is one of :data:`ATTENTION_RULES`."""
    if attention not in ATTENTION_RULES:
        raise ValueError(
            f"attention rule must be one of {', '.join(map(repr, ATTENTION_RULES))}, "
            f"not {attention!r}"
        )


def gated_product_rule(
    pre: Tensor, up: Tensor, post: Tensor, act: Activation, rule: GatedMlpRule = "uniform"
) -> Tensor:
    """``post = act(pre) * up`` with an LRP rule on the gated product.

    * ``"uniform"`` (AttnLRP): the identity rule on ``act`` and the gradient halved through the
      product — ``g · up · act(x)/x / 2`` to ``pre`` and ``g · act(pre) / 2`` to ``up``;
    * ``"gate detached"`` (CP-LRP, lxt's ``cp_gated_mlp_forward``): ``act(pre)`` a constant —
      nothing to ``pre``, ``g · act(pre)`` to ``up`` (its whole relevance ``post · g``).

    Example:
        >>> import torch.nn.functional as F
        >>> pre = torch.tensor([1.0], requires_grad=True)
        >>> up = torch.tensor([2.0], requires_grad=True)
        >>> out = gated_product_rule(pre, up, F.silu(pre) * up, F.silu, "gate detached")
        >>> g_pre, g_up = torch.autograd.grad(out.sum(), (pre, up), allow_unused=True)
        >>> g_pre is None, torch.equal(g_up, F.silu(pre.detach()))  # all of it through up
        (True, True)
    """
    if rule == "gate detached":
        return _with_gradient_of(post, act(pre.detach()) * up)
    if rule != "uniform":
        raise ValueError(f"gated MLP rule must be 'uniform' or 'gate detached', not {rule!r}")
    gate = pre * activation_ratio(pre, act)  # value act(pre), identity-rule gradient
    surrogate = 0.5 * gate * up.detach() + 0.5 * gate.detach() * up
    return _with_gradient_of(post, surrogate)


@contextlib.contextmanager
def quiet_norm_edits() -> Iterator[None]:
    """Silence TransformerLens' warning that a hook edited ``hook_scale``: detaching the norm
    scale is the identity rule, and the forward value is unchanged up to float rounding."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="A forward hook edited hook_scale")
        yield


def lrp_hooks(
    model: Any,
    *,
    attention: AttentionRule = "attnlrp",
    gated: bool,
    switch: GradientSwitch | None = None,
) -> list[tuple[str, HookFn]]:
    """Forward hooks that turn one backward pass into AttnLRP (or CP-LRP).

    Args:
        model: A TransformerBridge in default (non-compatibility) mode.
        attention: ``"attnlrp"`` (Q, K gradients ÷4, V ÷2; gated product halved), ``"cp"``
            (lxt's CP-LRP: stop Q, K, V whole; in gated MLPs the gate detached) or
            ``"cp-attention"`` (the attention as ``"cp"``, the MLPs as ``"attnlrp"``).
        gated: Whether the MLPs are gated (``hook_pre_linear`` exists).
        switch: Keep the ordinary gradient paths too, selected by ``switch.mode``.

    Returns:
        ``(hook_name, fn)`` pairs for ``model.hooks(fwd_hooks=...)``.
    """
    check_attention(attention)
    hooks: list[tuple[str, HookFn]] = []
    names = set(model.hook_dict)
    hooks += [(n, lambda x, hook: x.detach()) for n in sorted(names) if n.endswith("hook_scale")]
    if attention == "attnlrp":
        qk: HookFn = lambda x, hook: scale_grad(x, 0.25)  # noqa: E731
        v: HookFn | None = lambda x, hook: scale_grad(x, 0.5)  # noqa: E731
    else:
        qk, v = (lambda x, hook: x.detach()), None
    for layer in range(int(model.cfg.n_layers)):
        attn = f"blocks.{layer}.attn"
        hooks += [(f"{attn}.hook_q", qk), (f"{attn}.hook_k", qk)]
        if v is not None:
            hooks.append((f"{attn}.hook_v", v))
        hooks += _mlp_hooks(model, layer, gated, gated_mlp_rule(attention))
    if switch is None:
        return hooks
    return [(name, _switched(fn, switch)) for name, fn in hooks]


def _switched(fn: HookFn, switch: GradientSwitch) -> HookFn:
    def hook(x: Tensor, hook: Any) -> Tensor:
        out = fn(x, hook)
        return out if out is x else switch.select(x, out)

    return hook


def _mlp_hooks(model: Any, layer: int, gated: bool, rule: GatedMlpRule) -> list[tuple[str, HookFn]]:
    act = activation_function(model, layer)
    seen: dict[str, Tensor] = {}

    def keep(key: str) -> HookFn:
        def fn(x: Tensor, hook: Any) -> Tensor:
            seen[key] = x
            return x

        return fn

    def rebuild(post: Tensor, hook: Any) -> Tensor:
        pre = seen.pop("pre")
        if gated:
            return gated_product_rule(pre, seen.pop("up"), post, act, rule)
        return identity_rule(pre, post, act)

    mlp = f"blocks.{layer}.mlp"
    hooks = [(f"{mlp}.hook_pre", keep("pre"))]
    if gated:
        hooks.append((f"{mlp}.hook_pre_linear", keep("up")))
    return [*hooks, (f"{mlp}.hook_post", rebuild)]
