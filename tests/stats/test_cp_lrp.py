"""CP-LRP as lxt 2.1 implements it: the gate of a gated MLP is a constant, and the relevance of
every MLP neuron equals lxt's (AttnLRP and CP-LRP) on the same weights and tokens."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import crane_lens as cl
from crane_lens.stats import compute_stats
from crane_lens.stats.lrp import gated_product_rule, lrp_hooks, upgrade_config

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import validate_lxt


def test_cp_gate_gets_no_gradient_and_up_the_whole_product() -> None:
    """By hand: post = act(a)·u with act(a) a constant ⇒ ∂/∂u = g·act(a), ∂/∂a = 0, and u's
    relevance u·g·act(a) is the product's whole relevance post·g (not half, as in AttnLRP)."""
    pre = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    post = F.silu(pre) * up
    g = torch.randn(4, 7, dtype=torch.float64)
    out = gated_product_rule(pre, up, post, F.silu, "gate detached")
    assert torch.equal(out, post)  # forward value untouched
    g_pre, g_up = torch.autograd.grad(out, (pre, up), g, allow_unused=True)
    assert g_pre is None  # no path from the output to the gate at all
    assert torch.equal(g_up, g * F.silu(pre.detach()))  # the same float64 product: exact
    torch.testing.assert_close(up.detach() * g_up, post.detach() * g, rtol=1e-12, atol=0)


def test_unknown_gated_rule_is_refused() -> None:
    x = torch.ones(2)
    with pytest.raises(ValueError, match="gate detached"):
        gated_product_rule(x, x, x, F.silu, "half")  # type: ignore[arg-type]


def _blocks() -> cl.TokenBlocks:
    rows = torch.randint(2, 300, (3, 12), generator=torch.Generator().manual_seed(0))
    rows[:, 0] = 0
    return cl.TokenBlocks({"en": rows}, seq_len=12, bos_token_id=0, seed=0)


def _relevance(model, attention):  # type: ignore[no-untyped-def]
    stats = compute_stats(model, _blocks(), ["crane"], attention=attention, progress=False)
    return stats.sums["en"]["rel_sum"]


