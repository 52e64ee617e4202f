#!/usr/bin/env python
"""Cost of the statistics engine relative to a plain forward pass, measured in one run.

On ``crane-tiny`` (batch 8 × 128 tokens by default), each configuration is timed ``--repeats``
times in interleaved order and the median is compared with the median of a plain (no-grad)
TransformerBridge forward over the same tokens — ratios, not absolute times, because shared
machines are noisy. Also: captum's ``LayerGradientXActivation`` run layer by layer on the same
Hugging Face model (the per-layer approach the engine replaces), and the peak memory of the
engine for 1× and 4× the tokens (measured in fresh subprocesses; Linux ``VmHWM``).

    python benchmarks/bench_stats.py                     # prints the table
    python benchmarks/bench_stats.py --write-docs        # also updates docs/performance.md

captum is a benchmark-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import crane_lens as cl
from crane_lens.utils.markdown import update_marked_block

ACTIVATION_METHODS = ["lape", "mean_activation", "kojima", "plnd"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def _blocks(model: Any, n_blocks: int, seq_len: int) -> cl.TokenBlocks:
    corpus = cl.load_corpus("builtin", langs=["en"], split="train")
    return cl.make_token_blocks(corpus, model.tokenizer, seq_len, n_blocks * seq_len, seed=0)


def _captum_per_layer(model: Any, tokens: torch.Tensor) -> Callable[[], None]:
    from captum.attr import LayerGradientXActivation

    hf = model.original_model
    gold = tokens[:, 1:]

    def gold_logits(input_ids: torch.Tensor) -> torch.Tensor:
        logits = hf(input_ids=input_ids).logits[:, :-1]
        return logits.gather(-1, gold.unsqueeze(-1)).sum(dim=(1, 2))

    # The input of each layer's down projection, one layer per call: n_layers forward+backward.
    layers = [hf.model.layers[i].mlp.down_proj for i in range(len(hf.model.layers))]
    explainers = [LayerGradientXActivation(gold_logits, layer) for layer in layers]

    def run() -> None:
        for explainer in explainers:
            explainer.attribute(tokens, attribute_to_layer_input=True)

    return run


def time_all(model: Any, tokens: torch.Tensor, blocks: cl.TokenBlocks, repeats: int,
             with_captum: bool) -> dict[str, float]:  # fmt: skip
    def forward() -> None:
        with torch.no_grad():
            model(tokens, return_type="logits")

    def stats(methods: list[str]) -> Callable[[], object]:
        return lambda: cl.compute_stats(model, blocks, methods, batch_size=len(tokens),
                                        progress=False)  # fmt: skip

    runs: dict[str, Callable[[], object]] = {
        "plain forward": forward,
        "activation statistics (lape, mean_activation, kojima, plnd)": stats(ACTIVATION_METHODS),
        "crane relevance, all layers": stats(["crane"]),
        "attribution + grad_act, all layers": stats(["attribution", "grad_act"]),
    }
    if with_captum:
        runs["captum LayerGradientXActivation, layer by layer"] = _captum_per_layer(model, tokens)
    for run in runs.values():  # warm-up (allocator, lazy init)
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def peak_memory_child(model_name: str, n_blocks: int, seq_len: int, batch: int) -> None:
    """(In a subprocess) peak RSS growth while compute_stats runs, in bytes, printed as JSON."""
    torch.set_num_threads(1)
    model = cl.load_model(model_name)
    blocks = _blocks(model, n_blocks, seq_len)
    cl.compute_stats(
        model, _blocks(model, batch, seq_len), ["crane", "lape"], batch_size=batch, progress=False
    )  # fmt: skip  (warm-up)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _vm("VmRSS")
    cl.compute_stats(model, blocks, ["crane", "lape"], batch_size=batch, progress=False)
    print(json.dumps({"peak_growth": _vm("VmHWM") - before}))


def peak_memory(model_name: str, n_blocks: int, seq_len: int, batch: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", model_name, str(n_blocks), str(seq_len),
         str(batch)],
        capture_output=True, text=True, check=True,
        # Large blocks via mmap: freed memory leaves the process, so RSS tracks live tensors
        # instead of glibc's fragmentation (which otherwise adds ±25 % noise).
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
    )  # fmt: skip
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_growth"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="crane-tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-captum", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, n_blocks, seq_len, batch = args.memory_child
        peak_memory_child(name, int(n_blocks), int(seq_len), int(batch))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    model = cl.load_model(args.model)
    blocks = _blocks(model, args.batch, args.seq_len)
    tokens = blocks["en"]
    times = time_all(model, tokens, blocks, args.repeats, not args.no_captum)
    base = times["plain forward"]
    lines = [
        f"Model `{args.model}`, batch {args.batch} × {args.seq_len} tokens, "
        f"{torch.get_num_threads()} torch threads, median of {args.repeats} interleaved runs "
        f"(torch {torch.__version__}, device cpu).",
        "",
        "| run | median time (ms) | ratio to a plain forward |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {t * 1000:.1f} | **{t / base:.2f}×** |" for name, t in times.items()]
    captum = times.get("captum LayerGradientXActivation, layer by layer")
    if captum is not None:
        crane = times["crane relevance, all layers"]
        attribution = times["attribution + grad_act, all layers"]
        lines += ["", f"Speed-up of the one-pass engine over captum layer by layer: "
                  f"**{captum / attribution:.2f}×** for plain gradient×activation "
                  f"(same quantity), **{captum / crane:.2f}×** for CRANE relevance."]  # fmt: skip
    peaks = {
        k: peak_memory(args.model, k * args.batch, args.seq_len, args.batch) for k in (1, 4, 16)
    }
    lines += ["", "| tokens | peak memory growth during `compute_stats(crane, lape)` |",
              "| ---: | ---: |"]  # fmt: skip
    lines += [f"| {k * args.batch * args.seq_len:,} ({k}×) | {p / 2**20:.1f} MiB |"
              for k, p in peaks.items()]  # fmt: skip
    lines += ["", f"4× / 1× peak memory: **{peaks[4] / max(peaks[1], 1):.3f}**; "
              f"16× / 1×: **{peaks[16] / max(peaks[1], 1):.3f}** (batch {args.batch} blocks; "
              "measured in fresh subprocesses, growth of the resident set over the loaded model)."]  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write_docs:
        update_marked_block(DOCS, "bench-stats", table)  # the generated block of the docs page
    return 0


if __name__ == "__main__":
    sys.exit(main())
