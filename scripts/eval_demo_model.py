#!/usr/bin/env python
"""Measure a demo model's quality and write it into its model card.

Per language, on the whole eval split of the embedded corpus: next-token NLL (nats/token) and
perplexity of the model, next to the cross-entropy of the same tokens under a unigram model fitted
on that language's train split (same tokenizer, add-one smoothing). The ratio NLL / unigram CE is
reported for the whole split, for the in-domain rows (LibreOffice help + UI) and for the UDHR
(out of domain), under two protocols (see ``crane_lens.evaluation.nll``): the **stream** protocol
(the language's texts in order, packed like pre-training data; the quality gate) and the
**per-text** protocol (each text alone after BOS). Greedy samples go into the card too.

    python scripts/eval_demo_model.py crane-tiny crane-tiny-chat   # updates the packaged cards
    python scripts/eval_demo_model.py build/crane-tiny/final --card /tmp/README.md
    # a real LLM (the card's table: bf16), the stream protocol, the first 120 texts of each
    # origin per language; without --dtype: auto (float32 on a CPU without native bf16)
    python scripts/eval_demo_model.py gemma-3-270m --dtype bf16 --protocols stream \
        --max-texts-per-origin 120 --batch-size 4 --max-ratio 1 \
        --card docs/model-gemma-3-270m.md --json docs/data/gemma-3-270m-eval.json
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

import crane_lens as cl
from crane_lens.evaluation import corpus_nll, encode_for_nll, stream_nll, stream_tokens
from crane_lens.model import BUILTIN_MODELS, builtin_model_dir
from crane_lens.utils.io import write_json
from crane_lens.utils.markdown import update_marked_block

log = logging.getLogger("eval_demo_model")
IN_DOMAIN = ("libreoffice-help", "libreoffice-ui")
PROTOCOLS = ("stream", "per_text")
SEQ_LEN = 256  # stream blocks: the training block length of the demo models
PROMPTS = {
    "en": "To insert a table,",
    "zh": "要插入表格，",
    "vi": "Để chèn một bảng,",
    "fr": "Pour insérer un tableau,",
    "ja": "表を挿入するには、",
    "ru": "Чтобы вставить таблицу,",
}


def unigram_log_probs(tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """log p(token) of an add-one-smoothed unigram model fitted on ``texts``."""
    counts = torch.zeros(len(tokenizer), dtype=torch.float64)
    for start in range(0, len(texts), 2048):
        ids = tokenizer(texts[start : start + 2048], add_special_tokens=False)["input_ids"]
        flat = torch.tensor([t for seq in ids for t in seq], dtype=torch.long)
        counts += torch.bincount(flat, minlength=len(tokenizer)).double()
    return torch.log((counts + 1) / (counts.sum() + len(tokenizer)))


def unigram_ce(
    model: Any, log_probs: torch.Tensor, records: list[Any]
) -> dict[str, tuple[float, int]]:
    """Summed unigram NLL and token count per origin, over exactly the tokens the model predicts
    (``encode_for_nll``: after BOS, truncated to the context)."""
    out: dict[str, tuple[float, int]] = {}
    for record, ids in zip(records, encode_for_nll(model, [r.text for r in records]), strict=True):
        seq = ids[1:]
        nats = -float(log_probs[torch.tensor(seq, dtype=torch.long)].sum()) if seq else 0.0
        old = out.get(record.origin, (0.0, 0))
        out[record.origin] = (old[0] + nats, old[1] + len(seq))
    return out


def unigram_ce_stream(
    model: Any, log_probs: torch.Tensor, records: list[Any], seq_len: int
) -> dict[str, tuple[float, int]]:
    """Like :func:`unigram_ce`, over exactly the tokens :func:`stream_nll` scores."""
    out: dict[str, tuple[float, int]] = {}
    blocks, owners = stream_tokens(model, [r.text for r in records], seq_len)
    for block, owner in zip(blocks, owners, strict=True):
        for token, text in zip(block[1:], owner[1:], strict=True):
            if text >= 0:
                origin = records[text].origin
                old = out.get(origin, (0.0, 0))
                out[origin] = (old[0] - float(log_probs[token]), old[1] + 1)
    return out


def _ratio(model_nats: float, uni_nats: float) -> float:
    return model_nats / uni_nats if uni_nats else float("nan")


def first_texts_per_origin(corpus: cl.Corpus, n: int) -> cl.Corpus:
    """The first ``n`` texts of each origin in each language (a cheaper, still mixed sample)."""
    records: dict[str, list[Any]] = {}
    for lang in corpus.langs:
        seen: Counter[str | None] = Counter()
        records[lang] = []
        for record in corpus.records[lang]:
            seen[record.origin] += 1
            if seen[record.origin] <= n:
                records[lang].append(record)
    return cl.Corpus(records, corpus.info)


def unigram_baselines(model: Any, held_out: cl.Corpus) -> dict[str, Any]:
    """Per protocol and language: the unigram CE (per origin) of the scored eval tokens, with the
    unigram fitted on the train split."""
    train = cl.load_corpus("builtin", split="train")
    fitted = {lang: unigram_log_probs(model.tokenizer, train[lang]) for lang in held_out.langs}
    return {
        "per_text": {lang: unigram_ce(model, fitted[lang], held_out.records[lang])
                     for lang in held_out.langs},
        "stream": {lang: unigram_ce_stream(model, fitted[lang], held_out.records[lang], SEQ_LEN)
                   for lang in held_out.langs},
    }  # fmt: skip


def _rows(report: Any, uni: dict[str, tuple[float, int]], lang: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for label, origins in (("all", None), ("in_domain", IN_DOMAIN), ("udhr", ("udhr",))):
        keep = [o for o in uni if origins is None or o in origins]
        model_nats = sum(report.nats[lang][o] for o in keep)
        uni_nats = sum(uni[o][0] for o in keep)
        n = sum(uni[o][1] for o in keep)
        if n != sum(report.tokens[lang][o] for o in keep):  # same tokens, or no comparison
            raise RuntimeError(f"{lang}: model and unigram scored different tokens")
        if n:
            row[label] = {"tokens": n, "nll": model_nats / n, "unigram_ce": uni_nats / n,
                          "ratio": _ratio(model_nats, uni_nats)}  # fmt: skip
    row["all"]["perplexity"] = math.exp(row["all"]["nll"])
    return row


def evaluate(
    name: str,
    held_out: cl.Corpus,
    baselines: dict[str, Any] | None,
    *,
    dtype: str | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
    batch_size: int = 16,
) -> dict[str, Any]:
    model = cl.load_model(name, device="cpu", dtype=dtype)
    if baselines is None:
        baselines = unigram_baselines(model, held_out)
    runs = {"stream": lambda: stream_nll(model, held_out, seq_len=SEQ_LEN, batch_size=batch_size),
            "per_text": lambda: corpus_nll(model, held_out)}  # fmt: skip
    reports = {p: runs[p]() for p in protocols}
    results: dict[str, Any] = {"model": name, "dtype": str(cl.get_spec(model).dtype),
                               "stream_seq_len": SEQ_LEN, "languages": {}}  # fmt: skip
    for lang in held_out.langs:
        row = {p: _rows(reports[p], baselines[p][lang], lang) for p in protocols}
        results["languages"][lang] = row
        log.info("%s: %s", lang, "; ".join(
            f"{p} nll {row[p]['all']['nll']:.3f} unigram {row[p]['all']['unigram_ce']:.3f} "
            f"ratio {row[p]['all']['ratio']:.3f}" for p in protocols))  # fmt: skip
    results["samples"] = {
        lang: model.generate(prompt, max_new_tokens=40, do_sample=False, verbose=False)
        for lang, prompt in PROMPTS.items()
    }
    results["_baselines"] = baselines
    return results


def worst_ratio(results: dict[str, Any], protocol: str = "stream") -> float:
    return max(row[protocol]["all"]["ratio"] for row in results["languages"].values())


def quality_table(results: dict[str, Any]) -> str:
    lines = [
        "| lang | eval tokens | NLL (nats/token) | perplexity | unigram CE | **ratio** "
        "| in-domain ratio | UDHR ratio | per-text ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    per_text_done = all("per_text" in row for row in results["languages"].values())
    for lang, row in results["languages"].items():
        a = row["stream"]["all"]
        per_text = f"{row['per_text']['all']['ratio']:.3f}" if per_text_done else "—"
        in_domain, udhr = row["stream"].get("in_domain"), row["stream"].get("udhr")
        lines.append(
            f"| {lang} | {a['tokens']:,} | {a['nll']:.3f} | {a['perplexity']:.1f} "
            f"| {a['unigram_ce']:.3f} | **{a['ratio']:.3f}** "
            f"| {in_domain['ratio'] if in_domain else float('nan'):.3f} "
            f"| {udhr['ratio'] if udhr else float('nan'):.3f} | {per_text} |"
        )
    worst = f"\nWorst ratio over all languages (stream protocol): **{worst_ratio(results):.3f}**"
    if per_text_done:
        worst += f" (target ≤ 0.70); per-text protocol: {worst_ratio(results, 'per_text'):.3f}"
    lines.append(worst + ".\n")
    return "\n".join(lines) + "\n"


def samples_block(results: dict[str, Any]) -> str:
    lines = []
    for lang, text in results["samples"].items():
        lines.append(f"- **{lang}**: `{text!s}`".replace("\n", " "))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", default=["crane-tiny"], help="names or folders")
    parser.add_argument("--card", type=Path, help="model card to update (one model only)")
    parser.add_argument("--json", type=Path, help="results JSON to write (one model only)")
    parser.add_argument("--max-ratio", type=float, default=0.70)
    parser.add_argument(
        "--dtype", default=None, help="compute dtype (default: auto, as load_model)"
    )
    parser.add_argument("--protocols", default=",".join(PROTOCOLS),
                        help="stream and/or per_text (default both)")  # fmt: skip
    parser.add_argument("--max-texts-per-origin", type=int, default=None,
                        help="score only the first N eval texts of each origin per language")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16, help="stream blocks per pass")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    held_out = cl.load_corpus("builtin", split="eval")
    if args.max_texts_per_origin is not None:
        held_out = first_texts_per_origin(held_out, args.max_texts_per_origin)
    protocols = tuple(p.strip() for p in args.protocols.split(","))
    if "stream" not in protocols or set(protocols) - set(PROTOCOLS):
        parser.error(f"--protocols: 'stream' and optionally 'per_text', not {args.protocols!r}")
    baselines = None  # the models share the tokenizer: fit the unigram baselines once
    status = 0
    for name in args.models:
        results = evaluate(name, held_out, baselines, dtype=args.dtype, protocols=protocols,
                           batch_size=args.batch_size)  # fmt: skip
        results["max_texts_per_origin"] = args.max_texts_per_origin
        baselines = results.pop("_baselines")
        folder = builtin_model_dir(name) if name in BUILTIN_MODELS else Path(name)
        card = args.card or folder / "README.md"
        out_json = args.json or folder / "eval_results.json"
        write_json(out_json, results)
        if card.exists():
            update_marked_block(card, "quality-table", quality_table(results))
            update_marked_block(card, "samples", samples_block(results))
            log.info("updated %s", card)
        print(f"{name}\n{quality_table(results)}")
        status |= int(worst_ratio(results) > args.max_ratio)
    return status


if __name__ == "__main__":
    sys.exit(main())
