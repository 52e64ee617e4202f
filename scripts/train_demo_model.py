#!/usr/bin/env python
"""Train crane_lens' demo model ``crane-tiny`` (Llama architecture) from scratch on the corpus.

Reproducible and resumable: the config, seed and data are fixed by the arguments; every batch is
drawn from a generator seeded by (seed, step), and the full training state (weights, optimiser,
schedule, step) is checkpointed atomically every ``--ckpt-every`` steps. Re-running the same
command after an interruption continues from the last checkpoint and ends with the same model.

    python scripts/train_tokenizer.py --out build/tokenizer
    python scripts/train_demo_model.py --tokenizer build/tokenizer --out build/crane-tiny
    python scripts/train_demo_model.py --mode chat --init build/crane-tiny/final \\
        --tokenizer build/tokenizer --out build/crane-tiny-chat
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import crane_lens as cl
from crane_lens.data.corpus import Corpus, TextRecord
from crane_lens.utils.io import atomic_path, write_json, write_text

log = logging.getLogger("train_demo_model")

ARCH: dict[str, Any] = {  # crane-tiny: see the model card for why these sizes
    "hidden_size": 256,
    "intermediate_size": 1024,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
}


def load_blocks(args: argparse.Namespace, tokenizer: Any) -> cl.TokenBlocks:
    """Token blocks of the training data, cached in the output folder."""
    cache = args.out / "data"
    if (cache / "blocks.json").exists():
        return cl.TokenBlocks.load(cache)
    if args.mode == "base":
        corpus = cl.load_corpus("builtin", split="train")
    else:
        from chat_data import build_chat_corpus

        corpus = build_chat_corpus(seed=args.seed)
    if args.doc_bos:  # every text starts with BOS, as it does when the model is used
        corpus = Corpus(
            {lang: [TextRecord(tokenizer.bos_token + r.text, r.key, r.origin) for r in rows]
             for lang, rows in corpus.records.items()},
            corpus.info,
        )  # fmt: skip
    blocks = corpus.to_token_blocks(
        tokenizer,
        seq_len=args.seq_len,
        seed=args.seed,
        max_tokens_per_lang=args.max_tokens_per_lang,
        separator="eos",  # --doc-bos adds the BOS itself; this keeps phase 1 reproducible
    )
    blocks.save(cache)
    return blocks


def language_weights(
    blocks: cl.TokenBlocks, alpha: float, boost: dict[str, float] | None = None
) -> torch.Tensor:
    """Sampling probability per language ∝ (number of blocks)^alpha (alpha < 1 favours small
    ones), times an optional per-language ``boost`` factor."""
    sizes = torch.tensor([blocks[lang].shape[0] for lang in blocks.langs], dtype=torch.float64)
    factors = torch.tensor([(boost or {}).get(lang, 1.0) for lang in blocks.langs],
                           dtype=torch.float64)  # fmt: skip
    weights = sizes**alpha * factors
    return weights / weights.sum()


def parse_boost(text: str | None) -> dict[str, float]:
    """``"zh=3,ar=2"`` → ``{"zh": 3.0, "ar": 2.0}``."""
    if not text:
        return {}
    pairs = [item.split("=") for item in text.split(",")]
    return {cl.canonical_lang(lang.strip()): float(factor) for lang, factor in pairs}


def batch_at(
    step: int, blocks: cl.TokenBlocks, probs: torch.Tensor, size: int, seed: int
) -> torch.Tensor:
    """The batch of a given step: a pure function of (seed, step), so resuming replays exactly."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    langs = torch.multinomial(probs, size, replacement=True, generator=gen)
    rows = []
    for li in langs.tolist():
        table = blocks[blocks.langs[li]]
        rows.append(table[int(torch.randint(table.shape[0], (1,), generator=gen).item())])
    return torch.stack(rows)


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# Arguments that do not change the trained weights: a resumed run may differ in these.
_NOT_RESULT_DEFINING = {"out", "export", "stop_after", "threads", "ckpt_every", "eval_every"}