def test_cp_differs_from_cp_attention_below_the_last_layer_only(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    """The gate rule acts on the paths below a layer's neurons: the last layer's relevance is
    the same under both CP variants, every earlier layer's differs (gated models only)."""
    llama = cl.load_model(tiny_checkpoints["llama"])
    cp, attention_only = _relevance(llama, "cp"), _relevance(llama, "cp-attention")
    torch.testing.assert_close(cp[-1], attention_only[-1], rtol=0, atol=0)
    assert (cp[0] - attention_only[0]).norm() > 0.05 * cp[0].norm()
    gpt2 = cl.load_model(tiny_checkpoints["gpt2"])  # ungated: the two variants coincide
    assert torch.equal(_relevance(gpt2, "cp"), _relevance(gpt2, "cp-attention"))


def test_old_cp_statistics_are_not_reused_as_the_new_cp(tiny_checkpoints, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A folder saved before ``gated_mlp_rule`` existed, with attention "cp", holds the
    attention-only variant: reused for "cp-attention", refused for "cp"; it still loads."""
    llama = cl.load_model(tiny_checkpoints["llama"])
    new = compute_stats(llama, _blocks(), ["crane"], attention="cp-attention",
                        output_dir=tmp_path, progress=False)  # fmt: skip
    assert new.config["gated_mlp_rule"] == "uniform"
    # Rewrite it as an older crane_lens wrote it: attention "cp", no gated_mlp_rule.
    old = cl.NeuronStats.load(tmp_path)
    old.config = {k: v for k, v in old.config.items() if k != "gated_mlp_rule"}
    old.config["attention"] = "cp"
    old.save(tmp_path)
    loaded = cl.NeuronStats.load(tmp_path)  # read in today's terms
    assert (loaded.config["attention"], loaded.config["gated_mlp_rule"]) == (
        "cp-attention",
        "uniform",
    )
    assert loaded.scores("crane").equal(new.scores("crane"))
    full_cp = compute_stats(llama, _blocks(), ["crane"], attention="cp", progress=False)
    with pytest.raises(cl.CraneLensError, match="attention"):
        loaded.merge(full_cp)  # an old "cp" shard never pools with today's "cp"
    again = compute_stats(llama, _blocks(), ["crane"], attention="cp-attention",
                          output_dir=tmp_path, progress=False)  # fmt: skip
    assert again.scores("crane").equal(new.scores("crane"))
    with pytest.raises(cl.CraneLensError, match="attention, gated_mlp_rule differ"):
        compute_stats(llama, _blocks(), ["crane"], attention="cp", output_dir=tmp_path,
                      progress=False)  # fmt: skip


def test_upgrade_config_keeps_attnlrp_and_new_configs() -> None:
    assert upgrade_config({"attention": "attnlrp"}) == {
        "attention": "attnlrp", "gated_mlp_rule": "uniform"
    }  # fmt: skip
    new = {"attention": "cp", "gated_mlp_rule": "gate detached"}
    assert upgrade_config(new) == new
    assert upgrade_config({"methods": ["lape"]}) == {"methods": ["lape"]}


def test_lrp_hooks_refuse_unknown_rules(tiny_checkpoints) -> None:  # type: ignore[no-untyped-def]
    model = cl.load_model(tiny_checkpoints["llama"])
    with pytest.raises(ValueError, match="cp-attention"):
        lrp_hooks(model, attention="cp_attention", gated=True)  # type: ignore[arg-type]


# -- oracle: lxt 2.1 itself ------------------------------------------------------------------
def _transcribed_lxt() -> types.SimpleNamespace:
    """lxt 2.1's ``lxt/efficient/patches.py`` functions used here, transcribed (with its
    ``rules.py``: ``stop_gradient`` = detach, ``divide_gradient``, ``identity_rule_implicit``)
    for machines without lxt; the real module is used where it is importable."""

    class IdentityRule(torch.autograd.Function):  # lxt: identity_rule_implicit_fn
        @staticmethod
        def forward(ctx, fn, input, epsilon=1e-10):  # type: ignore[no-untyped-def]
            output = fn(input)
            ctx.save_for_backward(output / (input + epsilon))
            return output

        @staticmethod
        def backward(ctx, *out_relevance):  # type: ignore[no-untyped-def]
            return None, ctx.saved_tensors[0] * out_relevance[0], None

    class DivideGradient(torch.autograd.Function):  # lxt: divide_gradient_fn
        @staticmethod
        def forward(ctx, input, factor=2):  # type: ignore[no-untyped-def]
            ctx.factor = factor
            return input

        @staticmethod
        def backward(ctx, *out_relevance):  # type: ignore[no-untyped-def]
            return out_relevance[0] / ctx.factor, None

    def rms_norm_forward(self, hidden_states):  # type: ignore[no-untyped-def]
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon).detach()
        return self.weight * hidden_states.to(input_dtype)

    def gated_mlp_forward(self, x):  # type: ignore[no-untyped-def]
        gate_out = IdentityRule.apply(self.act_fn, self.gate_proj(x))
        weighted = DivideGradient.apply(gate_out * self.up_proj(x), 2)
        return self.down_proj(weighted)

    def cp_gated_mlp_forward(self, x):  # type: ignore[no-untyped-def]
        gate_out = self.act_fn(self.gate_proj(x).detach())
        return self.down_proj(gate_out * self.up_proj(x))

    def wrap_attention_forward(forward_fn):  # type: ignore[no-untyped-def]
        def attention_forward(module, query, key, value, *args, **kwargs):  # type: ignore[no-untyped-def]
            query, key = DivideGradient.apply(query, 4), DivideGradient.apply(key, 4)
            value = DivideGradient.apply(value, 2)
            kwargs["dropout"] = 0.0
            return forward_fn(module, query, key, value, *args, **kwargs)

        return attention_forward

    def cp_wrap_attention_forward(forward_fn):  # type: ignore[no-untyped-def]
        def cp_attention_forward(module, query, key, value, *args, **kwargs):  # type: ignore[no-untyped-def]
            kwargs["dropout"] = 0.0
            return forward_fn(module, query.detach(), key.detach(), value, *args, **kwargs)

        return cp_attention_forward

    return types.SimpleNamespace(**{f.__name__: f for f in (
        rms_norm_forward, gated_mlp_forward, cp_gated_mlp_forward, wrap_attention_forward,
        cp_wrap_attention_forward)})  # fmt: skip


@pytest.fixture(scope="module")
def lxt_patches():  # type: ignore[no-untyped-def]
    return validate_lxt.load_lxt_patches() or _transcribed_lxt()


# Float32 on both sides, different operation orders (HF modules vs bridge hooks): measured
# relative L2 ≤ 3e-7 per layer; the attention-only CP variant is 5-30 % away from lxt's CP-LRP.
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
def test_relevance_equals_lxt(tiny_checkpoints, lxt_patches, arch, attention) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_checkpoints[arch]
    model = cl.load_model(folder, dtype="float32")
    tokens = _blocks().blocks["en"]
    reference = validate_lxt.reference_relevance(validate_lxt.hf_twin(folder), tokens,
                                                 lxt_patches, attention)  # fmt: skip
    ours = validate_lxt.our_relevance(model, tokens, attention)
    errors = validate_lxt.relative_l2(ours, reference)
    assert max(errors) < 1e-5, errors
    if attention == "cp":  # the oracle tells the variants apart
        other = validate_lxt.our_relevance(model, tokens, "cp-attention")
        assert validate_lxt.relative_l2(other, reference)[0] > 1e-2


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory, tiny_tokenizer):  # type: ignore[no-untyped-def]
    from tests.tiny_models import save_tiny_gemma3

    return save_tiny_gemma3(tmp_path_factory.mktemp("gemma3"), tiny_tokenizer)


@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
def test_relevance_equals_the_transcribed_rules_on_gemma3(
    tiny_gemma3, lxt_patches, attention
) -> None:  # type: ignore[no-untyped-def]
    """Gemma 3 — QK-norm, four norms per layer with weight ``1 + w``, a scaled embedding,
    sliding-window layers — against lxt's rules bound to the Hugging Face modules (its RMSNorm
    rule on Gemma's norm: ``validate_lxt.gemma_rms_norm_forward``). The oracle is sensitive to
    what it checks: Llama's norm formula on the same weights, or the attention-only CP variant,
    is off by far more than the tolerance."""
    model = cl.load_model(tiny_gemma3, dtype="float32")
    assert cl.get_spec(model).architecture == "Gemma3ForCausalLM"
    tokens = _blocks().blocks["en"]
    hf = validate_lxt.hf_twin(tiny_gemma3)
    reference = validate_lxt.reference_relevance(hf, tokens, lxt_patches, attention)
    ours = validate_lxt.our_relevance(model, tokens, attention)
    errors = validate_lxt.relative_l2(ours, reference)
    assert max(errors) < 1e-5, errors
    if attention == "cp":
        other = validate_lxt.our_relevance(model, tokens, "cp-attention")
        assert validate_lxt.relative_l2(other, reference)[0] > 1e-2

    def llama_formula(self, x):  # type: ignore[no-untyped-def]  # weight w where Gemma has 1 + w
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps).detach()
                * self.weight.float()).type_as(x)  # fmt: skip

    real_gemma_norm = validate_lxt.gemma_rms_norm_forward
    try:
        validate_lxt.gemma_rms_norm_forward = llama_formula
        wrong = validate_lxt.reference_relevance(hf, tokens, lxt_patches, attention)
    finally:
        validate_lxt.gemma_rms_norm_forward = real_gemma_norm
    assert max(validate_lxt.relative_l2(ours, wrong)) > 1e-2
