"""The streaming statistics engine: ``compute_stats(model, corpus, methods) -> NeuronStats``.

Per language, token blocks are run in batches. Every per-token tensor is reduced *inside* the
hook that sees it — activation sums in the forward hook of ``blocks.{l}.mlp.hook_post``,
relevance and gradient sums in a gradient hook on the same tensor — into float32 ``[neuron]``
sums kept on that layer's own device, so memory does not grow with the corpus and a model split
across devices (``device_map``) needs no transfers inside a batch. The sums move to the CPU only
at checkpoints and at the end.

One forward pass per batch serves every method: CRANE's LRP rules are attached with both
gradient paths (:class:`~crane_lens.stats.lrp.GradientSwitch`), then one LRP backward pass
(``crane``) and one ordinary backward pass (``attribution``, ``grad_act``) run on the same
graph; activation methods ride along (or run a forward pass alone, stopped at the unembedding's
input). Scores are gold-token log-probabilities from :mod:`crane_lens.model.runner`. Exact
ablation runs afterwards, one forward per group of neurons, with the conditions stacked along the
batch dimension (:func:`crane_lens.model.runner.keep_fill_hook`).

Inside an initialised ``torch.distributed`` process group the call is collective: each rank runs
every ``world_size``-th work item, float32 sums are all-reduced, every rank returns the same
result and rank 0 alone writes. With ``output_dir``, the accumulators are checkpointed atomically
every ``checkpoint_every`` work items (per rank); re-running the same call resumes — single
process with exactly the result of an uninterrupted run, several processes (any number) equal to
it up to float32 summation order.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from crane_lens.data.corpus import Corpus
from crane_lens.data.languages import canonical_langs
from crane_lens.data.tokens import TokenBlocks, make_token_blocks
from crane_lens.errors import CraneLensError, MissingLanguageError
from crane_lens.model.loader import get_spec
from crane_lens.model.runner import (
    PerWeights,
    ScoreKind,
    frozen_weights,
    keep_fill_hook,
    score_kinds,
    unembed_input,
)
from crane_lens.stats.kojima import KOJIMA_MAX_BLOCKS, kept_blocks
from crane_lens.stats.lrp import (
    AttentionRule,
    GradientSwitch,
    check_attention,
    gated_mlp_rule,
    lrp_hooks,
    quiet_norm_edits,
    upgrade_config,
)
from crane_lens.stats.methods import METHODS, check_methods
from crane_lens.stats.model_parts import activation_function, down_projection_rows
from crane_lens.stats.results import META_FILE, MIN_FIELDS, N_PARTS, NeuronStats, block_parts
from crane_lens.stats.top_contexts import (
    BY_MAGNITUDE,
    TOP_KINDS,
    TopKind,
    batch_top,
    check_top_contexts,
    empty_top,
    merge_top,
)
from crane_lens.utils import distributed as dist
from crane_lens.utils.io import atomic_path, write_json
from crane_lens.utils.progress import tqdm

log = logging.getLogger(__name__)

Target = Literal["logit", "logprob"]
Objective = Literal["nll", "logit"]
CHECKPOINT_FILE, CHECKPOINT_META = "checkpoint.safetensors", "checkpoint.json"
_GRAD_METHODS = {m for m, spec in METHODS.items() if spec.needs == "grad"}
KOJIMA_OFFLOAD_BATCHES = 16  # batches of Kojima responses kept on the device between transfers


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
    kojima_max_blocks: int = KOJIMA_MAX_BLOCKS,
    output_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 20,
    progress: bool = True,
    parts: bool = True,
    top_contexts: int = 0,
) -> NeuronStats:
    """Score every MLP neuron of ``model`` for every language of ``data``.

    Args:
        model: A TransformerBridge (:func:`crane_lens.load_model`), any dtype, on one device or
            split across several (``device_map``).
        data: A :class:`~crane_lens.Corpus` (cut into blocks here) or ready
            :class:`~crane_lens.TokenBlocks`.
        methods: Keys of :data:`crane_lens.stats.METHODS`: ``crane``, ``attribution``,
            ``ablation``, ``grad_act``, ``lape``, ``activation_probability``,
            ``mean_activation``, ``kojima``, ``plnd``.
        langs: Languages to use (default: all of ``data``).
        seq_len: Tokens per block, BOS included (a Corpus only).
        batch_size: Blocks per forward pass.
        max_tokens_per_lang: Cap on tokens per language (a Corpus only).
        seed: Seed of the text order when blocks are cut (and of Kojima's block sample).
        target: What ``crane`` explains: the gold next-token ``"logit"`` (default) or its
            ``"logprob"``, summed over positions.
        attention: ``crane``'s LRP rules: ``"attnlrp"`` (default), ``"cp"`` (CP-LRP as in
            lxt 2.1: no gradient through Q and K, and in gated MLPs none through the gate) or
            ``"cp-attention"`` (no gradient through Q and K; the MLPs as in AttnLRP). The
            config records the MLP rule too (``"gated_mlp_rule"``); statistics saved without
            it used AttnLRP's MLP rule, so an ``output_dir`` holding an old ``"cp"`` result
            is reused as ``"cp-attention"`` (:func:`~crane_lens.stats.lrp.upgrade_config`).
        objective: What ``attribution``, ``grad_act`` and ``ablation`` measure: the summed
            ``"nll"`` (default) or ``"logit"`` (minus the summed gold logit).
        ablation_layers: Layers whose neurons ``ablation`` ablates (default: all).
        ablation_batch_tokens: Tokens per forward pass of ``ablation`` (conditions stacked).
        kojima_max_blocks: Blocks per language whose responses ``kojima`` keeps (a seeded
            uniform sample when a language has more; all of them otherwise) — bounded memory.
        output_dir: Folder for checkpoints and the final result; re-running resumes.
        checkpoint_every: Work items (batches, per process) between checkpoints.
        progress: Show tqdm progress bars.
        parts: Also accumulate every sum per part of each language's blocks — two interleaved
            halves × five nested prefixes (1/16, 1/8, 1/4, 1/2, all; see
            :func:`~crane_lens.stats.results.block_parts`) — in the same pass, so that
            :meth:`NeuronStats.part` and :func:`~crane_lens.selection.selection_stability` can
            measure how much the selected sets change between two disjoint halves of the text
            and with more text. Costs ``N_PARTS`` = 10 × the sums' memory on each layer's
            device, in checkpoints and in the result: 10 × fields × layers × d_mlp ×
            languages float32 (fields: 3 for activations, +3 ``crane``, +3 gradient methods,
            +1 ``ablation``, +1 ``plnd``) — about 280 MB for Gemma 3 270M with every method
            and 17 languages, but 14 GB for a 70B model (80 × 28,672 neurons) with ``crane``,
            ``attribution`` and ``lape``: pass ``parts=False`` at that scale. The per-block
            reductions add no measurable time on crane-tiny (17 languages, CPU).
        top_contexts: Also keep, per language, layer and neuron, the ``k`` tokens with the
            largest activation in magnitude and (with ``crane``) the highest relevance, with where they are
            in the blocks (:mod:`~crane_lens.stats.top_contexts`; ``0 <= k <= 32``; 0: none).
            Read them with :meth:`NeuronStats.contexts` or :func:`crane_lens.neuron_card`.
            Costs ``layers × neurons × k × 12`` bytes per language and kind.

    Returns:
        :class:`NeuronStats` over the requested languages (the same on every rank).

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
    if batch_size < 1 or checkpoint_every < 1 or kojima_max_blocks < 1:
        raise ValueError("batch_size, checkpoint_every and kojima_max_blocks must be >= 1.")
    check_attention(attention)
    check_top_contexts(top_contexts)
    config = {
        "methods": list(methods), "langs": blocks.langs, "seq_len": blocks.seq_len,
        "batch_size": batch_size, "seed": blocks.seed, "target": target, "attention": attention,
        "gated_mlp_rule": gated_mlp_rule(attention),
        "objective": objective, "ablation_layers": layers if "ablation" in methods else None,
        "kojima_max_blocks": kojima_max_blocks if "kojima" in methods else None,
        "max_tokens_per_lang": max_tokens_per_lang, "blocks_sha256": _fingerprint(blocks),
        "model_fingerprint": model_fingerprint(model),
        "tokenizer_sha256": tokenizer_fingerprint(model.tokenizer), "parts": bool(parts),
        "top_contexts": top_contexts,
    }  # fmt: skip
    folder = Path(output_dir) if output_dir is not None else None
    # Rank 0 decides from its folder and every rank follows (ranks may see different files).
    done = dist.decided_by_main(lambda: _finished(folder, config, spec)) if folder else None
    if done is not None:
        log.info("statistics already complete in %s", folder)
        return done
    engine = _Engine(model, spec, methods, blocks, config, ablation_batch_tokens)
    items = engine.work_items()
    start = dist.decided_by_main(lambda: engine.resume(folder)) if folder is not None else 0
    todo, world, rank = items[start:], dist.world_size(), dist.rank()
    show = progress and dist.is_main()
    bar = tqdm(total=len(items), initial=start, disable=not show, desc="neuron stats")
    with frozen_weights(model):
        for step in range(dist.n_rounds(len(todo))):
            if step * world + rank < len(todo):  # a rank with no item in the last round waits
                engine.run(todo[step * world + rank])
            n_done = start + min((step + 1) * world, len(todo))
            bar.update(n_done - bar.n)
            if folder is not None and (step + 1) % checkpoint_every == 0 and n_done < len(items):
                engine.checkpoint(folder, n_done)
    bar.close()
    stats = engine.result()
    if folder is not None and dist.is_main():
        stats.save(folder)
        for name in (CHECKPOINT_FILE, CHECKPOINT_META):
            (folder / name).unlink(missing_ok=True)
    dist.barrier()  # no rank looks at output_dir before rank 0 has written it
    return stats


