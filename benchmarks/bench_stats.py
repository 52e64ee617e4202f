#!/usr/bin/env python
"""Cost of the statistics engine relative to a plain forward pass, measured in one process.

Every configuration is timed ``--repeats`` times in interleaved order (after one warm-up each)
and its median is compared with the medians of two plain no-grad forwards over the same tokens:
the TransformerBridge's (``model(tokens, return_type="logits")``) and the raw Hugging Face
model's underneath it (``model.original_model(input_ids=tokens, use_cache=False)``). Ratios, not
absolute times, because shared machines are noisy; the targets are printed beside them, never
asserted. Also measured: exact-ablation throughput (neuron-ablations × tokens per second, one
layer), and the peak memory of ``compute_stats`` with all methods for 1×, 4× and 16× the tokens,
each in a fresh subprocess (CPU: growth of Linux ``VmHWM`` over the loaded model; CUDA:
``torch.cuda.max_memory_allocated`` over the allocation before the run).

Shapes: ``crane-tiny`` (the embedded model, float32, batch 8 × 128 tokens) and two random-init
Llama models built in memory from a ``LlamaConfig`` with the dimensions of Llama-3.2-1B
(``llama-1b``, batch 16 × 512) and Llama-3.1-8B (``llama-8b``, batch 8 × 512), in bfloat16, with
crane-tiny's tokenizer and random token ids below its vocabulary (random weights: the text does
not matter, the cost does).

    python benchmarks/bench_stats.py                                  # crane-tiny on the CPU
    python benchmarks/bench_stats.py --write-docs                     # + docs/performance.md
    python benchmarks/bench_stats.py --device cuda --shape llama-1b --write-docs  # its GPU block
    python benchmarks/bench_stats.py --docs-from OUT/performance.md   # GPU blocks from elsewhere

``benchmarks/gpu_check.sh`` runs the GPU shapes (and the GPU tests) on a GPU machine.

``--with-captum`` adds captum's ``LayerGradientXActivation`` run layer by layer (the per-layer
approach the engine replaces); captum is a benchmark-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import crane_lens as cl
from crane_lens.model.loader import builtin_model_dir, resolve_dtype
from crane_lens.utils.markdown import read_marked_block, update_marked_block

DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
GPU_BLOCK = "bench-stats-gpu"  # one block per shape: bench-stats-gpu-llama-1b...
ACTIVATION_METHODS = ["lape", "mean_activation", "kojima", "plnd"]
ALL_METHODS = ["crane", "attribution", "grad_act", "lape", "kojima", "plnd"]
MEMORY_SCALES = (1, 4, 16)
MEMORY_TARGET = 1.05


@dataclass(frozen=True)
class Shape:
    """A model to benchmark and its default token batch."""

    batch: int
    seq_len: int
    dtype: str
    ablation_seq_len: int  # one block of this length for the exact-ablation throughput
    llama: dict[str, Any] = field(default_factory=dict)  # LlamaConfig fields; empty: crane-tiny


_LLAMA = {"num_key_value_heads": 8, "vocab_size": 128256, "num_attention_heads": 32,
          "max_position_embeddings": 2048}  # fmt: skip
SHAPES = {
    "crane-tiny": Shape(8, 128, "float32", 32),
    # Llama-3.2-1B's dimensions (tied embeddings, as the released model).
    "llama-1b": Shape(16, 512, "bfloat16", 32, {**_LLAMA, "hidden_size": 2048,
                      "num_hidden_layers": 16, "intermediate_size": 8192,
                      "tie_word_embeddings": True}),
    # Llama-3.1-8B's dimensions (untied embeddings).
    "llama-8b": Shape(8, 512, "bfloat16", 16, {**_LLAMA, "hidden_size": 4096,
                      "num_hidden_layers": 32, "intermediate_size": 14336,
                      "tie_word_embeddings": False}),
}  # fmt: skip

FORWARD, HF_FORWARD = "bridge forward", "raw HF forward"
ACTIVATION = f"activation statistics ({', '.join(ACTIVATION_METHODS)})"
CRANE, GRADIENT = "crane", "attribution + grad_act"
ALL = f"all methods ({', '.join(ALL_METHODS)})"
CAPTUM = "captum LayerGradientXActivation, layer by layer"
STATS_RUNS = {ACTIVATION: ACTIVATION_METHODS, CRANE: ["crane"],
              GRADIENT: ["attribution", "grad_act"], ALL: ALL_METHODS}  # fmt: skip
# Targets: (× bridge forward, × raw HF forward); None = no target.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    ACTIVATION: (1.1, None), CRANE: (2.3, 2.6), ALL: (3.5, None),
}  # fmt: skip


# -- models and tokens ---------------------------------------------------------------------------
def load(shape_name: str, device: str, dtype: str) -> Any:
    """The shape's model as a TransformerBridge on ``device`` in ``dtype``."""
    shape = SHAPES[shape_name]
    if not shape.llama:
        return cl.load_model(shape_name, device=device, dtype=dtype)
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(builtin_model_dir("crane-tiny"))
    config = LlamaConfig(**shape.llama, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: no 16 GB copy for the 8B shape
        hf = LlamaForCausalLM._from_config(config, dtype=resolve_dtype(dtype))
    hf.eval()
    # TransformerLens wraps an in-memory model with hf_model= (weights, device and dtype as they
    # are); the name is only a label, never looked up.
    return cl.load_model(f"random-init/{shape_name}", hf_model=hf, tokenizer=tokenizer,
                         device=device, dtype=dtype)  # fmt: skip


def token_blocks(model: Any, shape_name: str, n_blocks: int, seq_len: int) -> cl.TokenBlocks:
    """English text for crane-tiny; random ids below the tokenizer's vocabulary otherwise."""
    tokenizer = model.tokenizer
    if not SHAPES[shape_name].llama:
        corpus = cl.load_corpus("builtin", langs=["en"], split="train")
        return cl.make_token_blocks(corpus, tokenizer, seq_len, n_blocks * seq_len, seed=0)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, len(tokenizer), (n_blocks, seq_len), generator=generator)
    ids[:, 0] = tokenizer.bos_token_id
    return cl.TokenBlocks({"en": ids}, seq_len, tokenizer.bos_token_id, 0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _LogNotes(logging.Handler):
    """Collects what crane_lens logs while the runs go (e.g. a fallback the engine took)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.notes: dict[str, None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.notes[record.getMessage()] = None


# -- timing --------------------------------------------------------------------------------------
def _captum_per_layer(model: Any, tokens: torch.Tensor) -> Callable[[], None]:
    from captum.attr import LayerGradientXActivation

    hf = model.original_model
    gold = tokens[:, 1:]

    def gold_logits(input_ids: torch.Tensor) -> torch.Tensor:
        logits = hf(input_ids=input_ids, use_cache=False).logits[:, :-1]
        return logits.gather(-1, gold.unsqueeze(-1)).sum(dim=(1, 2))

    # The input of each layer's down projection, one layer per call: n_layers forward+backward.
    layers = [hf.model.layers[i].mlp.down_proj for i in range(len(hf.model.layers))]
    explainers = [LayerGradientXActivation(gold_logits, layer) for layer in layers]

    def run() -> None:
        for explainer in explainers:
            explainer.attribute(tokens, attribute_to_layer_input=True)

    return run


def time_all(model: Any, blocks: cl.TokenBlocks, repeats: int, device: str,
             with_captum: bool) -> dict[str, float]:  # fmt: skip
    """Median seconds of each run, interleaved ``repeats`` times after one warm-up each."""
    tokens = blocks["en"].to(device)

    def forward() -> None:
        with torch.no_grad():
            model(tokens, return_type="logits")

    def hf_forward() -> None:
        with torch.no_grad():
            model.original_model(input_ids=tokens, use_cache=False)

    def stats(methods: list[str]) -> Callable[[], object]:
        return lambda: cl.compute_stats(model, blocks, methods, batch_size=len(tokens),
                                        progress=False)  # fmt: skip

    runs: dict[str, Callable[[], object]] = {FORWARD: forward, HF_FORWARD: hf_forward}
    runs |= {name: stats(methods) for name, methods in STATS_RUNS.items()}
    if with_captum:
        runs[CAPTUM] = _captum_per_layer(model, tokens)
    for run in runs.values():  # warm-up (allocator, lazy initialisation, kernel selection)
        run()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def ablation_throughput(model: Any, shape_name: str, seq_len: int, device: str) -> dict[str, Any]:
    """Exact ablation of every neuron of layer 0 on one block: seconds and rate."""
    blocks = token_blocks(model, shape_name, 1, seq_len)
    _sync(device)
    start = time.perf_counter()
    cl.compute_stats(model, blocks, ["ablation"], ablation_layers=[0], batch_size=1,
                     progress=False)  # fmt: skip
    _sync(device)
    seconds = time.perf_counter() - start
    d_mlp = cl.get_spec(model).d_mlp
    predicted = seq_len - 1  # scored positions: every token but the BOS predicts the next
    return {"seconds": seconds, "neurons": d_mlp, "tokens": predicted,
            "rate": d_mlp * predicted / seconds}  # fmt: skip


# -- memory --------------------------------------------------------------------------------------
def _vm(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def peak_memory_child(job: dict[str, Any]) -> None:
    """(In a fresh subprocess) peak memory growth of compute_stats(ALL_METHODS), printed as
    JSON: resident set (CPU) or CUDA allocations (CUDA) beyond what the loaded model holds."""
    device, batch = job["device"], job["batch"]
    if not device.startswith("cuda"):
        torch.set_num_threads(1)
    model = load(job["shape"], device, job["dtype"])
    blocks = token_blocks(model, job["shape"], job["n_blocks"], job["seq_len"])
    warm_up = token_blocks(model, job["shape"], batch, job["seq_len"])
    cl.compute_stats(model, warm_up, ALL_METHODS, batch_size=batch, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        cl.compute_stats(model, blocks, ALL_METHODS, batch_size=batch, progress=False)
        torch.cuda.synchronize()
        growth = torch.cuda.max_memory_allocated() - before
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _vm("VmRSS")
        cl.compute_stats(model, blocks, ALL_METHODS, batch_size=batch, progress=False)
        growth = _vm("VmHWM") - before
    print(json.dumps({"peak_growth": growth}))


def peak_memory(job: dict[str, Any]) -> int | None:
    """Run :func:`peak_memory_child` in a fresh interpreter; ``None`` if it failed."""
    result = subprocess.run(
        [sys.executable, __file__, "--memory-child", json.dumps(job)],
        capture_output=True, text=True,
        # Large blocks via mmap: freed memory leaves the process, so RSS tracks live tensors
        # instead of glibc's fragmentation (which otherwise adds ±25 % noise).
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
    )  # fmt: skip
    if result.returncode != 0:
        print(f"memory measurement {job} failed:\n{result.stderr[-3000:]}", file=sys.stderr)
        return None
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_growth"])


# -- report --------------------------------------------------------------------------------------
def environment(model: Any, device: str, dtype: str) -> str:
    import transformers

    if device.startswith("cuda"):
        where = f"GPU {torch.cuda.get_device_name()}"
    else:
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "unknown CPU")  # fmt: skip
        where = f"CPU {cpu}, {torch.get_num_threads()} torch threads"
    attention = getattr(model.original_model.config, "_attn_implementation", "unknown")
    return (f"{where}; torch {torch.__version__}, transformers {transformers.__version__}; "
            f"dtype {dtype}; attention implementation `{attention}`")  # fmt: skip


def _target_cell(name: str, ratio_bridge: float, ratio_hf: float) -> str:
    bridge, hf = TARGETS.get(name, (None, None))
    parts, met = [], True
    if bridge is not None:
        parts.append(f"≤ {bridge:g}× bridge")
        met &= ratio_bridge <= bridge
    if hf is not None:
        parts.append(f"≤ {hf:g}× HF")
        met &= ratio_hf <= hf
    if not parts:
        return ""
    return f"{', '.join(parts)}: {'met' if met else '**missed**'}"


def report(args: argparse.Namespace, env: str, spec: Any, times: dict[str, float],
           ablation: dict[str, Any] | None, peaks: dict[int, int | None], notes: list[str]) -> str:  # fmt: skip
    n_tokens = args.batch * args.seq_len
    bridge, hf = times[FORWARD], times[HF_FORWARD]
    lines = [
        f"Shape `{args.shape}` ({spec.n_layers} layers × {spec.d_mlp} neurons, d_model "
        f"{spec.d_model}, vocabulary {spec.vocab_size:,}), batch {args.batch} × {args.seq_len} "
        f"tokens on {args.device}, median of {args.repeats} interleaved runs. {env}. "
        f"crane_lens logged: {'; '.join(notes) or 'nothing'}.",
        "",
        "| run | median (ms) | tokens/s | × bridge forward | × raw HF forward | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for name, t in times.items():
        lines.append(f"| {name} | {t * 1e3:.1f} | {n_tokens / t:,.0f} | **{t / bridge:.2f}×** | "
                     f"{t / hf:.2f}× | {_target_cell(name, t / bridge, t / hf)} |")  # fmt: skip
    lines += ["", f"Bridge / raw HF forward: **{bridge / hf:.2f}×**."]
    captum = times.get(CAPTUM)
    if captum is not None:
        lines[-1] += (f" Speed-up of the one-pass engine over captum layer by layer: "
                      f"**{captum / times[GRADIENT]:.2f}×** for plain gradient×activation "
                      f"(same quantity), **{captum / times[CRANE]:.2f}×** for CRANE relevance.")  # fmt: skip
    if ablation is not None:
        share = ablation["rate"] / (n_tokens / bridge)
        lines += ["", f"Exact ablation (`compute_stats(..., [\"ablation\"], ablation_layers=[0])`, "
                  f"all {ablation['neurons']:,} neurons of layer 0, one block of "
                  f"{ablation['tokens'] + 1} tokens): {ablation['seconds']:.2f} s, "
                  f"**{ablation['rate']:,.0f} neuron-ablations × tokens / s**, {share:.2f}× the "
                  "bridge forward's tokens/s (one neuron-ablation of one token is one token of a "
                  "forward pass; the engine stacks the ablations into passes of up to "
                  "`ablation_batch_tokens`)."]  # fmt: skip
    if any(p is not None for p in peaks.values()):
        what = "CUDA allocations" if args.device.startswith("cuda") else "resident set"
        base = peaks.get(1)
        lines += ["", f"| tokens | peak growth of the {what} during `compute_stats` (all methods) "
                  "| × 1× |", "| ---: | ---: | ---: |"]  # fmt: skip
        for k, peak in peaks.items():
            size = "failed" if peak is None else f"{peak / 2**20:,.1f} MiB"
            ratio = f"{peak / base:.3f}" if peak is not None and base else ""
            lines.append(f"| {k * n_tokens:,} ({k}×) | {size} | {ratio} |")
        ratios = [f"{k}× / 1×: **{peak / base:.3f}**" for k in MEMORY_SCALES[1:]
                  if base and (peak := peaks.get(k)) is not None]  # fmt: skip
        lines += ["", f"{'; '.join(ratios)} (target ≤ {MEMORY_TARGET}; batch {args.batch} "
                  "blocks, measured in fresh subprocesses over the loaded model)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def docs_block(device: str, shape_name: str) -> str:
    """The generated block of docs/performance.md a run writes: the CPU table, or one GPU block
    per shape (so a GPU run never overwrites the CPU table, nor another shape's)."""
    return "bench-stats" if device == "cpu" else f"{GPU_BLOCK}-{shape_name}"


def copy_gpu_blocks(source: Path) -> list[str]:
    """Copy every GPU block of ``source`` (a performance.md a GPU machine wrote) into DOCS."""
    names = re.findall(rf"<!-- ({GPU_BLOCK}-[\w.-]+):", source.read_text(encoding="utf-8"))
    for name in names:
        update_marked_block(DOCS, name, read_marked_block(source, name))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="crane-tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16... (default: shape's)")
    parser.add_argument("--batch", type=int, default=None, help="blocks per batch")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--ablation-seq-len", type=int, default=None,
                        help="tokens of the one block the exact ablation runs on")  # fmt: skip
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--with-captum", action="store_true", help="needs captum ([bench])")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument("--docs-from", type=Path, metavar="PERFORMANCE_MD",
                        help=f"only copy the GPU blocks of that page (from a GPU run) into "
                        f"{DOCS.name}")  # fmt: skip
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(json.loads(args.memory_child))
        return 0
    if args.docs_from:
        print(f"copied {', '.join(copy_gpu_blocks(args.docs_from)) or 'no blocks'} into {DOCS}")
        return 0
    shape = SHAPES[args.shape]
    args.dtype = args.dtype or shape.dtype
    args.batch = args.batch or shape.batch
    args.seq_len = args.seq_len or shape.seq_len
    if args.threads:
        torch.set_num_threads(args.threads)
    # Memory first, in fresh subprocesses, while this process holds no model (the 8B shape's
    # weights would otherwise be on the GPU twice).
    peaks: dict[int, int | None] = {}
    if not args.skip_memory:
        job = {"shape": args.shape, "device": args.device, "dtype": args.dtype,
               "seq_len": args.seq_len, "batch": args.batch}  # fmt: skip
        peaks = {k: peak_memory({**job, "n_blocks": k * args.batch}) for k in MEMORY_SCALES}
    model = load(args.shape, args.device, args.dtype)
    blocks = token_blocks(model, args.shape, args.batch, args.seq_len)
    notes = _LogNotes()
    package_log = logging.getLogger("crane_lens")
    package_log.addHandler(notes)
    package_log.setLevel(logging.INFO)
    times = time_all(model, blocks, args.repeats, args.device, args.with_captum)
    ablation = None
    if not args.skip_ablation:
        ablation = ablation_throughput(
            model, args.shape, args.ablation_seq_len or shape.ablation_seq_len, args.device
        )
    table = report(args, environment(model, args.device, args.dtype), cl.get_spec(model), times,
                   ablation, peaks, list(notes.notes))  # fmt: skip
    print(table)
    del model
    gc.collect()
    if args.write_docs:
        update_marked_block(DOCS, docs_block(args.device, args.shape), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
