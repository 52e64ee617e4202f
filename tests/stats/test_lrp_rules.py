"""Each AttnLRP rule against its formula, and relevance conservation on bias-free models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import crane_lens as cl
from crane_lens.stats.lrp import (
    activation_ratio,
    gated_product_rule,
    identity_rule,
    lrp_hooks,
    quiet_norm_edits,
    scale_grad,
)

# activation_ratio computes act(x)/x in float32 by design, so every rule gradient below carries
# float32 rounding whatever the float64 inputs: the ratio (|ratio| <= ~1.2) is off by a few
# float32 ulps in ABSOLUTE terms (its relative error can be far larger where gelu's 1 + erf
# cancels), and the exact result depends on the CPU's vectorised erf/exp kernels. Worst measured
# over 3000 seeds (AVX-512, AVX2, scalar): 2.4 ulps; a wrong rule is off by ~0.1, not ~1e-6.
EPS32 = torch.finfo(torch.float32).eps
RATIO_ULPS = 8  # 3x the worst measured; a wrong rule exceeds it by ~1e5


def _assert_close_to_ratio_rounding(actual, expected, scale) -> None:  # type: ignore[no-untyped-def]
    """``actual`` == ``expected`` up to the float32 ratio's rounding times the other factors."""
    atol = RATIO_ULPS * EPS32 * float(scale.abs().max())
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)


def test_scale_grad_keeps_value_and_scales_gradient() -> None:
    x = torch.randn(3, 5, requires_grad=True)
    upstream = torch.randn(3, 5)
    y = scale_grad(x, 0.25)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(grad, 0.25 * upstream, rtol=0, atol=0)  # × power of 2: exact


@pytest.mark.parametrize("act", [F.silu, F.gelu, torch.relu])
def test_identity_rule_gradient_is_act_over_x(act) -> None:  # type: ignore[no-untyped-def]
    pre = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    post = act(pre)
    upstream = torch.randn(4, 7, dtype=torch.float64)
    out = identity_rule(pre, post, act)
    assert torch.equal(out, post)  # forward value untouched: post + 0.0 is exact
    (grad,) = torch.autograd.grad(out, pre, upstream)
    x = pre.detach()
    # grad = upstream · ratio32: error ≤ a few ulps of the ratio times |upstream|.
    _assert_close_to_ratio_rounding(grad, upstream * act(x) / x, upstream)
    # Relevance is conserved through the rule: x · g_x == post · g, up to |x · upstream| ulps.
    _assert_close_to_ratio_rounding(x * grad, post.detach() * upstream, x * upstream)


def test_gated_product_rule_halves_each_factor() -> None:
    pre = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    post = F.silu(pre) * up
    g = torch.randn(4, 7, dtype=torch.float64)
    out = gated_product_rule(pre, up, post, F.silu)
    assert torch.equal(out, post)  # post + 0.0 is exact
    g_pre, g_up = torch.autograd.grad(out, (pre, up), g)
    x, u = pre.detach(), up.detach()
    # Each gradient is a float64 product with the float32 ratio: scale by the other factors.
    _assert_close_to_ratio_rounding(g_pre, 0.5 * g * u * F.silu(x) / x, 0.5 * g * u)
    _assert_close_to_ratio_rounding(g_up, 0.5 * g * F.silu(x), 0.5 * g * x)
    # Each factor receives exactly half of the product's relevance (up to the ratio's rounding).
    _assert_close_to_ratio_rounding(x * g_pre, 0.5 * post.detach() * g, 0.5 * x * g * u)
    _assert_close_to_ratio_rounding(u * g_up, 0.5 * post.detach() * g, 0.5 * x * g * u)


def test_activation_ratio_is_finite_at_zero() -> None:
    ratio = activation_ratio(torch.tensor([0.0, -0.0, 1e-9, -1e-9]), F.silu)
    torch.testing.assert_close(ratio, torch.full((4,), 0.5), atol=1e-5, rtol=0)


def test_unknown_attention_rule_is_refused(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    with pytest.raises(ValueError, match="attnlrp"):
        lrp_hooks(model, attention="softmax", gated=True)  # type: ignore[arg-type]


def _input_relevance(model, tokens, attention):  # type: ignore[no-untyped-def]
    """(explained gold-logit sum, relevance summed over the input embeddings, Σ|relevance|).

    A final tanh soft cap ``y = c·tanh(z/c)`` (Gemma2) is not LRP-linear: the relevance reaching
    its input is ``z·(1 − (y/c)²)``, not ``y``, so that is what the input relevance must sum to."""
    leaves: list[torch.Tensor] = []

    def leaf(x, hook):  # type: ignore[no-untyped-def]
        x = x.detach().requires_grad_(True)
        leaves.append(x)
        return x

    hooks = [(name, leaf) for name in ("hook_embed", "hook_pos_embed") if name in model.hook_dict]
    hooks += lrp_hooks(model, attention=attention, gated=cl.get_spec(model).gated)
    for p in model.parameters():
        p.requires_grad_(False)
    with model.hooks(fwd_hooks=hooks), quiet_norm_edits():
        logits = model(tokens, return_type="logits")
    gold = logits[:, :-1].gather(-1, tokens[:, 1:, None])
    grads = torch.autograd.grad(gold.sum(), leaves, allow_unused=True)
    terms = [(x * g).detach() for x, g in zip(leaves, grads, strict=True) if g is not None]
    y, cap = gold.detach().double(), getattr(model.cfg, "output_logits_soft_cap", None) or 0.0
    explained = (cap * torch.atanh(y / cap) * (1 - (y / cap) ** 2)).sum() if cap > 0 else y.sum()
    relevance = sum(t.sum() for t in terms)
    mass = sum(t.abs().sum() for t in terms)
    return float(explained), float(relevance), float(mass)


# Random HF initialisation leaves every bias at zero, so these models are bias-free.
# Float32 rounding in the forward and backward passes perturbs each input relevance x·g by O(eps)
# of itself, so the total is off by a few eps·Σ|x·g| (worst measured over 200 seeds: 0.65), not
# by eps·|Σ x·g|: the 22 gold logits have both signs and their sum can nearly cancel.
CONSERVATION_ULPS = 8  # 12x the worst measured; AttnLRP's absorbed relevance is ~1900 eps·Σ|x·g|


@pytest.mark.parametrize("attention", ["cp", "cp-attention"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2", "bloom", "gemma2"])
def test_cp_lrp_conserves_relevance_on_bias_free_models(tiny_checkpoints, arch, attention) -> None:  # type: ignore[no-untyped-def]
    """Both CP variants: the gate detached (lxt's CP-LRP) or halved with the identity rule."""
    model = cl.load_model(tiny_checkpoints[arch])
    tokens = torch.randint(2, 300, (2, 12))
    tokens[:, 0] = 0
    explained, relevance, mass = _input_relevance(model, tokens, attention)
    assert abs(relevance - explained) <= CONSERVATION_ULPS * EPS32 * mass


def test_attnlrp_softmax_rule_is_not_conservative(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    """The softmax's first-order Taylor rule absorbs relevance (documented in docs/stats.md):
    AttnLRP's input relevance differs from the explained logit, CP-LRP's does not."""
    model = cl.load_model(tiny_checkpoints["llama"])
    tokens = torch.randint(2, 300, (2, 12))
    tokens[:, 0] = 0
    explained, relevance, mass = _input_relevance(model, tokens, "attnlrp")
    assert abs(relevance - explained) > 1e-3 * abs(explained)
    # ... and by far more than the float32 rounding the conservation test tolerates.
    assert abs(relevance - explained) > 10 * CONSERVATION_ULPS * EPS32 * mass
