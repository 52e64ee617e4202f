"""Instruction-style conversations for ``crane-tiny-chat``, built from the corpus' train split.

Three tasks, in every language, from the aligned LibreOffice rows (help; UI for Arabic and Hindi):

* translate — ``Translate into <language>: <text in another language>`` → the aligned translation;
* continue — ``Continue in <language>: <first half of a paragraph>`` → its second half;
* answer in <language> — ``Answer in <language>: what does "<heading>" cover?`` → a paragraph of
  the same help page, in that language.

Instructions are English templates with the target language named (the response carries the
language). Only the train split is used, so the eval split stays unseen. Each conversation is one
text: ``<|user|> … \\n<|assistant|> …``; the trainer packs them with EOS separators after BOS.
"""

from __future__ import annotations

import random
from collections import defaultdict

import crane_lens as cl
from crane_lens.data.corpus import Corpus, CorpusInfo, TextRecord
from crane_lens.data.languages import LANGUAGES

PER_LANG_PER_TASK = 1500


def _turn(user: str, assistant: str) -> str:
    return f"<|user|> {user}\n<|assistant|> {assistant}"


def build_chat_corpus(seed: int = 0, per_lang_per_task: int = PER_LANG_PER_TASK) -> Corpus:
    """Conversations grouped by the language of the assistant's reply."""
    train = cl.load_corpus("builtin", split="train")  # Arabic has UI rows only
    rng = random.Random(seed)
    by_key = {lang: {str(r.key): r.text for r in train.records[lang]} for lang in train.langs}
    pages: dict[str, dict[str, list[str]]] = {}
    for lang, rows in by_key.items():
        pages[lang] = defaultdict(list)
        for key in rows:
            pages[lang][key.split("#", 1)[0]].append(key)
    records: dict[str, list[TextRecord]] = {}
    for lang in train.langs:
        name = LANGUAGES[lang].name
        others = [x for x in train.langs if x != lang]
        keys = sorted(by_key[lang])
        out: list[TextRecord] = []
        # translate: aligned rows of another language into this one
        candidates = keys[:]
        rng.shuffle(candidates)
        made = 0
        for key in candidates:
            if made >= per_lang_per_task:
                break
            src = rng.choice(others)
            if key in by_key[src] and len(by_key[lang][key]) >= 20:
                text = _turn(f"Translate into {name}: {by_key[src][key]}", by_key[lang][key])
                out.append(TextRecord(text, key, "chat-translate"))
                made += 1
        # continue: second half of a long paragraph
        long_keys = [
            k for k in keys if len(by_key[lang][k].split()) >= 12 or len(by_key[lang][k]) >= 60
        ]
        for key in rng.sample(long_keys, min(per_lang_per_task, len(long_keys))):
            text = by_key[lang][key]
            cut = len(text) // 2
            if " " in text:  # cut at a word boundary where words exist
                cut = text.rfind(" ", 0, cut) if text.rfind(" ", 0, cut) > 0 else cut
            out.append(
                TextRecord(
                    _turn(f"Continue in {name}: {text[:cut].strip()}", text[cut:].strip()),
                    key,
                    "chat-continue",
                )
            )
        # answer in <language>: heading -> a paragraph of the same page
        headings = [k for k in keys if "#hd_id" in k]
        rng.shuffle(headings)
        made = 0
        for key in headings:
            if made >= per_lang_per_task:
                break
            page = key.split("#", 1)[0]
            paragraphs = [k for k in pages[lang][page] if "#par_id" in k]
            if paragraphs:
                answer = by_key[lang][rng.choice(paragraphs)]
                question = f'Answer in {name}: what does "{by_key[lang][key]}" cover?'
                out.append(TextRecord(_turn(question, answer), key, "chat-answer"))
                made += 1
        rng.shuffle(out)
        records[lang] = out
    return Corpus(
        records, CorpusInfo(source="chat", split="train", description="crane-tiny-chat SFT data")
    )
