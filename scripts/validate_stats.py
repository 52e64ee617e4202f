#!/usr/bin/env python
"""How well do the cheap estimates rank neurons like exact ablation does? (on a demo model)

For each language and layer, exact single-neuron zero-ablation ΔNLL is the ground truth; the
Spearman correlation of every estimate with it across the layer's neurons is reported, and
optionally written into docs/stats.md.

    python scripts/validate_stats.py                          # en, zh, vi; every layer
    python scripts/validate_stats.py --write-docs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import crane_lens as cl
from crane_lens.utils.markdown import update_marked_block
from crane_lens.utils.ranking import spearman

ESTIMATES = ["attribution", "attribution_mean", "grad_act", "crane", "crane_abs", "crane_pos",
             "crane (logprob)"]  # fmt: skip
DOCS = Path(__file__).resolve().parents[1] / "docs" / "stats.md"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="crane-tiny")
    parser.add_argument("--langs", default="en,zh,vi")
    parser.add_argument("--blocks", type=int, default=4, help="eval blocks per language")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    model = cl.load_model(args.model)
    corpus = cl.load_corpus("builtin", langs=args.langs.split(","), split="eval")
    start = time.perf_counter()
    stats = cl.compute_stats(
        model, corpus, ["crane", "attribution", "grad_act", "ablation"], seq_len=args.seq_len,
        max_tokens_per_lang=args.blocks * args.seq_len, batch_size=args.blocks,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    logprob = cl.compute_stats(
        model, corpus, ["crane"], seq_len=args.seq_len, target="logprob",
        max_tokens_per_lang=args.blocks * args.seq_len, batch_size=args.blocks,
    )  # fmt: skip
    scores = {e: stats.scores(e) for e in ESTIMATES if e in stats.statistics}
    scores["crane (logprob)"] = logprob.scores("crane")
    exact = stats.scores("ablation")
    lines = [
        f"`python scripts/validate_stats.py --model {args.model} --langs {args.langs} "
        f"--blocks {args.blocks} --seq-len {args.seq_len}` — {args.blocks} × {args.seq_len} "
        f"eval tokens per language; exact ablation of all {stats.spec.n_neurons:,} neurons, "
        f"{seconds:.0f} s on this machine. Spearman correlation with exact ablation ΔNLL across "
        'the neurons of each layer (`crane (logprob)`: CRANE with `target="logprob"`):',
        "",
        "| lang | layer | " + " | ".join(ESTIMATES) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in ESTIMATES) + " |",
    ]
    for i, lang in enumerate(stats.langs):
        for layer in range(stats.spec.n_layers):
            cells = [spearman(scores[e][i, layer], exact[i, layer]) for e in ESTIMATES]
            lines.append(f"| {lang} | {layer} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    cells = [spearman(scores[e], exact) for e in ESTIMATES]
    lines.append("| all | all | " + " | ".join(f"**{c:.3f}**" for c in cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write_docs:
        update_marked_block(DOCS, "correlations", table)  # the generated block of the docs page
    return 0


if __name__ == "__main__":
    sys.exit(main())
