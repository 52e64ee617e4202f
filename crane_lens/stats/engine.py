"""The streaming statistics engine: ``compute_stats(model, corpus, methods) -> NeuronStats``.

Per language, token blocks are run in batches with hooks on every layer's neuron hook
(``blocks.{l}.mlp.hook_post``); each batch's per-token tensors are reduced to float32 sums of
shape ``[layer, neuron]`` before the next batch, so memory does not grow with the corpus. One
LRP pass (``crane``), one ordinary-gradient pass (``attribution``, ``grad_act``) or one plain
forward (activation methods) per batch; activation sums ride along with the first pass that
runs. Exact ablation runs afterwards, one forward per group of neurons, with the conditions
stacked along the batch dimension.

With ``output_dir``, the accumulators are checkpointed atomically every ``checkpoint_every``
work items; re-running the same call resumes and ends with exactly the result of an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from crane_lens.data.corpus import Corpus
from crane_lens.data.languages import canonical_langs
from crane_lens.data.tokens import TokenBlocks, make_token_blocks
from crane_lens.errors import CraneLensError, MissingLanguageError
from crane_lens.model.loader import get_spec
from crane_lens.stats.lrp import AttentionRule, lrp_hooks, quiet_norm_edits
from crane_lens.stats.methods import METHODS, check_methods
from crane_lens.stats.model_parts import activation_function, down_projection_rows
from crane_lens.stats.results import META_FILE, NeuronStats
from crane_lens.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)

Target = Literal["logit", "logprob"]
Objective = Literal["nll", "logit"]
CHECKPOINT_FILE, CHECKPOINT_META = "checkpoint.safetensors", "checkpoint.json"
_GRAD_METHODS = {m for m, spec in METHODS.items() if spec.needs == "grad"}


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once everything needed has been captured."""


def compute_stats(
    model: Any,
    data: Corpus | TokenBlocks,
    methods: str | Sequence[str] = ("crane",),
    *,
    langs: str | Sequence[str] | None = None,
    seq_len: int = 128,
    batch_size: int = 8,
    max_tokens_per_lang: int | None = None,
    seed: int = 0,
    target: Target = "logit",
    attention: AttentionRule = "attnlrp",
    objective: Objective = "nll",
    ablation_layers: Sequence[int] | None = None,
    ablation_batch_tokens: int = 8192,
    output_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 20,
    progress: bool = True,
) -> NeuronStats:
    """Score every MLP neuron of ``model`` for every language of ``data``.

    Args:
        model: A TransformerBridge (:func:`crane_lens.load_model`), any dtype and device.
        data: A :class:`~crane_lens.Corpus` (cut into blocks here) or ready
            :class:`~crane_lens.TokenBlocks`.
        methods: Keys of :data:`crane_lens.stats.METHODS`: ``crane``, ``attribution``,
            ``ablation``, ``grad_act``, ``lape``, ``activation_probability``,
            ``mean_activation``, ``kojima``, ``plnd``.
        langs: Languages to use (default: all of ``data``).
        seq_len: Tokens per block, BOS included (a Corpus only).
        batch_size: Blocks per forward pass.
        max_tokens_per_lang: Cap on tokens per language (a Corpus only).
        seed: Seed of the text order when blocks are cut.
        target: What ``crane`` explains: the gold next-token ``"logit"`` (default) or its
            ``"logprob"``, summed over positions.
        attention: ``"attnlrp"`` (default) or ``"cp"`` (CP-LRP: no gradient through Q, K).
        objective: What ``attribution``, ``grad_act`` and ``ablation`` measure: the summed
            ``"nll"`` (default) or ``"logit"`` (minus the summed gold logit).
        ablation_layers: Layers whose neurons ``ablation`` ablates (default: all).
        ablation_batch_tokens: Tokens per forward pass of ``ablation`` (conditions stacked).
        output_dir: Folder for checkpoints and the final result; re-running resumes.
        checkpoint_every: Work items (batches) between checkpoints.
        progress: Show tqdm progress bars.

    Returns:
        :class:`NeuronStats` over the requested languages.

    Raises:
        MissingLanguageError: A requested language is not in ``data``.
        CraneLensError: ``output_dir`` holds a checkpoint or result of a different run.

    Example:
        >>> import crane_lens as cl
        >>> model = cl.load_model("crane-tiny")
        >>> corpus = cl.load_corpus("builtin", langs=["en", "vi"], split="eval")
        >>> stats = cl.compute_stats(model, corpus, ["crane", "lape"], max_tokens_per_lang=2048,
        ...                          progress=False)
        >>> stats.scores("crane").shape
        torch.Size([2, 4, 1024])
    """
    methods = check_methods(list(methods) if not isinstance(methods, str) else methods)
    spec = get_spec(model)
    blocks = _blocks(model, data, langs, seq_len, max_tokens_per_lang, seed)
    layers = list(range(spec.n_layers)) if ablation_layers is None else list(ablation_layers)
    if any(not 0 <= layer < spec.n_layers for layer in layers):
        raise ValueError(f"ablation_layers {layers} out of range for {spec.n_layers} layers.")
    config = {
        "methods": list(methods), "langs": blocks.langs, "seq_len": blocks.seq_len,
        "batch_size": batch_size, "seed": blocks.seed, "target": target, "attention": attention,
        "objective": objective, "ablation_layers": layers if "ablation" in methods else None,
        "max_tokens_per_lang": max_tokens_per_lang, "blocks_sha256": _fingerprint(blocks),
    }  # fmt: skip
    engine = _Engine(model, spec, methods, blocks, config, ablation_batch_tokens)
    folder = Path(output_dir) if output_dir is not None else None
    if folder is not None and (folder / META_FILE).is_file():
        done = NeuronStats.load(folder)
        if done.config != config or done.spec.to_dict() != spec.to_dict():
            raise CraneLensError(
                f"{folder} already holds statistics of a different run; choose another "
                "output_dir or delete that folder."
            )
        log.info("statistics already complete in %s", folder)
        return done
    items = engine.work_items()
    start = engine.resume(folder) if folder is not None else 0
    bar = tqdm(total=len(items), initial=start, disable=not progress, desc="neuron stats")
    with _frozen(model):
        for index in range(start, len(items)):
            engine.run(items[index])
            bar.update(1)
            last = index + 1 == len(items)  # the final result is saved below instead
            if folder is not None and (index + 1) % checkpoint_every == 0 and not last:
                engine.checkpoint(folder, index + 1)
    bar.close()
    stats = engine.result()
    if folder is not None:
        stats.save(folder)
        for name in (CHECKPOINT_FILE, CHECKPOINT_META):
            (folder / name).unlink(missing_ok=True)
    return stats