def check_same_run(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume (or reuse cached data) in ``out`` with settings that change the result."""
    path = out / "run_settings.json"
    defining = {k: v for k, v in settings.items() if k not in _NOT_RESULT_DEFINING}
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(
            k for k in defining.keys() | previous.keys() if defining.get(k) != previous.get(k)
        )
        if changed:
            raise SystemExit(
                f"{out} holds a run made with other settings ({', '.join(changed)} differ). "
                "Resume with the same arguments, or use a new --out folder."
            )
    else:
        write_json(path, defining)


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@torch.no_grad()
def eval_loss(model: Any, blocks: cl.TokenBlocks, n: int) -> dict[str, float]:
    """Mean next-token loss on the first ``n`` eval blocks of each language."""
    model.eval()
    out = {}
    for lang in blocks.langs:
        x = blocks[lang][:n]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out[lang] = float(model(input_ids=x, labels=x).loss)
    model.train()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["base", "chat"], default="base")
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, help="start from this HF checkpoint (chat mode)")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.5, help="language sampling exponent")
    parser.add_argument(
        "--boost", default=None, help="extra sampling weight per language, e.g. 'zh=3,ar=2'"
    )
    parser.add_argument(
        "--doc-bos", action="store_true", help="start every text with BOS inside the packed blocks"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt-every", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens-per-lang", type=int, help="cap the training data (tests)")
    parser.add_argument("--stop-after", type=int, help="exit after this step, as if killed (tests)")
    parser.add_argument(
        "--arch", type=json.loads, default={}, help="JSON overrides of the architecture (tests)"
    )
    parser.add_argument(
        "--export", type=Path, help="also write a bf16 copy (weights + tokenizer) into this folder"
    )
    args = parser.parse_args(argv)
    arch = {**ARCH, **args.arch}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config_record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    check_same_run(args.out, {**config_record, "arch": arch})
    write_json(args.out / "train_config.json", {**config_record, "arch": arch})
    blocks = load_blocks(args, tokenizer)
    probs = language_weights(blocks, args.alpha, parse_boost(args.boost))
    log.info("data: %s", {lang: tuple(blocks[lang].shape) for lang in blocks.langs})
    held_out = cl.load_corpus(
        "builtin", split="eval", origins=["libreoffice-help", "libreoffice-ui"]
    )
    eval_blocks = held_out.to_token_blocks(
        tokenizer, seq_len=args.seq_len, max_tokens_per_lang=args.seq_len * 4, separator="eos"
    )

    torch.manual_seed(args.seed)
    if args.init is not None:
        model = LlamaForCausalLM.from_pretrained(args.init, dtype=torch.float32)
    else:
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **arch,
        )
        model = LlamaForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    ckpt_path = args.out / "checkpoint.pt"
    log_path = args.out / "train_log.jsonl"
    start = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        log.info("resumed from step %d", start)
        if log_path.exists():  # drop log lines written after the checkpoint
            lines = [
                ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] < start
            ]
            write_text(log_path, "".join(ln + "\n" for ln in lines))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("parameters: %.2f M", n_params / 1e6)

    model.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc=f"train {args.mode}")
    t0 = time.perf_counter()
    with log_path.open("a") as log_file:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, args)
            x = batch_at(step, blocks, probs, args.batch_size, args.seed)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            record: dict[str, Any] = {"step": step, "loss": round(loss.item(), 4),
                                      "lr": lr_at(step, args), "grad_norm": round(float(grad_norm), 3)}  # fmt: skip
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                record["eval"] = {
                    k: round(v, 4) for k, v in eval_loss(model, eval_blocks, 4).items()
                }
                log.info("step %d eval %s", step + 1, record["eval"])
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step + 1) % args.ckpt_every == 0 or step + 1 == args.steps:
                save_atomic(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step + 1,
                    },
                    ckpt_path,
                )
            if args.stop_after is not None and step + 1 >= args.stop_after:
                log.info("stopping after step %d (--stop-after)", step + 1)
                return
    log.info("trained %d steps in %.0f s", args.steps - start, time.perf_counter() - t0)
    final = args.out / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    log.info("saved %s", final)
    if args.export is not None:
        # Weights shipped in bf16 (half the bytes; it was trained under bf16 autocast), but the
        # config records float32, so load_model's default (the checkpoint's dtype) computes in
        # float32 — an exact upcast — and dtype="bfloat16" is an explicit choice.
        model.bfloat16().save_pretrained(args.export)
        config_path = args.export / "config.json"
        exported = json.loads(config_path.read_text())
        exported["dtype"] = "float32"
        config_path.write_text(json.dumps(exported, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(args.export)
        (args.export / "train_config.json").write_text((args.out / "train_config.json").read_text())
        log.info("exported %s", args.export)


if __name__ == "__main__":
    main()