def _finished(folder: Path, config: dict[str, Any], spec: Any) -> NeuronStats | None:
    """The statistics already complete in ``folder`` (``None``: none), refused when they are
    of a different run."""
    if not (folder / META_FILE).is_file():
        return None
    done = NeuronStats.load(folder)
    saved = _saved_config(done.config)
    if saved != config or done.spec.to_dict() != spec.to_dict():
        differ = sorted(k for k in config.keys() | saved.keys() if config.get(k) != saved.get(k))
        if done.spec.to_dict() != spec.to_dict():
            differ.append("model spec")
        hint = (" (those statistics have no per-part sums: pass parts=False to reuse them)"
                if differ == ["parts"] and not saved["parts"] else "")  # fmt: skip
        raise CraneLensError(
            f"{folder} already holds statistics of a different run ({', '.join(differ)} "
            "differ; a key missing there was added by a later crane_lens); choose another "
            f"output_dir or delete that folder{hint}."
        )
    return done


def _saved_config(config: dict[str, Any]) -> dict[str, Any]:
    """A saved run's config in today's terms: results from before per-part sums (or top
    contexts) had none."""
    return {"parts": False, "top_contexts": 0} | upgrade_config(config)


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


_MODEL_FINGERPRINTS: PerWeights[str] = PerWeights()


