#!/usr/bin/env python
"""Peak memory of one evaluation pass: the runner's chunked gold log-probability versus full logits.

One stacked ablation pass (``--rows`` rows of ``--seq-len`` tokens, the first row unmasked and the
others each with a different random neuron set) is scored two ways, each in a fresh subprocess
(Linux ``VmHWM`` growth over the loaded model, large blocks through mmap so freed memory leaves
the process):

* ``runner``: :func:`crane_lens.evaluation.conditions_nll`, i.e. the forward pass stopped at the
  unembedding's input and :func:`crane_lens.model.runner.gold_scores` (vocabulary chunks);
* ``full logits``: the model's own ``[rows, pos, vocab]`` logits, cast to float32 and reduced with
  a fused cross-entropy — what crane_lens did before the runner.

Both give the same NLL (printed). Default model: the installed ``gemma-3-270m`` in bf16 (262 144
vocabulary entries: 268 MB of float32 logits per 256-token row).

    python benchmarks/bench_eval_memory.py [--model gemma-3-270m] [--rows 8] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import crane_lens as cl
from crane_lens.evaluation.ablation import EvalBlocks, conditions_nll
from crane_lens.intervention import Intervention, intervention, stacked_hooks
from crane_lens.utils.markdown import update_marked_block

DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _setup(job: dict[str, Any]) -> tuple[Any, EvalBlocks, list[Intervention]]:
    model = cl.load_model(job["model"], device="cpu", dtype=job["dtype"])
    spec = cl.get_spec(model)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(
        1, min(spec.vocab_size, 32_000), (1, job["seq_len"]), generator=generator
    )
    tokens[:, 0] = model.tokenizer.bos_token_id
    blocks = EvalBlocks(tokens, torch.ones(1, job["seq_len"] - 1, dtype=torch.bool))
    conditions = [Intervention({}, {})]
    for _ in range(job["rows"] - 1):
        neurons = [
            torch.randperm(spec.d_mlp, generator=generator)[:16] for _layer in range(spec.n_layers)
        ]
        conditions.append(intervention(neurons, mode="zero", d_mlp=spec.d_mlp))
    return model, blocks, conditions


@torch.no_grad()
def _full_logits_nll(model: Any, blocks: EvalBlocks, conditions: list[Intervention]) -> list[float]:
    stacked = blocks.tokens.repeat(len(conditions), 1)
    with model.hooks(fwd_hooks=stacked_hooks(conditions, 1)):
        logits = model(stacked, return_type="logits")[:, :-1]
    nll = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), stacked[:, 1:].flatten(), reduction="none"
    )
    return nll.view(len(conditions), -1).sum(dim=1).tolist()


def child(job: dict[str, Any]) -> None:
    torch.set_num_threads(job["threads"])
    model, blocks, conditions = _setup(job)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _vm("VmRSS")
    if job["how"] == "runner":
        nats = conditions_nll(model, blocks, conditions, max_batch_rows=job["rows"]).sum(1).tolist()
    else:
        nats = _full_logits_nll(model, blocks, conditions)
    print(json.dumps({"peak_growth": _vm("VmHWM") - before, "nats": nats}))


def measure(job: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{job['how']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    job = {"model": args.model, "dtype": args.dtype, "rows": args.rows, "seq_len": args.seq_len,
           "threads": args.threads}  # fmt: skip
    runner, full = measure(job | {"how": "runner"}), measure(job | {"how": "full"})
    vocab = cl.get_spec(cl.load_model(args.model, device="cpu", dtype=args.dtype)).vocab_size
    worst = max(
        abs(a - b) / args.seq_len for a, b in zip(runner["nats"], full["nats"], strict=True)
    )
    mib = 1 << 20
    text = "\n".join([
        f"`{args.model}` ({args.dtype}, vocabulary {vocab:,}), one stacked ablation pass of "
        f"{args.rows} rows × {args.seq_len} tokens ({args.rows - 1} random 16-neuron-per-layer "
        f"masks + the unmasked row), {args.threads} CPU threads, fresh subprocesses "
        f"(torch {torch.__version__}).",
        "",
        "| scoring | peak growth of the resident set | × runner |",
        "| --- | ---: | ---: |",
        f"| runner (`conditions_nll`: stop at the unembedding's input, chunked gold log-prob) | "
        f"{runner['peak_growth'] / mib:,.0f} MiB | **1.00×** |",
        f"| full logits (`model(tokens)` → float32 → fused cross-entropy) | "
        f"{full['peak_growth'] / mib:,.0f} MiB | **{full['peak_growth'] / runner['peak_growth']:.2f}×** |",
        "",
        f"Largest difference of the mean NLL between the two: {worst:.1e} nats/token "
        f"(float32 logits of a {args.dtype} model either way).",
    ])  # fmt: skip
    print(text)
    if args.write_docs:
        update_marked_block(DOCS, "bench-eval-memory", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
