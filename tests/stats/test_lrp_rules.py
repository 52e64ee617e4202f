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


def test_scale_grad_keeps_value_and_scales_gradient() -> None:
    x = torch.randn(3, 5, requires_grad=True)
    upstream = torch.randn(3, 5)
    y = scale_grad(x, 0.25)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(grad, 0.25 * upstream)


@pytest.mark.parametrize("act", [F.silu, F.gelu, torch.relu])
def test_identity_rule_gradient_is_act_over_x(act) -> None:  # type: ignore[no-untyped-def]
    pre = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    post = act(pre)
    upstream = torch.randn(4, 7, dtype=torch.float64)
    out = identity_rule(pre, post, act)
    assert torch.equal(out, post)  # forward value untouched
    (grad,) = torch.autograd.grad(out, pre, upstream)
    torch.testing.assert_close(grad, upstream * act(pre.detach()) / pre.detach())
    # Relevance is conserved through the rule: x · g_x == post · g.
    torch.testing.assert_close(pre.detach() * grad, post.detach() * upstream)


def test_gated_product_rule_halves_each_factor() -> None:
    pre = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    post = F.silu(pre) * up
    g = torch.randn(4, 7, dtype=torch.float64)
    out = gated_product_rule(pre, up, post, F.silu)
    assert torch.equal(out, post)
    g_pre, g_up = torch.autograd.grad(out, (pre, up), g)
    x, u = pre.detach(), up.detach()
    torch.testing.assert_close(g_pre, 0.5 * g * u * F.silu(x) / x)
    torch.testing.assert_close(g_up, 0.5 * g * F.silu(x))
    # Each factor receives exactly half of the product's relevance.
    torch.testing.assert_close(x * g_pre, 0.5 * post.detach() * g)
    torch.testing.assert_close(u * g_up, 0.5 * post.detach() * g)


def test_activation_ratio_is_finite_at_zero() -> None:
    ratio = activation_ratio(torch.tensor([0.0, -0.0, 1e-9, -1e-9]), F.silu)
    torch.testing.assert_close(ratio, torch.full((4,), 0.5), atol=1e-5, rtol=0)


def test_unknown_attention_rule_is_refused(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    with pytest.raises(ValueError, match="attnlrp"):
        lrp_hooks(model, attention="softmax", gated=True)  # type: ignore[arg-type]


def _input_relevance(model, tokens, attention):  # type: ignore[no-untyped-def]
    """(explained gold-logit sum, relevance summed over the input embeddings)."""
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
    target = logits[:, :-1].gather(-1, tokens[:, 1:, None]).sum()
    grads = torch.autograd.grad(target, leaves, allow_unused=True)
    relevance = sum((x * g).sum() for x, g in zip(leaves, grads, strict=True) if g is not None)
    return float(target.detach()), float(relevance)  # type: ignore[arg-type]


# Random HF initialisation leaves every bias at zero, so these models are bias-free. Gemma2 caps
# its final logits with tanh (not an LRP-linear map), hence its looser bound.
@pytest.mark.parametrize(("arch", "rtol"), [("llama", 1e-5), ("qwen2", 1e-5), ("gpt2", 1e-5),
                                            ("bloom", 1e-5), ("gemma2", 1e-3)])  # fmt: skip
def test_cp_lrp_conserves_relevance_on_bias_free_models(tiny_checkpoints, arch, rtol) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints[arch])
    tokens = torch.randint(2, 300, (2, 12))
    tokens[:, 0] = 0
    explained, relevance = _input_relevance(model, tokens, "cp")
    assert relevance == pytest.approx(explained, rel=rtol)


def test_attnlrp_softmax_rule_is_not_conservative(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    """The softmax's first-order Taylor rule absorbs relevance (documented in docs/stats.md):
    AttnLRP's input relevance differs from the explained logit, CP-LRP's does not."""
    model = cl.load_model(tiny_checkpoints["llama"])
    tokens = torch.randint(2, 300, (2, 12))
    tokens[:, 0] = 0
    explained, relevance = _input_relevance(model, tokens, "attnlrp")
    assert abs(relevance - explained) > 1e-3 * abs(explained)
