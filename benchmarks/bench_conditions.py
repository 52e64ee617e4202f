#!/usr/bin/env python
"""Many masking conditions per forward pass (stacked along the batch) versus one pass each.

On ``crane-tiny``, the conditions of a typical ablation matrix (the unmasked baseline and 41-neuron
sets: 3 languages' sets + 5 random controls each = 19 conditions) are evaluated on the same held-out
blocks by :func:`crane_lens.evaluation.conditions_nll` with ``stack=True`` (conditions stacked up to
``--rows`` rows per pass) and ``stack=False`` (one pass per condition and block chunk). Each
configuration is timed ``--repeats`` times, interleaved; the ratio of medians is reported, for
a few blocks per condition (short evaluation sets, benchmarks of short items) and for many.

    python benchmarks/bench_conditions.py [--write-docs]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import crane_lens as cl
from crane_lens.evaluation import conditions_nll, eval_blocks
from crane_lens.intervention import Intervention, intervention
from crane_lens.utils.markdown import update_marked_block

DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=8, help="rows per stacked forward pass")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    model = cl.load_model("crane-tiny")
    langs = ["en", "zh", "vi"]
    sets = cl.LanguageNeurons(4, 1024, {
        lang: torch.stack([torch.arange(41) % 4, torch.arange(41) * 7 + i], 1)
        for i, lang in enumerate(langs)
    })  # fmt: skip
    conditions = [Intervention({}, {})]
    for lang in langs:
        conditions.append(intervention(sets, lang))
        conditions += [intervention(cl.random_neurons(sets, s), lang) for s in range(5)]
    corpus = cl.load_corpus("builtin", langs=["en"], split="eval")
    rows = []
    for n_blocks, seq_len in ((1, 64), (2, 256), (16, 256)):
        blocks = eval_blocks(model, corpus, ["en"], seq_len=seq_len,
                             max_tokens_per_lang=n_blocks * seq_len)["en"]  # fmt: skip
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for stack in (True, False):
                start = time.perf_counter()
                conditions_nll(model, blocks, conditions, max_batch_rows=args.rows, stack=stack)
                times[stack].append(time.perf_counter() - start)
        stacked, single = statistics.median(times[True]), statistics.median(times[False])
        rows.append(f"| {n_blocks} × {seq_len} | {single * 1e3:.0f} | {stacked * 1e3:.0f} | "
                    f"**{single / stacked:.2f}×** |")  # fmt: skip
    table = "\n".join([
        f"{len(conditions)} conditions, `crane-tiny`, {torch.get_num_threads()} torch threads, "
        f"up to {args.rows} rows per stacked pass, median of {args.repeats} interleaved runs "
        f"(torch {torch.__version__}).", "",
        "| blocks per condition | one pass per condition (ms) | stacked (ms) | speed-up |",
        "| --- | ---: | ---: | ---: |", *rows,
    ])  # fmt: skip
    print(table)
    if args.write_docs:
        update_marked_block(DOCS, "bench-conditions", table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
