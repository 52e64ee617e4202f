#!/usr/bin/env python
"""CRANE's relevance against lxt 2.1 (the AttnLRP authors' library) on the same weights and tokens.

    python scripts/validate_lxt.py --model crane-tiny            # seconds on a CPU
    PYTHONPATH=/path/to/lxt-2.1 python scripts/validate_lxt.py   # lxt's source, uninstalled

For each rule set — ``attnlrp`` and ``cp`` (CP-LRP) — the relevance of every MLP neuron (input
of the down projection × its LRP gradient, summed over all positions) is computed twice: by
:func:`crane_lens.compute_stats` (TransformerBridge hooks) and by the Hugging Face model with
lxt's own patch functions bound to its modules (``gated_mlp_forward`` / ``cp_gated_mlp_forward``,
``rms_norm_forward``, ``wrap_attention_forward`` / ``cp_wrap_attention_forward``). Both explain the
summed gold next-token logit. Printed: the relative L2 distance per layer.

lxt 2.1 is not a crane_lens dependency: its ``lxt.efficient`` package imports its BERT patches,
which need names transformers 5 removed, so :func:`load_lxt_patches` loads only the two modules
used here (``lxt/efficient/rules.py``, ``lxt/efficient/patches.py``) from an installed lxt or a
source folder on ``sys.path``. Llama-type models (crane-tiny, the tests' tiny llama / qwen2) and
Gemma 3 (gemma-3-270m, the tests' tiny Gemma 3): lxt's RMSNorm rule — the normalising factor
detached — is applied to Gemma's own norm, ``x · rsqrt(mean(x²) + eps) · (1 + w)`` computed in
float32 (:func:`gemma_rms_norm_forward`; also its query and key norms), whose weight enters as
``1 + w``, not lxt's Llama ``w``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import crane_lens as cl
from crane_lens.model.loader import BUILTIN_MODELS, builtin_model_dir
from crane_lens.stats.lrp import AttentionRule

log = logging.getLogger("validate_lxt")
LXT_MAPS = {"attnlrp": "attnLRP", "cp": "cp_LRP"}  # our rule -> lxt's patch map name


def load_lxt_patches() -> Any | None:
    """lxt's ``lxt.efficient.patches`` module (with its ``rules``), or ``None`` without lxt.

    Loaded file by file under stub parent packages, so lxt's model patches (whose BERT module
    fails to import on transformers 5) are never executed."""
    for entry in sys.path:
        folder = Path(entry or ".") / "lxt" / "efficient"
        if (folder / "patches.py").is_file():
            break
    else:
        return None
    for name, path in (("lxt", folder.parent), ("lxt.efficient", folder)):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    for name in ("rules", "patches"):
        full = f"lxt.efficient.{name}"
        if full not in sys.modules:
            spec = importlib.util.spec_from_file_location(full, folder / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            spec.loader.exec_module(module)
    return sys.modules["lxt.efficient.patches"]


def gemma_rms_norm_forward(self: Any, hidden_states: Tensor) -> Tensor:
    """lxt's RMSNorm rule (the factor ``rsqrt(mean(x²) + eps)`` detached: the norm is linear
    for relevance) on Gemma's norm: float32, weight ``1 + w``, cast back at the end."""
    x = hidden_states.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps).detach()
    return (x * (1.0 + self.weight.float())).type_as(hidden_states)


@contextlib.contextmanager
def lxt_rules(hf_model: Any, patches: Any, attention: AttentionRule) -> Iterator[None]:
    """``hf_model`` (a Llama-type or Gemma 3 model, eager attention) with lxt's rules bound to
    its modules: exactly lxt's ``attnLRP`` / ``cp_LRP`` patch maps for Llama, applied per
    instance (and the modelling module's ``eager_attention_forward``) and undone on exit; Gemma's
    norms take :func:`gemma_rms_norm_forward`."""
    if attention not in LXT_MAPS:
        raise ValueError(f"lxt has no rule set for attention={attention!r}")
    modeling = sys.modules[type(hf_model.model.layers[0].self_attn).__module__]
    original = getattr(modeling, "eager_attention_forward")  # noqa: B009 (mypy: a module)
    wrap = (
        patches.cp_wrap_attention_forward if attention == "cp" else patches.wrap_attention_forward
    )
    mlp_forward = patches.cp_gated_mlp_forward if attention == "cp" else patches.gated_mlp_forward
    bound = []
    for module in hf_model.modules():
        name = type(module).__name__
        if name.endswith("MLP"):
            module.forward = types.MethodType(mlp_forward, module)
            bound.append(module)
        elif name.endswith("RMSNorm"):
            norm = gemma_rms_norm_forward if name.startswith("Gemma") else patches.rms_norm_forward
            module.forward = types.MethodType(norm, module)
            bound.append(module)
    setattr(modeling, "eager_attention_forward", wrap(original))  # noqa: B010
    try:
        yield
    finally:
        setattr(modeling, "eager_attention_forward", original)  # noqa: B010
        for module in bound:
            del module.forward  # the class's forward again


