#!/usr/bin/env python
"""Train crane_lens' demo tokenizer: byte-level BPE on a language-balanced corpus sample.

Every language contributes the same number of characters (the smallest train split's, capped),
so no language's script is starved of merges. Byte-level BPE needs no unknown token: text in any
language (or script the sample lacks) still encodes, one byte per token at worst.

    python scripts/train_tokenizer.py --out build/tokenizer
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

import crane_lens as cl
from crane_lens.utils.io import write_json

log = logging.getLogger("train_tokenizer")

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>"]


def balanced_sample(corpus: cl.Corpus, chars_per_lang: int, seed: int) -> list[str]:
    """Shuffle each language's texts (seeded) and take them until ``chars_per_lang``."""
    sample: list[str] = []
    for lang in corpus.langs:
        texts = list(corpus[lang])
        random.Random(f"{seed}:{lang}").shuffle(texts)
        total = taken = 0
        for text in texts:
            if total >= chars_per_lang:
                break
            sample.append(text)
            total += len(text)
            taken += 1
        log.info("%s: %d texts, %d chars", lang, taken, total)
    return sample


def train(out: Path, vocab_size: int, chars_per_lang: int, seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = cl.load_corpus("builtin", split="train")
    smallest = min(corpus.n_chars(lang) for lang in corpus.langs)
    chars = min(chars_per_lang, smallest)
    texts = balanced_sample(corpus, chars, seed)

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    # Digits one by one: numbers in help text are arbitrary and should not eat merges.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=True,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
        add_bos_token=False,
        model_max_length=512,
    )
    fast.save_pretrained(out)
    meta = {"vocab_size": vocab_size, "chars_per_lang": chars, "seed": seed, "langs": corpus.langs}
    write_json(out / "tokenizer_training.json", meta)
    log.info("saved %d-token tokenizer to %s", fast.vocab_size, out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("build/tokenizer"))
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--chars-per-lang", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(args.out, args.vocab_size, args.chars_per_lang, args.seed)


if __name__ == "__main__":
    main()