def _blocks(
    model: Any,
    data: Corpus | TokenBlocks,
    langs: str | Sequence[str] | None,
    seq_len: int,
    max_tokens: int | None,
    seed: int,
) -> TokenBlocks:
    wanted = canonical_langs(langs) if langs is not None else None
    if isinstance(data, TokenBlocks):
        missing = [lang for lang in wanted or [] if lang not in data.blocks]
        if missing:
            raise MissingLanguageError(f"Token blocks have no {missing}; they cover {data.langs}.")
        keep = wanted or data.langs
        return TokenBlocks({lang: data.blocks[lang] for lang in keep}, data.seq_len,
                           data.bos_token_id, data.seed)  # fmt: skip
    corpus = data.select(wanted) if wanted is not None else data
    return make_token_blocks(corpus, model.tokenizer, seq_len, max_tokens, seed)


def _fingerprint(blocks: TokenBlocks) -> str:
    digest = hashlib.sha256()
    for lang in blocks.langs:
        digest.update(lang.encode())
        digest.update(blocks.blocks[lang].to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """Weights need no gradient: freezing them saves the weight-gradient work."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("crane_lens", "transformer_lens", "transformers", "torch"):
        try:
            out[package] = version(package.replace("_", "-"))
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


_W_DOWN_NORMS: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], Tensor]] = (
    weakref.WeakKeyDictionary()
)


def _w_down_norm(model: Any, n_layers: int) -> Tensor:
    """‖W_down[i, :]‖ per layer and neuron, cached per model until its weights change."""
    stamp = tuple(p._version for p in model.parameters())  # bumped by every in-place edit
    cached = _W_DOWN_NORMS.get(model)
    if cached is None or cached[0] != stamp:
        rows = [down_projection_rows(model, layer).norm(dim=-1) for layer in range(n_layers)]
        cached = _W_DOWN_NORMS[model] = (stamp, torch.stack(rows).cpu())
    return cached[1]


class _Engine:
    """Holds the accumulators of one run and executes its work items in order."""

    def __init__(
        self,
        model: Any,
        spec: Any,
        methods: tuple[str, ...],
        blocks: TokenBlocks,
        config: dict[str, Any],
        ablation_batch_tokens: int,
    ) -> None:
        self.model, self.spec, self.methods, self.blocks = model, spec, methods, blocks
        self.config, self.ablation_batch_tokens = config, ablation_batch_tokens
        self.batch_size = int(config["batch_size"])
        self.device = next(model.parameters()).device
        self.acts = [activation_function(model, layer) for layer in range(spec.n_layers)]
        self._lrp: list[tuple[str, Any]] | None = None
        self._shortcut: bool | None = None  # gold logits without the full unembedding
        self.stats = NeuronStats(spec, methods, config=config, versions=dict(_versions()))
        if "plnd" in methods:
            self.stats.w_down_norm = _w_down_norm(model, spec.n_layers)
        shape = (spec.n_layers, spec.d_mlp)
        fields = ["act_sum", "act_abs_sum", "act_on"]
        fields += ["rel_sum", "rel_abs_sum", "rel_pos_sum"] if "crane" in methods else []
        fields += ["hg_sum", "g_sum", "hg_abs_sum"] if _GRAD_METHODS & set(methods) else []
        fields += ["ablation_sum"] if "ablation" in methods else []
        # Accumulators live on the model's device (no per-batch transfers) and move to the CPU
        # for checkpoints and the result.
        for lang in blocks.langs:
            self.stats.n_tokens[lang] = 0
            self.stats.sums[lang] = {
                name: torch.zeros(shape, device=self.device) for name in fields
            }
            if "plnd" in methods:
                self.stats.sums[lang]["abs_mean_min"] = torch.full(
                    shape, torch.inf, device=self.device
                )
            if "kojima" in methods:
                self.stats.block_means[lang] = torch.zeros((0, *shape))

    # -- plan ------------------------------------------------------------------------------
    def n_batches(self, lang: str) -> int:
        return -(-len(self.blocks.blocks[lang]) // self.batch_size)

    def work_items(self) -> list[tuple[Any, ...]]:
        items: list[tuple[Any, ...]] = [
            ("batch", lang, b) for lang in self.blocks.langs for b in range(self.n_batches(lang))
        ]
        if "ablation" in self.methods:
            items += [("ablation", lang, b, layer) for lang in self.blocks.langs
                      for b in range(self.n_batches(lang)) for layer in self.config["ablation_layers"]]  # fmt: skip
        return items

    def tokens(self, lang: str, batch: int) -> Int[Tensor, "batch pos"]:
        rows = self.blocks.blocks[lang][batch * self.batch_size : (batch + 1) * self.batch_size]
        return rows.to(self.device)

    def run(self, item: tuple[Any, ...]) -> None:
        if item[0] == "batch":
            self._run_batch(item[1], self.tokens(item[1], item[2]))
        else:
            self._run_ablation(item[1], self.tokens(item[1], item[2]), item[3])

    # -- passes ----------------------------------------------------------------------------
    def _capture_hooks(self, store: dict[str, list[Tensor | None]]) -> list[tuple[str, Any]]:
        n = self.spec.n_layers
        store["post"], store["pre"] = [None] * n, [None] * n

        def keep(kind: str, layer: int) -> Any:
            def fn(x: Tensor, hook: Any) -> Tensor:
                store[kind][layer] = x
                return x

            return fn

        hooks = [(self.spec.hook_name(layer), keep("post", layer)) for layer in range(n)]
        if self.spec.gated:  # LAPE's activation test needs act(gate), not the product
            hooks += [(f"blocks.{layer}.mlp.hook_pre", keep("pre", layer)) for layer in range(n)]
        return hooks

    def _forward(
        self, tokens: Tensor, extra: list[tuple[str, Any]], grad: bool, logits: bool = True
    ) -> tuple[Tensor, dict[str, list[Tensor | None]]]:
        """Run the model with the capture hooks (and ``extra``). Returns the logits, or with
        ``logits=False`` the unembedding's input (the forward stops there: the full-vocabulary
        projection is the costliest layer of a small model and often not needed)."""
        store: dict[str, list[Tensor | None]] = {}
        hooks = list(extra)
        if grad:  # a leaf that requires grad, so the frozen model builds a graph
            hooks.insert(0, ("hook_embed", lambda x, hook: x.detach().requires_grad_(True)))
        hooks += self._capture_hooks(store)
        if not logits:

            def stop(x: Tensor, hook: Any) -> Tensor:
                store["resid"] = [x]
                raise _StopForward

            hooks.append(("unembed.hook_in", stop))
        with torch.set_grad_enabled(grad), self.model.hooks(fwd_hooks=hooks), quiet_norm_edits():
            try:
                out = self.model(tokens, return_type="logits")
            except _StopForward:
                out = store.pop("resid")[0]
        return out, store

    def _gold_logits(self, resid: Tensor, tokens: Tensor) -> Tensor:
        """Gold next-token logits from the unembedding's input: only the gold rows of W_U."""
        unembed = self.model.unembed.original_component
        gold = tokens[:, 1:]
        logit = (resid[:, :-1] * unembed.weight[gold]).sum(-1)
        if getattr(unembed, "bias", None) is not None:
            logit = logit + unembed.bias[gold]
        cap = getattr(getattr(self.model, "original_model", None), "config", None)
        cap = getattr(cap, "final_logit_softcapping", None)
        return cap * torch.tanh(logit / cap) if cap else logit

    def _gold_shortcut_is_exact(self, tokens: Tensor) -> bool:
        """Check once per run that :meth:`_gold_logits` reproduces the model's own logits (an
        architecture with an unusual head falls back to full logits)."""
        try:
            with torch.no_grad():
                full = self.model(tokens, return_type="logits")[:, :-1]
                expected = full.gather(-1, tokens[:, 1:, None])[..., 0].float()
                resid, _ = self._forward(tokens, [], grad=False, logits=False)
                got = self._gold_logits(resid, tokens).float()
        except Exception:  # any failure means: use the full logits
            return False
        return bool(
            torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))
        )

    def _run_batch(self, lang: str, tokens: Tensor) -> None:
        methods = set(self.methods)
        sums = self.sums(lang)
        collected = False
        if "crane" in methods:
            if self._lrp is None:  # built once: the hooks keep no state between forward passes
                self._lrp = lrp_hooks(
                    self.model, attention=self.config["attention"], gated=self.spec.gated
                )
            if self._shortcut is None:
                self._shortcut = self._gold_shortcut_is_exact(tokens[:1])
                log.info("gold-logit shortcut %s", "on" if self._shortcut else "off")
            shortcut = self._shortcut and self.config["target"] == "logit"
            out, store = self._forward(tokens, self._lrp, grad=True, logits=not shortcut)
            target = self._gold_logits(out, tokens).float().sum() if shortcut else (
                self._crane_target(out, tokens))  # fmt: skip
            grads = self._grads(target, store["post"])
            self._collect_activations(lang, store)
            collected = True
            for layer, (h, g) in enumerate(zip(store["post"], grads, strict=True)):
                rel = h.detach().float() * g.float()  # type: ignore[union-attr]
                sums["rel_sum"][layer] += rel.sum(dim=(0, 1))
                sums["rel_abs_sum"][layer] += rel.abs().sum(dim=(0, 1))
                sums["rel_pos_sum"][layer] += rel.clamp(min=0).sum(dim=(0, 1))
            del out, store, grads
        if methods & _GRAD_METHODS:
            logits, store = self._forward(tokens, [], grad=True)
            grads = self._grads(-self._objective_scores(logits, tokens).sum(), store["post"])
            if not collected:
                self._collect_activations(lang, store)
                collected = True
            for layer, (h, g) in enumerate(zip(store["post"], grads, strict=True)):
                hg = h.detach().float() * g.float()  # type: ignore[union-attr]
                sums["hg_sum"][layer] += hg.sum(dim=(0, 1))
                sums["g_sum"][layer] += g.float().sum(dim=(0, 1))
                sums["hg_abs_sum"][layer] += hg.abs().sum(dim=(0, 1))
            del logits, store, grads
        if not collected:
            _, store = self._forward(tokens, [], grad=False, logits=False)
            self._collect_activations(lang, store)
        self.stats.n_tokens[lang] += tokens.shape[0] * (tokens.shape[1] - 1)

    def sums(self, lang: str) -> dict[str, Tensor]:
        return self.stats.sums[lang]

    @staticmethod
    def _grads(target: Tensor, outputs: list[Tensor | None]) -> tuple[Tensor, ...]:
        return torch.autograd.grad(target, outputs)  # type: ignore[arg-type]

    @staticmethod
    def _gold_scores(logits: Tensor, tokens: Tensor, kind: str) -> Tensor:
        """Per predicted position: the gold token's ``"logit"`` or ``"logprob"`` (float32)."""
        gold = tokens[:, 1:].unsqueeze(-1)
        if kind == "logprob":
            return logits[:, :-1].float().log_softmax(-1).gather(-1, gold)[..., 0]
        return logits[:, :-1].gather(-1, gold)[..., 0].float()

    def _crane_target(self, logits: Tensor, tokens: Tensor) -> Tensor:
        return self._gold_scores(logits, tokens, self.config["target"]).sum()

    def _objective_scores(self, logits: Tensor, tokens: Tensor) -> Tensor:
        """Per position, what attribution and ablation measure (higher is better): the gold
        log-probability (``objective="nll"``) or the gold logit (``objective="logit"``)."""
        kind = "logit" if self.config["objective"] == "logit" else "logprob"
        return self._gold_scores(logits, tokens, kind)

    def _collect_activations(self, lang: str, store: dict[str, list[Tensor | None]]) -> None:
        sums = self.sums(lang)
        block_means: list[Tensor] = []
        for layer in range(self.spec.n_layers):
            post = store["post"][layer]
            assert post is not None
            h = post.detach()[:, 1:].float()  # BOS carries no language: predicted positions only
            if self.spec.gated:
                pre = store["pre"][layer]
                assert pre is not None
                on = self.acts[layer](pre.detach()[:, 1:]) > 0
            else:
                on = h > 0
            h_abs = h.abs()
            sums["act_sum"][layer] += h.sum(dim=(0, 1))
            sums["act_abs_sum"][layer] += h_abs.sum(dim=(0, 1))
            sums["act_on"][layer] += on.sum(dim=(0, 1)).float()
            if "plnd" in self.methods:
                block_abs = h_abs.mean(dim=1).min(dim=0).values
                sums["abs_mean_min"][layer] = torch.minimum(sums["abs_mean_min"][layer], block_abs)
            if "kojima" in self.methods:
                block_means.append(h.mean(dim=1))
        if block_means:
            means = torch.stack(block_means, dim=1).cpu()  # block × layer × neuron
            self.stats.block_means[lang] = torch.cat([self.stats.block_means[lang], means])

    @torch.no_grad()
    def _run_ablation(self, lang: str, tokens: Tensor, layer: int) -> None:
        d_mlp = self.spec.d_mlp
        n_copies = max(2, self.ablation_batch_tokens // tokens.numel())
        batch = tokens.shape[0]
        effect = torch.zeros(d_mlp, dtype=torch.float64)
        for start in range(0, d_mlp, n_copies - 1):
            neurons = torch.arange(start, min(start + n_copies - 1, d_mlp))
            # Copy 0 is the unablated baseline, so baseline and ablations share one numeric path.
            mask = torch.ones(len(neurons) + 1, d_mlp, device=self.device)
            mask[torch.arange(1, len(neurons) + 1), neurons] = 0

            def zero(x: Tensor, hook: Any, mask: Tensor = mask) -> Tensor:
                shaped = x.view(len(mask), batch, *x.shape[1:])
                return (shaped * mask[:, None, None, :].to(x.dtype)).view_as(x)

            stacked = tokens.repeat(len(mask), 1)
            with self.model.hooks(fwd_hooks=[(self.spec.hook_name(layer), zero)]):
                logits = self.model(stacked, return_type="logits")
            per_copy = self._objective_scores(logits, stacked).double().sum(dim=1)
            score = per_copy.view(len(mask), batch).sum(1)
            effect[neurons] = (score[0] - score[1:]).cpu()  # drop in log-likelihood = ΔNLL
        self.sums(lang)["ablation_sum"][layer] += effect.float().to(self.device)

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, folder: Path, done: int) -> None:
        """Save the accumulators after ``done`` work items (atomically: files, then marker)."""
        from safetensors.torch import save_file

        with atomic_path(folder / CHECKPOINT_FILE) as tmp:
            save_file(self.stats.tensors(), str(tmp))
        meta = {"done": done, "n_tokens": self.stats.n_tokens, "config": self.config,
                "spec": self.spec.to_dict()}  # fmt: skip
        write_json(folder / CHECKPOINT_META, meta)
        log.info("checkpoint: %d work items done (%s)", done, folder)

    def resume(self, folder: Path) -> int:
        """Load a checkpoint from ``folder`` if there is one; return the items already done."""
        from safetensors.torch import load_file

        meta_path = folder / CHECKPOINT_META
        if not meta_path.is_file():
            return 0
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta["config"] != self.config or meta["spec"] != self.spec.to_dict():
            raise CraneLensError(
                f"{folder} holds a checkpoint of a different run (other model, data or "
                "settings); choose another output_dir or delete that folder to start over."
            )
        tensors = load_file(str(folder / CHECKPOINT_FILE))
        for key, tensor in tensors.items():
            if key == "w_down_norm":
                continue
            lang, name = key.split("/", 1)
            if name == "block_means":
                self.stats.block_means[lang] = tensor
            else:
                self.stats.sums[lang][name] = tensor.to(self.device)
        self.stats.n_tokens = {lang: int(n) for lang, n in meta["n_tokens"].items()}
        log.info("resuming after %d work items from %s", meta["done"], folder)
        return int(meta["done"])

    def result(self) -> NeuronStats:
        for fields in self.stats.sums.values():
            for name, tensor in fields.items():
                fields[name] = tensor.cpu()
        return self.stats