def reference_relevance(
    hf_model: Any, tokens: Tensor, patches: Any, attention: AttentionRule
) -> Tensor:
    """``[layer, neuron]`` relevance by lxt's rules: down-projection input × gradient of the
    summed gold logit, summed over batch and positions."""
    inputs: list[Tensor] = []

    def keep(module: Any, args: tuple[Tensor, ...]) -> None:
        args[0].retain_grad()
        inputs.append(args[0])

    handles = [layer.mlp.down_proj.register_forward_pre_hook(keep)
               for layer in hf_model.model.layers]  # fmt: skip
    try:
        with lxt_rules(hf_model, patches, attention), torch.enable_grad():
            embeds = hf_model.get_input_embeddings()(tokens).detach().requires_grad_(True)
            logits = hf_model(inputs_embeds=embeds).logits
            gold = logits[:, :-1].gather(-1, tokens[:, 1:, None])
            gold.sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    out = []
    for x in inputs:
        assert x.grad is not None, "a down projection received no gradient"
        out.append((x * x.grad).sum(dim=(0, 1)).detach())
    return torch.stack(out)


def our_relevance(model: Any, tokens: Tensor, attention: AttentionRule) -> Tensor:
    """``[layer, neuron]`` relevance by :func:`crane_lens.compute_stats` (``crane``'s sums)."""
    blocks = cl.TokenBlocks({"xx": tokens}, seq_len=tokens.shape[1], bos_token_id=int(tokens[0, 0]),
                            seed=0)  # fmt: skip
    stats = cl.compute_stats(model, blocks, ["crane"], batch_size=len(tokens),
                             attention=attention, progress=False)  # fmt: skip
    return stats.sums["xx"]["rel_sum"]


def relative_l2(ours: Tensor, reference: Tensor) -> list[float]:
    """Per layer: ‖ours − reference‖ / ‖reference‖."""
    diff = (ours.double() - reference.double()).norm(dim=-1)
    return (diff / reference.double().norm(dim=-1)).tolist()


def hf_twin(model_dir: str | Path) -> Any:
    """The Hugging Face model of a checkpoint folder, float32, eager attention, frozen."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                              attn_implementation="eager")  # fmt: skip
    hf.eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    return hf


def compare(
    model: Any, model_dir: str | Path, tokens: Tensor, patches: Any
) -> dict[str, list[float]]:
    """Relative L2 per layer between ours (``model``, float32) and lxt's relevance (the Hugging
    Face model of ``model_dir``), for ``attnlrp`` and ``cp``."""
    hf = hf_twin(model_dir)
    return {rule: relative_l2(our_relevance(model, tokens, rule),  # type: ignore[arg-type]
                              reference_relevance(hf, tokens, patches, rule))  # type: ignore[arg-type]
            for rule in LXT_MAPS}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="crane-tiny", help="built-in name or checkpoint folder")
    parser.add_argument("--langs", default="en,zh,vi", help="built-in corpus languages")
    parser.add_argument("--blocks", type=int, default=2, help="blocks per language")
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    patches = load_lxt_patches()
    if patches is None:
        log.error("lxt not found: pip install lxt==2.1 --no-deps, or put its source on PYTHONPATH")
        return 1
    model_dir = builtin_model_dir(args.model) if args.model in BUILTIN_MODELS else args.model
    model = cl.load_model(str(model_dir), dtype="float32")
    corpus = cl.load_corpus("builtin", langs=args.langs.split(","), split="eval")
    blocks = cl.make_token_blocks(corpus, model.tokenizer, args.seq_len,
                                  args.blocks * args.seq_len, seed=0)  # fmt: skip
    tokens = torch.cat([blocks.blocks[lang][: args.blocks] for lang in blocks.langs])
    log.info("%s, %d blocks × %d tokens (%s)", args.model, len(tokens), args.seq_len, args.langs)
    for rule, errors in compare(model, model_dir, tokens, patches).items():
        per_layer = "  ".join(f"L{i} {e:.1e}" for i, e in enumerate(errors))
        log.info("%-8s relative L2 vs lxt 2.1: %s", rule, per_layer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