def model_fingerprint(model: Any) -> str:
    """A short hash of the model's weights (a slice of every parameter): two results with
    different fingerprints come from different models, whatever their names."""

    @torch.no_grad()
    def compute() -> str:
        digest = hashlib.sha256()
        for name, param in model.named_parameters():
            digest.update(f"{name}{tuple(param.shape)}".encode())
            digest.update(param.flatten()[:256].float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    return _MODEL_FINGERPRINTS.get(model, compute)


_TOKENIZER_FINGERPRINTS: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """A short hash of the tokenizer's vocabulary and special tokens (``None``: no tokenizer,
    e.g. a model fed ready token ids).

    Computed once per tokenizer (a 262 k vocabulary takes a second to sort and hash: on Gemma
    that was a third of a short ``compute_stats`` call) and again when its size or special
    tokens change.
    """
    if tokenizer is None:
        return None
    special = [getattr(tokenizer, f"{kind}_token_id", None) for kind in ("bos", "eos", "pad")]
    key = (len(tokenizer), *special)
    try:
        cached = _TOKENIZER_FINGERPRINTS.get(tokenizer)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    vocab = sorted(tokenizer.get_vocab().items())
    digest = hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()[:16]
    with contextlib.suppress(TypeError):
        _TOKENIZER_FINGERPRINTS[tokenizer] = (key, digest)
    return digest


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


_W_DOWN_NORMS: PerWeights[Tensor] = PerWeights()


def _w_down_norm(model: Any, n_layers: int) -> Tensor:
    """‖W_down[i, :]‖ per layer and neuron, cached per model until its weights change."""
    return _W_DOWN_NORMS.get(model, lambda: torch.stack([
        down_projection_rows(model, layer).norm(dim=-1).cpu() for layer in range(n_layers)
    ]))  # fmt: skip


def _positive_iff_positive(act: Any) -> bool:
    """Whether ``act(x) > 0 ⟺ x > 0`` on a dense grid, zero and tiny values included."""
    grid = torch.cat(
        [torch.linspace(-30, 30, 6001), torch.tensor([0.0, 1e-30, -1e-30, 1e-6, -1e-6])]
    )
    with torch.no_grad():
        return bool(torch.equal(act(grid) > 0, grid > 0))


class _Sums:
    """One language's float32 accumulators: ``field -> layer -> [neuron]`` tensor, each created
    on (or moved once to) the device of the first value added — a layer's own device; with
    ``n_parts``, beside each a ``[part, neuron]`` tensor of the same sums per part of the
    blocks."""

    def __init__(self, fields: Sequence[str], n_layers: int, d_mlp: int, n_parts: int = 0) -> None:
        self.d_mlp, self.n_parts = d_mlp, n_parts
        self.values: dict[str, list[Tensor | None]] = {f: [None] * n_layers for f in fields}
        self.parts: dict[str, list[Tensor | None]] = (
            {f: [None] * n_layers for f in fields} if n_parts else {}
        )

    def _slot(self, name: str, layer: int, like: Tensor, parts: bool = False) -> Tensor:
        table = self.parts if parts else self.values
        current = table[name][layer]
        if current is None:
            fill = torch.inf if name in MIN_FIELDS else 0.0
            shape = (self.n_parts, self.d_mlp) if parts else (self.d_mlp,)
            current = torch.full(shape, fill, device=like.device)
        elif current.device != like.device:
            current = current.to(like.device)
        table[name][layer] = current
        return current

    def add(self, name: str, layer: int, value: Tensor) -> None:
        self._slot(name, layer, value).add_(value.float())

    def add_at(self, name: str, layer: int, index: Tensor, value: Tensor) -> None:
        self._slot(name, layer, value).index_add_(0, index.to(value.device), value.float())

    def minimum(self, name: str, layer: int, value: Tensor) -> None:
        slot = self._slot(name, layer, value)
        torch.minimum(slot, value.float(), out=slot)

    def add_parts(self, name: str, layer: int, part: Tensor, rows: Tensor) -> None:
        """Add ``rows[r]`` (one row per block, ``[rows, neuron]``) to part ``part[r]``."""
        self._slot(name, layer, rows, parts=True).index_add_(0, part, rows.float())

    def add_parts_at(self, name: str, layer: int, index: Tensor, per_part: Tensor) -> None:
        """Add ``per_part`` (``[part, len(index)]``) to the neurons ``index`` of every part."""
        slot = self._slot(name, layer, per_part, parts=True)
        slot.index_add_(1, index.to(per_part.device), per_part.float())

    def minimum_parts(self, name: str, layer: int, part: Tensor, rows: Tensor) -> None:
        slot = self._slot(name, layer, rows, parts=True)
        rows = rows.float()
        slot.scatter_reduce_(0, part[:, None].expand_as(rows), rows, "amin")

    def load(self, name: str, stacked: Tensor) -> None:
        self.values[name] = list(stacked.unbind(0))

    def load_parts(self, name: str, stacked: Tensor) -> None:
        """Per-part sums ``[part, layer, neuron]``, as :meth:`parts_to_cpu` gives them."""
        self.parts[name] = [t.contiguous() for t in stacked.unbind(1)]

    def to_cpu(self) -> dict[str, Tensor]:
        return self._stack(self.values, (self.d_mlp,), 0)

    def parts_to_cpu(self) -> dict[str, Tensor]:
        """``field -> [part, layer, neuron]``."""
        return self._stack(self.parts, (self.n_parts, self.d_mlp), 1)

    @staticmethod
    def _stack(
        table: dict[str, list[Tensor | None]], shape: tuple[int, ...], dim: int
    ) -> dict[str, Tensor]:
        out = {}
        for name, layers in table.items():
            fill = torch.inf if name in MIN_FIELDS else 0.0
            out[name] = torch.stack([
                torch.full(shape, fill) if t is None else t.detach().cpu() for t in layers
            ], dim=dim)  # fmt: skip
        return out


class _Engine:
    """Holds the accumulators of one run and executes its work items."""

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
        self.acts = [activation_function(model, layer) for layer in range(spec.n_layers)]
        # act(x) > 0 exactly when x > 0 (ReLU, GELU, SiLU...): then LAPE's test reads the gate.
        self.sign_of_pre = [_positive_iff_positive(act) for act in self.acts]
        wanted = set(methods)
        self.modes = [m for m, need in (("lrp", "crane" in wanted),
                                        ("plain", bool(_GRAD_METHODS & wanted))) if need]  # fmt: skip
        self.switch = GradientSwitch()
        self._lrp: list[tuple[str, Any]] | None = None
        self.fields = ["act_sum", "act_abs_sum", "act_on"]
        self.fields += ["rel_sum", "rel_abs_sum", "rel_pos_sum"] if "crane" in wanted else []
        self.fields += ["hg_sum", "g_sum", "hg_abs_sum"] if _GRAD_METHODS & wanted else []
        self.fields += ["ablation_sum"] if "ablation" in wanted else []
        self.fields += ["abs_mean_min"] if "plnd" in wanted else []
        # Parts of each language's blocks (results.block_parts): every sum is also kept per part.
        self.parts = bool(config.get("parts", False))
        self.n_parts = N_PARTS if self.parts else 0
        self.part_index = (
            {lang: block_parts(len(blocks.blocks[lang])) for lang in blocks.langs}
            if self.parts
            else {}
        )
        self._part_index_on: dict[tuple[str, torch.device], Tensor] = {}  # moved once per device
        self.sums = {lang: _Sums(self.fields, spec.n_layers, spec.d_mlp, self.n_parts)
                     for lang in blocks.langs}  # fmt: skip
        self.n_tokens = dict.fromkeys(blocks.langs, 0)
        self.part_tokens = {
            lang: torch.zeros(N_PARTS, dtype=torch.long) for lang in blocks.langs if self.parts
        }
        # Kojima: (global block ids, per-layer [row, neuron] means) of the sampled blocks, on
        # the layers' devices until a few batches have gathered, then (ids, [row, layer,
        # neuron]) on the CPU — one transfer per KOJIMA_OFFLOAD_BATCHES, not per batch.
        self.kojima: dict[str, list[tuple[Tensor, list[Tensor]]]] = {
            lang: [] for lang in blocks.langs
        }
        self.kojima_cpu: dict[str, list[tuple[Tensor, Tensor]]] = {
            lang: [] for lang in blocks.langs
        }
        # Top contexts: lang -> kind -> per layer (values, index) [k, neuron] on its device.
        self.top_k = int(config.get("top_contexts") or 0)
        self.top_kinds: tuple[TopKind, ...] = (
            tuple(k for k in TOP_KINDS if k == "activation" or "crane" in wanted)
            if self.top_k else ()
        )  # fmt: skip
        self.top_contexts: dict[str, dict[str, list[tuple[Tensor, Tensor] | None]]] = {
            lang: {kind: [None] * spec.n_layers for kind in self.top_kinds} for lang in blocks.langs
        }
        self.kept: dict[str, Tensor] = {}
        if "kojima" in wanted:
            max_blocks, seed = int(config["kojima_max_blocks"]), int(config["seed"])
            self.kept = {lang: kept_blocks(len(blocks.blocks[lang]), max_blocks, seed)
                         for lang in blocks.langs}  # fmt: skip

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
        return self.blocks.blocks[lang][batch * self.batch_size : (batch + 1) * self.batch_size]

    def run(self, item: tuple[Any, ...]) -> None:
        if item[0] == "batch":
            self._run_batch(item[1], item[2])
        else:
            self._run_ablation(item[1], item[2], item[3])

    def part_rows(self, lang: str, batch: int, rows: int, device: torch.device) -> Tensor:
        """The part of each block (row) of a batch, on ``device`` (no transfer per batch)."""
        key = (lang, torch.device(device))
        if key not in self._part_index_on:
            self._part_index_on[key] = self.part_index[lang].to(device)
        start = batch * self.batch_size
        return self._part_index_on[key][start : start + rows]

    # -- one forward pass, up to two backward passes ---------------------------------------
    def _run_batch(self, lang: str, batch: int) -> None:
        tokens = self.tokens(lang, batch)
        grad = bool(self.modes)
        hooks: list[tuple[str, Any]] = []
        if grad:  # a leaf that requires grad, so the frozen model builds a graph
            hooks.append(("hook_embed", lambda x, hook: x.detach().requires_grad_(True)))
        if "lrp" in self.modes:
            if self._lrp is None:  # built once: the hooks keep no state between passes
                self._lrp = lrp_hooks(
                    self.model, attention=self.config["attention"], gated=self.spec.gated,
                    switch=self.switch if len(self.modes) > 1 else None,
                )  # fmt: skip
            hooks += self._lrp
        first_post: list[Tensor] = []
        hooks += self._reducers(lang, batch, len(tokens), grad, first_post)
        kinds: dict[str, ScoreKind] = {
            "lrp": self.config["target"],
            "plain": "logit" if self.config["objective"] == "logit" else "logprob",
        }
        with torch.set_grad_enabled(grad), quiet_norm_edits():
            if grad:
                scores = score_kinds(self.model, tokens, [kinds[m] for m in self.modes],
                                     hooks=hooks)  # fmt: skip
            else:
                unembed_input(self.model, tokens, hooks)  # activations only: stop before the head
        for i, mode in enumerate(self.modes):
            self.switch.mode = mode
            score = scores[kinds[mode]].sum()
            # CRANE explains the target itself; attribution and ablation the NLL (−log p).
            target = score if mode == "lrp" else -score
            last = i + 1 == len(self.modes)
            # The gradient hooks on every neuron tensor reduce h·g as it is produced.
            torch.autograd.grad(target, first_post[0], retain_graph=not last)
        self.n_tokens[lang] += tokens.shape[0] * (tokens.shape[1] - 1)
        if self.parts:
            rows = self.part_rows(lang, batch, tokens.shape[0], torch.device("cpu"))
            self.part_tokens[lang] += torch.bincount(rows, minlength=N_PARTS) * (
                tokens.shape[1] - 1
            )
        if len(self.kojima[lang]) >= KOJIMA_OFFLOAD_BATCHES:
            self._offload_kojima(lang)

    def _offload_kojima(self, lang: str) -> None:
        for ids, per_layer in self.kojima[lang]:
            self.kojima_cpu[lang].append((ids, torch.stack([r.cpu() for r in per_layer], dim=1)))
        self.kojima[lang] = []

    def _reducers(
        self, lang: str, batch: int, rows: int, grad: bool, first_post: list[Tensor]
    ) -> list[tuple[str, Any]]:
        """Hooks that reduce each layer's neurons where they are computed (its own device)."""
        sums, methods = self.sums[lang], set(self.methods)
        kept = self.kept.get(lang)
        take = None
        if kept is not None:  # rows of this batch whose block is in Kojima's sample
            ids = torch.arange(batch * self.batch_size, batch * self.batch_size + rows)
            mask = torch.isin(ids, kept)
            take = (ids[mask], mask.nonzero()[:, 0]) if bool(mask.any()) else None
        kojima_rows: list[Tensor] = []
        pre_on: dict[int, Tensor] = {}

        def on_pre(layer: int) -> Any:
            def hook(x: Tensor, hook: Any) -> Tensor:
                pre_on[layer] = (
                    x.detach() if self.sign_of_pre[layer] else self.acts[layer](x.detach())
                )
                return x

            return hook

        def on_post(layer: int) -> Any:
            def hook(x: Tensor, hook: Any) -> Tensor:
                h = x.detach()
                part = self.part_rows(lang, batch, rows, h.device) if self.parts else None
                if "activation" in self.top_kinds:
                    self._keep_top(lang, "activation", layer, batch, h)
                if grad:
                    if not first_post:
                        first_post.append(x)
                    x.register_hook(
                        lambda g: self._reduce_grad(sums, layer, h, g, part, (lang, batch))
                    )
                self._reduce_activations(sums, layer, h, pre_on.pop(layer, None),
                                         methods, take, kojima_rows, part)  # fmt: skip
                return x

            return hook

        hooks = [
            (self.spec.hook_name(layer), on_post(layer)) for layer in range(self.spec.n_layers)
        ]
        if self.spec.gated:  # LAPE's activation test needs act(gate), not the product
            hooks += [(f"blocks.{layer}.mlp.hook_pre", on_pre(layer))
                      for layer in range(self.spec.n_layers)]  # fmt: skip
        if take is not None:
            self.kojima[lang].append((take[0], kojima_rows))
        return hooks

    def _reduce_activations(
        self,
        sums: _Sums,
        layer: int,
        h: Tensor,
        gate: Tensor | None,
        methods: set[str],
        take: tuple[Tensor, Tensor] | None,
        kojima_rows: list[Tensor],
        part: Tensor | None = None,
    ) -> None:
        """Activation sums over the predicted positions (BOS carries no language), per block
        (and per part of the blocks: ``part`` holds each row's, on ``h``'s device).

        Reductions run over whole contiguous tensors (reducing the ``[:, 1:]`` view was 20×
        slower): a float32 copy with the BOS row zeroed for the sums — subtracting the BOS row
        afterwards would cancel badly on neurons with massive BOS activations — and, for the
        exact 0/1 counts, the sum over all positions minus the BOS position."""
        n_pred = h.shape[1] - 1
        h32 = h.to(torch.float32, copy=True)
        h32[:, 0] = 0
        block_sum, block_abs = h32.sum(dim=1), h32.abs_().sum(dim=1)
        # Active = act(gate) > 0 (LAPE; the product h for ungated MLPs): sign → {0, 1}, exact.
        on = (h if gate is None else gate).sign().clamp_(min=0)
        block_on = on.sum(dim=1, dtype=torch.float32) - on[:, 0].float()
        sums.add("act_sum", layer, block_sum.sum(dim=0))
        sums.add("act_abs_sum", layer, block_abs.sum(dim=0))
        sums.add("act_on", layer, block_on.sum(0))
        if part is not None:
            sums.add_parts("act_sum", layer, part, block_sum)
            sums.add_parts("act_abs_sum", layer, part, block_abs)
            sums.add_parts("act_on", layer, part, block_on)
        if "plnd" in methods:
            block_mean = block_abs / n_pred
            sums.minimum("abs_mean_min", layer, block_mean.min(dim=0).values)
            if part is not None:
                sums.minimum_parts("abs_mean_min", layer, part, block_mean)
        if take is not None:
            kojima_rows.append(block_sum[take[1].to(h.device)] / n_pred)

    def _keep_top(self, lang: str, kind: TopKind, layer: int, batch: int, x: Tensor) -> None:
        """Merge this batch's top tokens of one layer into the language's top list."""
        magnitude = BY_MAGNITUDE[kind]
        found = batch_top(x, batch * self.batch_size, self.blocks.seq_len, self.top_k, magnitude)
        slots = self.top_contexts[lang][kind]
        current = slots[layer]
        if current is None:
            current = empty_top(self.top_k, x.shape[-1], x.device)
        elif current[0].device != x.device:  # read back from a checkpoint: moved once
            current = (current[0].to(x.device), current[1].to(x.device))
        slots[layer] = merge_top(current, found, self.top_k, magnitude)

    def _reduce_grad(
        self, sums: _Sums, layer: int, h: Tensor, g: Tensor, part: Tensor | None = None,
        where: tuple[str, int] | None = None,
    ) -> None:  # fmt: skip
        """Gradient sums over all positions; with ``part``, per block too, into its part (the
        totals stay the same reductions as without parts); ``where`` (language, batch) for the
        top relevance contexts."""
        hg = h.float() * g.float()
        hg_abs = hg.abs()
        if self.switch.mode == "lrp":
            if where is not None and "relevance" in self.top_kinds:
                self._keep_top(where[0], "relevance", layer, where[1], hg)
            total, total_abs = hg.sum(dim=(0, 1)), hg_abs.sum(dim=(0, 1))
            sums.add("rel_sum", layer, total)
            sums.add("rel_abs_sum", layer, total_abs)
            sums.add("rel_pos_sum", layer, (total + total_abs) / 2)  # max(r, 0) = (r + |r|) / 2
            if part is not None:
                rows, rows_abs = hg.sum(dim=1), hg_abs.sum(dim=1)
                sums.add_parts("rel_sum", layer, part, rows)
                sums.add_parts("rel_abs_sum", layer, part, rows_abs)
                sums.add_parts("rel_pos_sum", layer, part, (rows + rows_abs) / 2)
        else:
            g32 = g.float()
            sums.add("hg_sum", layer, hg.sum(dim=(0, 1)))
            sums.add("g_sum", layer, g32.sum(dim=(0, 1)))
            sums.add("hg_abs_sum", layer, hg_abs.sum(dim=(0, 1)))
            if part is not None:
                sums.add_parts("hg_sum", layer, part, hg.sum(dim=1))
                sums.add_parts("g_sum", layer, part, g32.sum(dim=1))
                sums.add_parts("hg_abs_sum", layer, part, hg_abs.sum(dim=1))

    @torch.no_grad()
    def _run_ablation(self, lang: str, batch: int, layer: int) -> None:
        tokens = self.tokens(lang, batch)
        d_mlp = self.spec.d_mlp
        n_copies = max(2, self.ablation_batch_tokens // tokens.numel())
        kind: ScoreKind = "logit" if self.config["objective"] == "logit" else "logprob"
        for start in range(0, d_mlp, n_copies - 1):
            neurons = torch.arange(start, min(start + n_copies - 1, d_mlp))
            # Copy 0 is the unablated baseline, so baseline and ablations share one numeric path.
            keep = torch.ones(len(neurons) + 1, d_mlp)
            keep[torch.arange(1, len(neurons) + 1), neurons] = 0
            hook = keep_fill_hook(keep, torch.zeros_like(keep), len(tokens))
            stacked = tokens.repeat(len(keep), 1)
            scores = score_kinds(self.model, stacked, [kind],
                                 hooks=[(self.spec.hook_name(layer), hook)])[kind]  # fmt: skip
            scores = scores.reshape(len(keep), -1)
            # Per-token differences before summing: float32 keeps small effects exact enough.
            drop = scores[0] - scores[1:]
            effect = drop.sum(dim=1)  # drop in log-likelihood = ΔNLL
            self.sums[lang].add_at("ablation_sum", layer, neurons, effect)
            if self.parts:  # per block ([neuron, block]), then into the blocks' parts
                per_block = drop.reshape(len(neurons), len(tokens), -1).sum(dim=2)
                part = self.part_rows(lang, batch, len(tokens), per_block.device)
                per_part = per_block.new_zeros(N_PARTS, len(neurons))
                per_part.index_add_(0, part, per_block.T)
                self.sums[lang].add_parts_at("ablation_sum", layer, neurons, per_part)

    # -- combining ranks, checkpoints ------------------------------------------------------
    def snapshot(self) -> NeuronStats:
        """Everything accumulated so far by all ranks, on the CPU (collective)."""
        stats = NeuronStats(self.spec, self.methods, config=self.config,
                            versions=dict(_versions()))  # fmt: skip
        if "plnd" in self.methods:
            stats.w_down_norm = _w_down_norm(self.model, self.spec.n_layers)
        for lang in self.blocks.langs:
            local = self.sums[lang].to_cpu()
            stats.sums[lang] = {}
            for name in self.fields:
                op = "min" if name in MIN_FIELDS else "sum"
                stats.sums[lang][name] = dist.all_reduce(local[name], op)
            counts = dist.all_reduce(torch.tensor([self.n_tokens[lang]], dtype=torch.long))
            stats.n_tokens[lang] = int(counts[0])
            if self.parts:
                local_parts = self.sums[lang].parts_to_cpu()
                stats.part_sums[lang] = {
                    name: dist.all_reduce(local_parts[name], "min" if name in MIN_FIELDS else "sum")
                    for name in self.fields
                }
                stats.part_tokens[lang] = dist.all_reduce(self.part_tokens[lang]).tolist()
            for kind in self.top_kinds:
                stats.top_contexts.setdefault(lang, {})[kind] = self._gathered_top(lang, kind)
            if "kojima" in self.methods:
                self._offload_kojima(lang)
                mine = self.kojima_cpu[lang]
                rows: tuple[Tensor, Tensor] | None = None
                if mine:
                    rows = (torch.cat([i for i, _ in mine]), torch.cat([m for _, m in mine]))
                parts = [p for p in dist.all_gather_objects(rows) if p is not None]
                if parts:
                    ids = torch.cat([i for i, _ in parts])
                    labels = self.part_index[lang][ids] if self.parts else None
                    stats.add_block_means(lang, ids, torch.cat([m for _, m in parts]), labels)
                # Rank 0 now holds every rank's rows; the others send only newer ones later.
                self.kojima_cpu[lang] = (
                    [(stats.block_ids[lang], stats.block_means[lang])]
                    if dist.is_main() and parts
                    else []
                )
        return stats

    def _gathered_top(self, lang: str, kind: str) -> tuple[Tensor, Tensor]:
        """``(values, index)`` ``[layer, k, neuron]`` of every rank's tokens (collective)."""
        n, k = self.spec.d_mlp, self.top_k
        mine = [empty_top(k, n) if slot is None else (slot[0].cpu(), slot[1].cpu())
                for slot in self.top_contexts[lang][kind]]  # fmt: skip
        local = (torch.stack([v for v, _ in mine]), torch.stack([i for _, i in mine]))
        merged, *others = dist.all_gather_objects(local)
        for other in others:  # the order of merging does not matter (ties: earlier token)
            merged = merge_top(merged, other, k, BY_MAGNITUDE[kind])
        return merged

    def checkpoint(self, folder: Path, done: int) -> None:
        """Save what all ranks accumulated after ``done`` work items (rank 0 writes). The
        tensor file carries its own count of work items and tokens, so a crash between the two
        writes cannot pair new sums with an older count."""
        from safetensors.torch import save_file

        snapshot = self.snapshot()
        if dist.is_main():
            state = {"done": str(done), "n_tokens": json.dumps(snapshot.n_tokens)}
            with atomic_path(folder / CHECKPOINT_FILE) as tmp:
                save_file(snapshot.tensors(), str(tmp), metadata=state)
            meta = {"done": done, "n_tokens": snapshot.n_tokens, "config": self.config,
                    "spec": self.spec.to_dict()}  # fmt: skip
            write_json(folder / CHECKPOINT_META, meta)
            log.info("checkpoint: %d work items done (%s)", done, folder)
        dist.barrier()

    def resume(self, folder: Path) -> int:
        """Load a checkpoint from ``folder`` if there is one; return the work items done.

        Run by rank 0 alone (:func:`~crane_lens.utils.distributed.decided_by_main` gives its
        answer to every rank): rank 0 continues from the checkpoint's sums, the other ranks
        from zero, so the all-reduce at the end counts the checkpoint once.
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        meta_path = folder / CHECKPOINT_META
        if not meta_path.is_file():
            return 0
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if _saved_config(meta["config"]) != self.config or meta["spec"] != self.spec.to_dict():
            raise CraneLensError(
                f"{folder} holds a checkpoint of a different run (other model, data or "
                "settings); choose another output_dir or delete that folder to start over."
            )
        with safe_open(str(folder / CHECKPOINT_FILE), "pt") as handle:
            state = handle.metadata() or {}
        done = int(state.get("done", meta["done"]))
        tensors = load_file(str(folder / CHECKPOINT_FILE))
        for lang in self.blocks.langs:
            for name in self.fields:
                self.sums[lang].load(name, tensors[f"{lang}/{name}"])
                if self.parts:
                    self.sums[lang].load_parts(name, tensors[f"{lang}/part/{name}"])
            if self.parts:
                self.part_tokens[lang] = tensors[f"{lang}/part_tokens"].clone()
            for kind in self.top_kinds:
                values = tensors[f"{lang}/top/{kind}/values"]
                index = tensors[f"{lang}/top/{kind}/index"]
                self.top_contexts[lang][kind] = list(zip(values.unbind(0), index.unbind(0),
                                                strict=True))  # fmt: skip
            if f"{lang}/block_means" in tensors:
                self.kojima_cpu[lang].append(
                    (tensors[f"{lang}/block_ids"], tensors[f"{lang}/block_means"])
                )
        counts = json.loads(state["n_tokens"]) if "n_tokens" in state else meta["n_tokens"]
        self.n_tokens = {lang: int(n) for lang, n in counts.items()}
        log.info("resuming after %d work items from %s", done, folder)
        return done

    def result(self) -> NeuronStats:
        return self.snapshot()
